"""A safe admin against a real proxy: tokens for mutations, no cross-origin drains, loopback
by default, and the affinity secret kept off the command line."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs, free_port, wait_listening

EVIL = {"Origin": "http://evil.example", "Content-Type": "text/plain"}


def states(proxy: object) -> dict[str, str]:
    return {b["id"]: b["state"] for b in proxy.status()["pools"][0]["backends"]}  # type: ignore[attr-defined]


def test_drain_needs_the_token(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    code, body = proxy.admin("POST", "/backends/alpha/drain", token=False)
    assert code == 401 and "bearer" in body.lower()
    code, _ = proxy.admin("POST", "/backends/alpha/drain", {"Authorization": "Bearer wrong"})
    assert code == 401
    assert set(states(proxy).values()) == {"healthy"}
    # twin: with the token the same call drains
    code, body = proxy.admin("POST", "/backends/alpha/drain")
    assert code == 200 and json.loads(body)["state"] == "draining"
    # reading needs no token
    for path in ("/metrics", "/healthz", "/readyz", "/status", "/"):
        assert proxy.admin("GET", path, token=False)[0] == 200, path


def test_a_cross_origin_text_plain_post_drains_nothing(procs: Procs, three: dict[str, str]) -> None:
    """What a page on http://evil.example can send to a loopback admin without a preflight."""
    proxy = start_proxy(procs, three)
    code, body = proxy.admin("POST", "/backends/alpha/drain", EVIL, token=False)
    assert code == 403 and "cross-origin" in body
    code, body = proxy.admin("POST", "/backends/alpha/drain", EVIL)  # even with the token
    assert code == 403
    assert states(proxy)["alpha"] == "healthy"
    same = {"Origin": f"http://127.0.0.1:{proxy.admin_port}"}
    assert proxy.admin("POST", "/backends/alpha/drain", same)[0] == 200  # the dashboard's origin


def test_without_a_token_the_admin_is_read_only(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, env={"LIMPET_ADMIN_TOKEN": ""})
    code, body = proxy.admin("POST", "/backends/alpha/drain")
    assert code == 403 and "LIMPET_ADMIN_TOKEN" in body
    assert proxy.admin("GET", "/status", token=False)[0] == 200


def test_token_and_secret_from_files(procs: Procs, three: dict[str, str]) -> None:
    token_file = procs.tmp / "admin-token"
    token_file.write_text("from-a-file\n")
    secret_file = procs.tmp / "secret"
    secret_file.write_text("a-secret-from-a-file\n")
    port, admin_port = free_port(), free_port()
    args = ["proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin_port}"]
    args += ["--admin-token-file", str(token_file), "--secret-file", str(secret_file)]
    for name, url in three.items():
        args += ["--backend", f"{name}={url}"]
    proc = procs.limpet(*args, wait_for=("127.0.0.1", port), env={"LIMPET_ADMIN_TOKEN": ""})
    wait_listening("127.0.0.1", admin_port, proc=proc)
    req = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/backends/beta/drain",
        method="POST",
        headers={"Authorization": "Bearer from-a-file"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    # the same secret in a second proxy given on argv: it honours the first one's cookie
    client = Client(f"http://127.0.0.1:{port}")
    pinned = client.backend()
    twin = start_proxy(procs, three, secret="a-secret-from-a-file")
    other = Client(twin.url)
    other.cookies = dict(client.cookies)
    assert other.backend() == pinned
    log = procs.output(proc)
    assert "random one" not in log and "--secret on the command line" not in log
    assert "--secret on the command line" in procs.output(twin.proc)  # type: ignore[arg-type]


def start_with_admin(procs: Procs, three: dict[str, str], host: str, expect: str) -> int:
    """A proxy with ``--admin HOST:PORT``; waits until the admin listens on ``expect``."""
    port, admin_port = free_port(), free_port()
    args = ["proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"{host}:{admin_port}"]
    for name, url in three.items():
        args += ["--backend", f"{name}={url}"]
    proc = procs.limpet(*args, wait_for=("127.0.0.1", port))
    wait_listening(expect, admin_port, proc=proc)
    return admin_port


def test_admin_with_an_empty_host_binds_loopback_only(procs: Procs, three: dict[str, str]) -> None:
    admin_port = start_with_admin(procs, three, "", expect="127.0.0.1")
    # bound to 127.0.0.1, not 0.0.0.0: another loopback address of this host finds nothing
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", admin_port), timeout=2):
        pass


def test_twin_the_probe_sees_where_the_admin_is_bound(procs: Procs, three: dict[str, str]) -> None:
    """The same probe finds an admin bound on 127.0.0.2 (so it can tell bind addresses apart)."""
    admin_port = start_with_admin(procs, three, "127.0.0.2", expect="127.0.0.2")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", admin_port), timeout=2):
        pass
