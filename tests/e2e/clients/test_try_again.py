"""limpet-client under Node against a hub that is full: its websocket is closed with 1013 (Try
Again Later) before Engine.IO's open. limpet-client takes that as the refusal it is, waits as
told and is subscribed within seconds. The twin, the official socket.io client alone: the same
close looks like nothing to it, and the attempt sits until its 20 s connect timeout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.hub.conftest import start_hub_procs
from tests.support.procs import Procs, which_or_skip

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent


@pytest.mark.parametrize("kind", ["limpet", "plain"], ids=["limpet-client", "twin-plain"])
async def test_a_websocket_closed_with_1013_comes_back_and_gets_in(kind: str, procs: Procs) -> None:
    node = which_or_skip("node")
    if not (HERE / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("npm packages of tests/e2e/clients not installed (scripts/bootstrap)")
    (url,) = start_hub_procs(
        procs, "memory", 1, "--max-handshakes", "1", "--admission-hold", "2"
    ).urls
    handshake = f"{url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http, http.get(handshake) as resp:
        assert resp.status == 200  # the one place, held for 2 s
    run = await asyncio.create_subprocess_exec(
        node, "try_again.mjs", url, "full", kind, "8000", stdout=asyncio.subprocess.PIPE, cwd=HERE
    )
    out, _ = await asyncio.wait_for(run.communicate(), 30)
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    if kind == "limpet":
        assert report["event"] == "subscribed", report
        assert report["errors"] and set(report["errors"]) == {"try again later"}, report
    else:
        assert report["event"] == "deadline", report  # still waiting on its first attempt
        assert report["errors"] == [], report
