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

    def tail(self, name: str) -> str:
        """The last line ``name`` logged: why it would not start, for the report."""
        try:
            lines = (self.logdir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:160] if lines else ""

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


# --- what a process costs, from /proc (Linux) -------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (a proxy's workers, a wrapper's child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants (all threads)."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:  # utime, stime: fields 14 and 15 of stat, 12 and 13 after ")"
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, from /proc/PID/statm."""
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by children) towards ``want``; return the soft limit got.

    Root may raise the hard limit too; anyone else gets at most the current hard limit.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
