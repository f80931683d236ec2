"""The garbage collector's settings for a replica that holds thousands of long-lived
connections.

CPython's cyclic collector runs a full (generation 2) collection each time the objects that
survived the younger generations grow by a quarter, and a full collection walks every tracked
object of the process. A replica's connections are such objects: during a connect storm the
heap grows by a few hundred tracked objects per client, and with the default thresholds
(700, 10, 10) the full collections of a 2 000-client storm walked every connection object a few
times over and found nothing to free (about a quarter of the replica's CPU: docs/benchmarks-hub.md,
"Connect storm"). Two settings, applied once when the replica starts serving:

- ``gc.freeze()``: the objects made at start-up (modules, the app, the routes) live as long as
  the process; they go to the permanent generation and no collection walks them again.
- a larger first threshold (``--gc-threshold``, default 50 000 allocations): the young
  generation is collected 70x less often, so the connection objects reach the old generation,
  and its full collections, in far fewer steps. Cyclic garbage waits for at most that many
  allocations (a few MB) before it is freed; reference counting frees everything else at once.

python-socketio, python-engineio and aiohttp do not touch the collector; this is the process's
own setting (as the Instagram and Gunicorn folk tune theirs), so it belongs to the replica's
start-up, not to a library.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

#: the first threshold a replica uses unless told otherwise (CPython's own: 700)
DEFAULT_THRESHOLD = 50_000


@dataclass(frozen=True, slots=True)
class HeapTuning:
    """What ``tune`` changed (``restore`` puts it back; tests and embedders use it)."""

    before: tuple[int, int, int]
    frozen: int


def tune(threshold: int = DEFAULT_THRESHOLD) -> HeapTuning | None:
    """Freeze what start-up made and raise the young generation's threshold to ``threshold``
    (0: leave the collector as it is). Call once the app is built, before serving."""
    if threshold <= 0:
        return None
    before = gc.get_threshold()
    gc.collect()  # what start-up left as garbage is freed now, not frozen
    gc.freeze()
    _, second, third = before
    gc.set_threshold(threshold, second, third)
    return HeapTuning(before, gc.get_freeze_count())


def restore(tuning: HeapTuning | None) -> None:
    if tuning is None:
        return
    gc.unfreeze()
    gc.set_threshold(*tuning.before)
