"""`limpet check` against `limpet proxy`: every transport sticky with cookie affinity, and twins."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.procs import Procs, free_port, limpet_env

NAMES = ("a", "b", "c")


def start_proxy(procs: Procs, *flags: str) -> str:
    backends = [f"--backend={n}={procs.whoami(n)}" for n in NAMES]
    port = free_port()
    procs.limpet(
        "proxy", "--listen", f"127.0.0.1:{port}", *backends, "--secret", "s3cret", *flags,
        wait_for=("127.0.0.1", port),
    )  # fmt: skip
    return f"http://127.0.0.1:{port}/"


def check(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = subprocess.run(
        [sys.executable, "-m", "limpet", "check", *args, "--json"],
        env=limpet_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("transport", ["http", "websocket", "socketio"])
def test_cookie_affinity_is_sticky_on_every_transport(procs: Procs, transport: str) -> None:
    url = start_proxy(procs, "--affinity", "cookie")
    # here WebSocket clients load the page first, as a browser does; the case without a page
    # load is test_websocket_clients_are_sticky_without_loading_a_page_first
    page = ["--page-first"] if transport == "websocket" else []
    code, rep = check(url, "--clients", "6", "--requests", "4", "--transport", transport, *page)
    assert code == 0, rep
    assert set(rep["distribution"]) == set(NAMES)
    assert rep["cookies"][0]["name"] == "limpet" and rep["cookies"][0]["httponly"]


def test_websocket_clients_are_sticky_without_loading_a_page_first(procs: Procs) -> None:
    """The proxy's 101 answer carries the affinity cookie, so WebSocket-only clients stick."""
    url = start_proxy(procs, "--affinity", "cookie")
    code, rep = check(url, "--clients", "6", "--requests", "4", "--transport", "websocket")
    assert code == 0, rep
    assert rep["moved_clients"] == 0 and set(rep["distribution"]) == set(NAMES)
    assert rep["cookies"][0]["name"] == "limpet"


def test_no_affinity_twin_moves_clients(procs: Procs) -> None:
    url = start_proxy(procs, "--affinity", "none")
    code, rep = check(url, "--clients", "4", "--requests", "3", "--concurrency", "1")
    assert code == 1 and rep["moved_clients"] == 4 and rep["cookies"] == []


def test_no_affinity_twin_breaks_socketio_sessions(procs: Procs) -> None:
    url = start_proxy(procs, "--affinity", "none")
    code, rep = check(
        url, "--transport", "socketio", "--clients", "3", "--requests", "3", "--concurrency", "1"
    )
    assert code == 1 and rep["failed_clients"] == 3
    assert all(c["errors"] == ["HTTP 400 Session ID unknown"] for c in rep["per_client"])


def test_short_cookie_ttl_is_reported(procs: Procs) -> None:
    url = start_proxy(procs, "--affinity", "cookie", "--cookie-ttl", "30")
    code, rep = check(url, "--clients", "3", "--requests", "2", "--transport", "socketio")
    assert code == 0  # sticky now; the warning says why it will not stay so
    assert rep["cookies"][0]["max_age"] == 30
    [warning] = [w for w in rep["warnings"] if w["code"] == "cookie-ttl-too-short"]
    assert warning["severity"] == "error"


def test_engineio_affinity_keeps_socketio_sessions_without_a_cookie(procs: Procs) -> None:
    """The twin of test_no_affinity_twin_breaks_socketio_sessions: same run, sid affinity."""
    url = start_proxy(procs, "--affinity", "engineio")
    code, rep = check(
        url, "--transport", "socketio", "--clients", "6", "--requests", "3", "--concurrency", "1"
    )
    assert code == 0, rep
    assert rep["failed_clients"] == 0 and rep["cookies"] == []
    assert set(rep["distribution"]) == set(NAMES)
    assert [w["code"] for w in rep["warnings"]] == ["no-cookie"]


def test_the_report_carries_the_spread_of_sessions_and_its_change(procs: Procs) -> None:
    """Sticky: the sessions end where they started (spread unchanged); the twin without
    affinity: clients end elsewhere, and the report says how many."""
    url = start_proxy(procs, "--affinity", "cookie")
    code, rep = check(url, "--clients", "9", "--requests", "3")
    assert code == 0, rep
    spread = rep["spread"]
    assert spread["first"] == spread["last"] == {n: 3 for n in NAMES}
    assert spread["at_start"] == spread["at_end"] == 1.0 and spread["changed_clients"] == 0
    twin = start_proxy(procs, "--affinity", "none")
    _, rep = check(twin, "--clients", "9", "--requests", "3")
    assert 0 < rep["spread"]["changed_clients"] <= rep["moved_clients"], rep["spread"]
