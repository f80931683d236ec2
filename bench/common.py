"""What every benchmark script needs: free loopback ports, readiness, and owned child processes.

Benchmarks are scripts (``python bench/<part>/<script>.py``), not tests; they import this file by
path (``sys.path`` gets ``bench/``), and run limpet from this checkout's ``src``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0, host: str = "127.0.0.1"
) -> None:
    """Block until ``host:port`` accepts; raise if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args!r} exited with {proc.returncode} before listening on {port}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def limpet_env() -> dict[str, str]:
    """Environment for ``python -m limpet``: this checkout's sources first."""
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def limpet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "limpet", *args]


class Procs:
    """Child processes, each in its own session with a log file; all stopped by ``close``."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; with ``port``, return only once it listens there."""
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=ROOT
        )
        log.close()
        self.procs.append(proc)
        if port is not None:
            wait_port(port, proc)
        return proc

    def stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.05, deadline - time.monotonic()))
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            if p in self.procs:
                self.procs.remove(p)

    def close(self) -> None:
        self.stop(list(reversed(self.procs)))
