"""What a new user meets in the first five minutes, as real processes: a port already in use,
`check` against a proxy with no backend up, and `check --transport socketio` against hubs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.support.procs import Procs, free_port, limpet_env


def limpet(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limpet", *args],
        env=limpet_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [["whoami"], ["hub"], ["proxy", "--backend", "127.0.0.1:9", "--secret", "s"]],
    ids=["whoami", "hub", "proxy"],
)
def test_a_port_in_use_is_one_clear_line(command: list[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = limpet(command[0], "--listen", f"127.0.0.1:{port}", *command[1:])
    lines = result.stderr.splitlines()
    if command[0] == "proxy":  # the proxy may log a health probe before it tries to listen
        lines = [line for line in lines if line.startswith("limpet ")]
    assert result.returncode == 1, result.stderr
    assert lines == [
        f"limpet {command[0]}: error: cannot listen: error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"
    ], result.stderr
    assert "Traceback" not in result.stderr and "Task was destroyed" not in result.stderr


def test_check_says_every_answer_was_503_first(procs: Procs) -> None:
    port = free_port()
    procs.limpet(
        "proxy", "--listen", f"127.0.0.1:{port}", "--backend", f"127.0.0.1:{free_port()}",
        "--secret", "s", wait_for=("127.0.0.1", port),
    )  # fmt: skip
    result = limpet("check", f"http://127.0.0.1:{port}/", "--clients", "2", "--requests", "2")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[2].startswith("error: every answer was HTTP 503"), result.stdout
    assert "Set-Cookie" not in result.stdout


def test_check_socketio_names_the_hub_replicas(procs: Procs) -> None:
    hubs = []
    for name in ("hub-1", "hub-2"):
        port = free_port()
        procs.limpet("hub", "--listen", f"127.0.0.1:{port}", "--name", name,
                     wait_for=("127.0.0.1", port))  # fmt: skip
        hubs.append(f"--backend={name}=http://127.0.0.1:{port}")
    port = free_port()
    procs.limpet(
        "proxy", "--listen", f"127.0.0.1:{port}", *hubs, "--secret", "s",
        "--affinity", "engineio", wait_for=("127.0.0.1", port),
    )  # fmt: skip
    result = limpet("check", f"http://127.0.0.1:{port}/", "--transport", "socketio",
                    "--clients", "4", "--requests", "3", "--json")  # fmt: skip
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    # each round trip is named by the hub that answered it (X-Backend), not "(unnamed)"
    assert set(report["distribution"]) == {"hub-1", "hub-2"}
    assert "unnamed-backend" not in {w["code"] for w in report["warnings"]}


def test_check_wait_lets_a_tour_pasted_as_one_block_start(procs: Procs) -> None:
    """`check --wait` started before the proxy: its first try finds nothing, it keeps trying."""
    port = free_port()
    with socket.socket() as early:  # stands where the proxy will listen, to see check try
        early.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        early.bind(("127.0.0.1", port))
        early.listen()
        url = f"http://127.0.0.1:{port}/"
        check = subprocess.Popen(
            [sys.executable, "-m", "limpet", "check", url, "--clients", "4", "--requests", "3",
             "--wait", "60"],
            env=limpet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            conn, _ = early.accept()  # check's first try: answered by a closed connection
            conn.close()
        except BaseException:
            check.kill()
            raise
    try:
        backends = [f"--backend={n}={procs.whoami(n)}" for n in ("a", "b")]
        procs.limpet("proxy", "--listen", f"127.0.0.1:{port}", *backends, "--secret", "s",
                     wait_for=("127.0.0.1", port))  # fmt: skip
        out, err = check.communicate(timeout=90)
    finally:
        if check.poll() is None:
            check.kill()
    assert check.returncode == 0, out + err
    assert "STICKY: every client stayed on one backend" in out


def test_check_without_wait_fails_at_once_when_nothing_listens() -> None:
    """The twin: without --wait the same start is 'cannot reach', exit 1."""
    result = limpet("check", f"http://127.0.0.1:{free_port()}/")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "connection refused" in result.stderr
