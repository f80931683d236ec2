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

#: ports of one test process's own slice (see _port_slice)
SLICE = 1000
_FIRST_SLICED = 10000
#: the next port of this process's slice to try
_cursor = 0


def _port_slice() -> range | None:
    """This process's ports when several test processes run side by side: pytest-xdist's
    workers (PYTEST_XDIST_WORKER=gwN) and the runs .ci/run starts together (LIMPET_PORT_SLOT=K)
    each take a slice of SLICE ports of their own, below the kernel's ephemeral range (32768
    and up, where bind(0) and outgoing connections take theirs). A port probed free by one
    process can then never be handed to another before the first one's server binds it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slot = os.environ.get("LIMPET_PORT_SLOT", "")
    if not worker and not slot:
        return None
    index = int(slot or 0) * 8 + (int(worker[2:]) if worker[2:].isdigit() else 0)
    start = _FIRST_SLICED + index * SLICE
    if start + SLICE > 32768:
        raise RuntimeError(f"no port slice for slot {slot} worker {worker}: too many in parallel")
    return range(start, start + SLICE)


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now on ``host``, never one handed out before in this
    process: the kernel may offer a port again as soon as the probe socket closes, and a cluster
    that takes nine ports before any server binds one got the same port twice (a route port that
    was also a monitor port: the server exited "address already in use"). Side by side with
    other test processes, from this process's own slice (_port_slice), in turn: a port comes
    back only after the other SLICE - 1 did."""
    global _cursor
    ports = _port_slice()
    if ports is not None:
        for _ in range(len(ports)):
            port = ports[_cursor % len(ports)]
            _cursor += 1
            if _bindable(host, port):
                _given.add(port)
                return port
        raise RuntimeError(f"no free port left in {ports}")
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
