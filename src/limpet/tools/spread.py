"""SANS-IO: the spread of sessions across backends seen by `limpet check`, and how it changed.

Each client of a check is one session. Where it was at its first answer and where it was at its
last give two distributions; their *spread* is the fullest backend's clients over the mean per
backend (1.0: even; 2.0 after a 2 -> 4 scale-up that nothing rebalanced). Backends seen at
either end count in both, so a backend that joined during the check shows up empty at the
start. Watching a rebalance happen against any URL: run a long check (``--requests`` high)
across the scale-up and read the change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from limpet.tools.verdict import ClientRun


@dataclass(frozen=True, slots=True)
class Spread:
    first: dict[str, int]  # backend -> clients whose first answer came from it
    last: dict[str, int]  # backend -> clients whose last answer came from it
    changed: int  # clients that ended on another backend than they started on

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.first) | set(self.last)))

    @property
    def at_start(self) -> float:
        return spread(self.first, self.backends)

    @property
    def at_end(self) -> float:
        return spread(self.last, self.backends)


def spread(counts: Mapping[str, int], backends: Iterable[str]) -> float:
    """The fullest backend's count over the mean (1.0 when there is nothing to spread)."""
    names = list(backends)
    total = sum(counts.get(b, 0) for b in names)
    if not names or total == 0:
        return 1.0
    return max(counts.get(b, 0) for b in names) * len(names) / total


def of_runs(runs: Iterable[ClientRun]) -> Spread:
    first: Counter[str] = Counter()
    last: Counter[str] = Counter()
    changed = 0
    for run in runs:
        names = [a.backend for a in run.attempts if a.ok and a.backend is not None]
        if not names:
            continue
        first[names[0]] += 1
        last[names[-1]] += 1
        changed += names[0] != names[-1]
    return Spread(dict(sorted(first.items())), dict(sorted(last.items())), changed)


def render(s: Spread) -> list[str]:
    """Lines for the text report (none when fewer than two backends answered)."""
    if len(s.backends) < 2:
        return []
    line = f"  sessions spread {s.at_start:.2f} at the start"
    if s.first != s.last or s.changed:
        line += f" -> {s.at_end:.2f} at the end ({s.changed} clients ended elsewhere)"
    return [line + f"   (fullest backend / mean over {len(s.backends)})"]


def to_json(s: Spread) -> dict[str, Any]:
    return {
        "at_start": round(s.at_start, 3),
        "at_end": round(s.at_end, 3),
        "first": s.first,
        "last": s.last,
        "changed_clients": s.changed,
    }
