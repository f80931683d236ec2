"""I/O: give the memory of a burst back to the system (glibc's ``malloc_trim``).

A burst of aborted TLS handshakes (or of closed connections) frees its buffers, but glibc keeps
the freed pages in its heap: the process's RSS stays at its peak, and the operator sees an OOM
kill coming that never would. Measured (docs/operations.md, ``bench/proxy/tls_memory.py``):
the RSS after 8 rounds of 2 000 aborted handshakes stays at its peak with the defaults and with
``MALLOC_ARENA_MAX=2`` (the proxy allocates on one thread: arenas are not the cause), and comes
back near the baseline after ``malloc_trim(0)``. So the proxy trims every ``INTERVAL`` seconds,
in a worker thread (ctypes drops the GIL for the call, and the event loop never waits on it).
``LIMPET_MALLOC_TRIM=0`` turns it off, ``LIMPET_MALLOC_TRIM=SECONDS`` sets the interval;
without glibc (musl, macOS) it is off.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger("limpet.proxy")

INTERVAL = 10.0


def trimmer() -> Callable[[], int] | None:
    """glibc's ``malloc_trim`` as a callable (``malloc_trim(0)``), or None where there is none
    or ``LIMPET_MALLOC_TRIM=0``."""
    if os.environ.get("LIMPET_MALLOC_TRIM", "1") == "0":
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


def interval() -> float:
    """Seconds between trims: ``LIMPET_MALLOC_TRIM`` when it is a positive number."""
    try:
        value = float(os.environ.get("LIMPET_MALLOC_TRIM", INTERVAL))
    except ValueError:
        return INTERVAL
    return value if value > 0 else INTERVAL


async def keep_trimmed() -> None:
    """Trim every ``interval()`` seconds, off the event loop. Measured on this machine: a trim
    that gives ~150 MB back takes ~43 ms, one with nothing to give back ~1 ms; glibc holds the
    heap's lock meanwhile, so the loop's own allocations may wait that long, once per interval.
    (Trimming only when the RSS grew was tried: a trim during a burst, when nothing is free yet,
    raises the baseline, and the memory freed after it was never given back.)"""
    trim = trimmer()
    if trim is None:
        return
    every = interval()
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        await loop.run_in_executor(None, trim)
