"""Calls to a running proxy's admin listener (JSON in, JSON out), for integration tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def admin_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def admin_post(port: int, path: str, token: str) -> tuple[int, dict[str, Any]]:
    """POST with the bearer token; (status, JSON body), error statuses included."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method="POST",
        data=b"",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
