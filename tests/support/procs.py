"""Start real processes on loopback for tests, wait until they listen, and always clean up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


#: every port free_port handed out in this process
_given: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now on ``host``, never one handed out before in this
    process: the kernel may offer a port again as soon as the probe socket closes, and a cluster
    that takes nine ports before any server binds one got the same port twice (a route port that
    was also a monitor port: the server exited "address already in use")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(1000):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no port left that was not handed out before")


def wait_listening(
    host: str, port: int, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until ``host:port`` accepts a TCP connection; fail fast if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode} before listening on {host}:{port}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def limpet_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child `python -m limpet`: this checkout's sources first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class Procs:
    """Owns every process a test starts; ``close()`` terminates them (then kills) in reverse order."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="limpet-test-"))

    @property
    def tmp(self) -> Path:
        return self._tmp

    def start(
        self,
        argv: Sequence[str],
        *,
        wait_for: tuple[str, int] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 15.0,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log = self._tmp / f"proc-{len(self._procs)}.log"
        self._logs.append(log)
        out = log.open("wb")
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env if env is not None else limpet_env(),
            cwd=cwd,
            start_new_session=True,
        )
        out.close()
        self._procs.append(proc)
        if wait_for is not None:
            try:
                wait_listening(*wait_for, timeout=timeout, proc=proc)
            except Exception as exc:
                raise RuntimeError(
                    f"{' '.join(argv)} did not start: {exc}\n{self.output(proc)}"
                ) from exc
        return proc

    def limpet(
        self,
        *args: str,
        wait_for: tuple[str, int] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 15.0,
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m limpet ARGS`` from this checkout."""
        return self.start(
            [sys.executable, "-m", "limpet", *args],
            wait_for=wait_for,
            env=limpet_env(env),
            timeout=timeout,
        )

    def whoami(
        self, name: str, host: str = "127.0.0.1", port: int | None = None, *extra: str
    ) -> str:
        """Start a `limpet whoami` backend; return its URL."""
        port = port or free_port(host)
        self.limpet(
            "whoami", "--listen", f"{host}:{port}", "--name", name, *extra, wait_for=(host, port)
        )
        return f"http://{host}:{port}"

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        try:
            index = self._procs.index(proc)
        except ValueError:
            return ""
        try:
            return self._logs[index].read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 5
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        shutil.rmtree(self._tmp, ignore_errors=True)


def which_or_skip(name: str, *candidates: str) -> str:
    """Path of an executable (from PATH, the venv, or candidates), or skip the test naming it."""
    import pytest

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    for c in candidates:
        if not found and Path(c).exists():
            found = c
    if not found:
        if os.environ.get("CI"):
            pytest.fail(
                f"{name} is required in CI but not installed; run scripts/test to install it"
            )
        pytest.skip(f"{name} not installed (scripts/test installs it)")
    return found
