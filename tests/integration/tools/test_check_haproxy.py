"""`limpet check` against a real sticky load balancer (HAProxy) and its non-sticky twin.

Each sticky case has a twin with ``balance roundrobin`` and no cookie that must fail; the twins
run clients one after another (``--concurrency 1``), so round robin sends a client's consecutive
requests to different backends every time and the failure is certain, not a matter of luck.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.procs import Procs, free_port, limpet_env, which_or_skip

NAMES = ("a", "b", "c")


def start_haproxy(procs: Procs, backends: dict[str, str], *, sticky: bool) -> str:
    """A real HAProxy in front of ``backends`` (name -> URL); return its URL."""
    exe = which_or_skip("haproxy", "/usr/sbin/haproxy")
    port = free_port()
    servers = []
    for name, url in backends.items():
        hostport = url.removeprefix("http://")
        servers.append(f"  server {name} {hostport}" + (f" cookie {name}" if sticky else ""))
    config = "\n".join(
        [
            "global",
            "  maxconn 256",
            "defaults",
            "  mode http",
            "  timeout connect 2s",
            "  timeout client 20s",
            "  timeout server 20s",
            "  timeout tunnel 20s",
            "frontend fe",
            f"  bind 127.0.0.1:{port}",
            "  default_backend be",
            "backend be",
            "  balance roundrobin",
            *(["  cookie SRV insert indirect nocache httponly"] if sticky else []),
            *servers,
            "",
        ]
    )
    path = procs.tmp / f"haproxy-{port}.cfg"
    path.write_text(config)
    procs.start([exe, "-db", "-f", str(path)], wait_for=("127.0.0.1", port))
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def backends(procs: Procs) -> dict[str, str]:
    return {name: procs.whoami(name) for name in NAMES}


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limpet", "check", *args],
        env=limpet_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )


def report(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = check(*args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("transport", ["http", "websocket", "socketio"])
def test_sticky_cookie_lb_passes(procs: Procs, backends: dict[str, str], transport: str) -> None:
    url = start_haproxy(procs, backends, sticky=True)
    code, rep = report(url, "--clients", "6", "--requests", "4", "--transport", transport)
    assert code == 0, rep
    assert rep["ok"] and rep["sticky_clients"] == 6 and rep["failed_clients"] == 0
    # HAProxy spreads fresh clients over all three backends, then keeps each on its own
    assert set(rep["distribution"]) == set(NAMES)
    assert sum(d["answers"] for d in rep["distribution"].values()) == 6 * 4
    [cookie] = rep["cookies"]
    assert cookie["name"] == "SRV" and cookie["httponly"] and cookie["clients"] == 6
    assert cookie["max_age"] is None and cookie["path"] == "/"
    assert not [w for w in rep["warnings"] if w["severity"] != "info"]


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_round_robin_twin_fails_and_shows_the_spread(
    procs: Procs, backends: dict[str, str], transport: str
) -> None:
    url = start_haproxy(procs, backends, sticky=False)
    args = [url, "--clients", "4", "--requests", "3", "--concurrency", "1"]
    code, rep = report(*args, "--transport", transport)
    assert code == 1
    assert not rep["ok"] and rep["moved_clients"] == 4 and rep["cookies"] == []
    assert all(len(c["backends"]) == 3 for c in rep["per_client"])
    assert {w["code"] for w in rep["warnings"]} >= {"moved", "no-cookie"}

    text = check(*args, "--transport", transport)
    assert text.returncode == 1
    assert "NOT STICKY" in text.stdout and "cookies: none seen" in text.stdout
    for name in NAMES:
        assert f"\n  {name} " in text.stdout  # one row per backend in the table


def test_socketio_round_robin_twin_reports_session_id_unknown(
    procs: Procs, backends: dict[str, str]
) -> None:
    url = start_haproxy(procs, backends, sticky=False)
    code, rep = report(
        url, "--clients", "3", "--requests", "3", "--concurrency", "1", "--transport", "socketio"
    )
    assert code == 1
    assert rep["failed_clients"] == 3
    assert all(c["errors"] == ["HTTP 400 Session ID unknown"] for c in rep["per_client"])


def test_direct_to_one_replica_warns_one_backend(procs: Procs) -> None:
    url = procs.whoami("solo")
    result = check(url, "--clients", "3", "--requests", "2")
    assert result.returncode == 0
    assert "'solo': maybe only one replica" in result.stdout
    assert "no Set-Cookie seen at all" in result.stdout
