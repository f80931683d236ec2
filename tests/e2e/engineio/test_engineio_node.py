"""The official socket.io JavaScript client through `limpet proxy --affinity engineio`.

Three real `limpet whoami` backends (python-socketio) behind the proxy; every stickiness test
has a twin (``--affinity none``, or replicas with different secrets) that shows the failures the
feature prevents.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Procs, free_port, which_or_skip

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "clients.mjs"
SECRET = "engineio-e2e-secret"


@pytest.fixture(scope="session")
def node() -> str:
    """node, with socket.io-client installed next to clients.mjs (npm install on first use)."""
    exe = which_or_skip("node")
    if not (HERE / "node_modules" / "socket.io-client").is_dir():
        npm = which_or_skip("npm")
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm install in {HERE} failed:\n{result.stderr[-2000:]}")
    return exe


@pytest.fixture
def procs(procs: Procs) -> Iterator[Procs]:
    """The shared ``procs``, but proxies are killed first at the end: a proxy waits out its
    shutdown drain after socket.io clients left, which would add seconds to every test."""
    yield procs
    for proxy in PROXIES.pop(id(procs), []):
        procs.kill(proxy)


PROXIES: dict[int, list[subprocess.Popen[bytes]]] = {}


def start_backends(procs: Procs, names: str = "abc") -> dict[str, str]:
    return {name: procs.whoami(name) for name in names}


def start_backend(procs: Procs, name: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A `limpet whoami` backend and its process (to kill it)."""
    port = free_port()
    proc = procs.limpet(
        "whoami", "--listen", f"127.0.0.1:{port}", "--name", name, wait_for=("127.0.0.1", port)
    )
    return f"http://127.0.0.1:{port}", proc


def start_proxy(
    procs: Procs, backends: dict[str, str], affinity: str = "engineio", secret: str = SECRET
) -> tuple[int, Any]:
    port = free_port()
    argv = ["proxy", "--listen", f"127.0.0.1:{port}", "--affinity", affinity, "--secret", secret]
    for name, url in backends.items():
        argv += ["--backend", f"{name}={url}"]
    proc = procs.limpet(*argv, wait_for=("127.0.0.1", port))
    PROXIES.setdefault(id(procs), []).append(proc)
    return port, proc


def run_clients(
    node: str, port: int, *, timeout: float = 60.0, **options: object
) -> dict[str, Any]:
    argv = [node, str(CLIENTS), "--url", f"http://127.0.0.1:{port}"]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=HERE, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def assert_clean(summary: dict[str, Any], clients: int) -> None:
    brief = {k: v for k, v in summary.items() if k != "per_client"}
    assert summary["finished"] == clients, brief
    assert summary["ok"] == clients * summary["messages_per_client"], brief
    for key in ("session_unknown", "http_400", "connect_errors", "reconnects", "disconnects"):
        assert summary[key] == 0, (key, brief)
    assert summary["multi_backend_clients"] == 0, brief


@pytest.mark.parametrize("transports", ["polling", "default"])
def test_50_clients_stay_on_their_backend(procs: Procs, node: str, transports: str) -> None:
    port, _ = start_proxy(procs, start_backends(procs))
    summary = run_clients(node, port, clients=50, messages=20, transports=transports)
    assert_clean(summary, 50)
    assert summary["backends"] == ["a", "b", "c"]  # handshakes were spread
    if transports == "default":
        assert summary["upgraded"] == 50  # the websocket upgrade went to the right backend too


@pytest.mark.parametrize("transports", ["polling", "default"])
def test_twin_without_affinity_fails(procs: Procs, node: str, transports: str) -> None:
    """The same clients with --affinity none: sessions break, so the test above can fail."""
    port, _ = start_proxy(procs, start_backends(procs), affinity="none")
    summary = run_clients(node, port, clients=10, messages=5, transports=transports, deadline_s=3)
    assert summary["http_400"] + summary["connect_errors"] > 0
    assert summary["reconnects"] + summary["disconnects"] > 0 or summary["finished"] < 10


def test_websocket_only_handshake_is_rewritten(procs: Procs, node: str) -> None:
    """transports ["websocket"]: the sid arrives in the first frame; the proxy re-frames it."""
    port, _ = start_proxy(procs, start_backends(procs))
    summary = run_clients(node, port, clients=20, messages=10, transports="websocket")
    assert_clean(summary, 20)


@pytest.mark.parametrize("transports", ["polling", "default"])
def test_two_proxies_with_one_secret_agree(procs: Procs, node: str, transports: str) -> None:
    """Every other polling request (and the upgrade) goes through the other proxy replica."""
    backends = start_backends(procs)
    port1, _ = start_proxy(procs, backends)
    port2, _ = start_proxy(procs, backends)
    summary = run_clients(
        node, port1, clients=30, messages=10, transports=transports, alt_port=port2
    )
    assert_clean(summary, 30)


def test_twin_two_proxies_with_different_secrets_fail(procs: Procs, node: str) -> None:
    backends = start_backends(procs)
    port1, _ = start_proxy(procs, backends)
    port2, _ = start_proxy(procs, backends, secret="another-secret")
    summary = run_clients(
        node, port1, clients=5, messages=5, transports="polling", alt_port=port2, deadline_s=3
    )
    assert summary["session_unknown"] > 0
    assert summary["finished"] < 5


def test_killed_backend_clients_reconnect_elsewhere_and_carry_on(procs: Procs, node: str) -> None:
    url, victim = start_backend(procs, "a")
    backends = {"a": url, **start_backends(procs, "bc")}
    port, _ = start_proxy(procs, backends)

    ready = procs.tmp / "ready"

    def kill_when_pinned() -> None:
        # every client has its session (and its name) before backend "a" dies
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        procs.kill(victim)

    killer = threading.Thread(target=kill_when_pinned)
    killer.start()
    try:
        summary = run_clients(
            node,
            port,
            clients=30,
            messages=20,
            transports="polling",
            interval_ms=100,
            ready_file=ready,
        )
    finally:
        killer.join()
    assert ready.exists()
    brief = {k: v for k, v in summary.items() if k != "per_client"}
    assert summary["finished"] == 30, brief
    assert summary["ok"] == 30 * 20, brief
    moved = [c for c in summary["per_client"] if c["backends"][:1] == ["a"]]
    assert moved, brief  # round robin put some sessions on "a"
    for client in moved:
        # the session was on "a", reconnected once or a few times, ended on a live backend
        assert client["backends"][-1] in ("b", "c"), client
        assert 1 <= client["reconnects"] <= 5, client
    for client in summary["per_client"]:
        if client["backends"][:1] != ["a"]:
            assert client["reconnects"] == 0 and client["backends"] in (["b"], ["c"]), client
