"""`limpet up`: a real cluster (proxy + replicas) from one command, reachable, and stopped whole."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.procs import Procs, free_port, limpet_env, which_or_skip


def wait_for_text(
    procs: Procs, proc: subprocess.Popen[bytes], text: str, timeout: float = 20
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = procs.output(proc)
        if text in out:
            return out
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared:\n{out}")
        time.sleep(0.1)


def child_pids(banner: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^  (\S+)\s+\S+ pid (\d+)$", banner, re.M)}


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def all_gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def check(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limpet", "check", url, *args],
        env=limpet_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_up(procs: Procs, *args: str) -> tuple[subprocess.Popen[bytes], int, int, dict[str, int]]:
    port, admin = free_port(), free_port()
    proc = procs.limpet(
        "up", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", *args,
        wait_for=("127.0.0.1", port), timeout=30,
    )  # fmt: skip
    banner = wait_for_text(procs, proc, "Ctrl-C stops everything.")
    return proc, port, admin, child_pids(banner)


@pytest.mark.parametrize("affinity", ["cookie", "none"])
def test_up_whoami_cluster_then_sigterm_stops_every_child(procs: Procs, affinity: str) -> None:
    proc, port, admin, pids = start_up(procs, "--backend-kind", "whoami", "--affinity", affinity)
    assert set(pids) == {"whoami-1", "whoami-2", "whoami-3", "proxy"}
    assert all(alive(p) for p in pids.values())

    # through the proxy, fresh clients reach every replica; with cookie affinity each stays put,
    # and the twin without affinity shows the spread
    result = check(f"http://127.0.0.1:{port}/", "--clients", "6", "--requests", "4", "--json")
    report = json.loads(result.stdout)
    assert set(report["distribution"]) == {"whoami-1", "whoami-2", "whoami-3"}
    if affinity == "cookie":
        assert result.returncode == 0 and report["cookies"][0]["name"] == "limpet"
    else:
        assert result.returncode == 1 and report["moved_clients"] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=5) as resp:
        assert resp.status == 200

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert all_gone(list(pids.values())), {n: p for n, p in pids.items() if alive(p)}
    assert not listening(port)
    assert "limpet up: stopping" in procs.output(proc)


def test_up_killed_with_sigkill_leaves_no_orphans(procs: Procs) -> None:
    proc, _, _, pids = start_up(procs, "--backend-kind", "whoami", "--replicas", "2")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert all_gone(list(pids.values())), {n: p for n, p in pids.items() if alive(p)}


def test_up_child_dying_at_start_is_named_and_the_rest_stopped(procs: Procs) -> None:
    port = free_port()
    proc = procs.limpet(
        "up", "--backend-kind", "whoami", "--listen", f"127.0.0.1:{port}", "--admin", "off",
        "--affinity", "no-such-mode",
    )  # fmt: skip
    assert proc.wait(timeout=60) == 1
    out = procs.output(proc)
    assert "limpet up: error: proxy exited with code" in out
    assert "Traceback" not in out.split("limpet up: error:", 1)[1].split("\n", 1)[0]
    replica_ports = [int(p) for p in re.findall(r"listening on http://127.0.0.1:(\d+)/", out)]
    assert len(replica_ports) == 3
    assert not any(listening(p) for p in replica_ports)


def test_up_refuses_a_listen_address_in_use(procs: Procs) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = procs.limpet("up", "--backend-kind", "whoami", "--listen", f"127.0.0.1:{port}")
        assert proc.wait(timeout=30) == 2
    assert f"127.0.0.1:{port} is already in use" in procs.output(proc)


def test_up_one_hub_serves_the_chat_page(procs: Procs) -> None:
    proc, port, _, pids = start_up(procs, "--replicas", "1")
    assert set(pids) == {"hub-1", "proxy"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        assert resp.status == 200
        assert "socket.io" in resp.read().decode()
    procs.kill(proc, signal.SIGINT)
    assert all_gone(list(pids.values()))


def test_up_three_hubs_share_an_owned_redis(procs: Procs) -> None:
    which_or_skip("redis-server", "/usr/bin/redis-server")
    proc, port, _, pids = start_up(procs)
    assert set(pids) == {"redis", "hub-1", "hub-2", "hub-3", "proxy"}
    assert "started redis-server on redis://127.0.0.1:" in procs.output(proc)
    url = f"http://127.0.0.1:{port}/"
    by_name = check(url + "healthz", "--identify", "json:name", "--clients", "6", "--json")
    assert by_name.returncode == 0, by_name.stdout
    assert set(json.loads(by_name.stdout)["distribution"]) == {"hub-1", "hub-2", "hub-3"}
    sessions = check(url, "--transport", "socketio", "--clients", "4", "--requests", "3")
    assert sessions.returncode == 0, sessions.stdout

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert all_gone(list(pids.values())), {n: p for n, p in pids.items() if alive(p)}
