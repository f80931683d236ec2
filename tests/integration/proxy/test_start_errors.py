"""`limpet proxy` refusing to start says one clear thing: an admin port in use is one error
line, with no "listening" line before it and no "Task was destroyed" after it."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.procs import free_port, limpet_env


def test_a_busy_admin_port_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        admin = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "limpet", "proxy", "--listen", f"127.0.0.1:{free_port()}",
             "--backend", "127.0.0.1:9", "--admin", f"127.0.0.1:{admin}", "--no-health"],
            env=limpet_env({"LIMPET_SECRET": "s", "LIMPET_ADMIN_TOKEN": "t"}),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "address already in use" in errors[0], done.stderr
    assert errors[0].startswith("limpet proxy: error: cannot listen")
    assert "listening on" not in done.stderr + done.stdout
    assert "Task was destroyed" not in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(autouse=True)
def one_build(wire_core: str) -> None:
    if wire_core == "python":
        pytest.skip("start-up is the same for both builds: the compiled run covers it")
