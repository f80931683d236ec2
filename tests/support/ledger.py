"""Keep score of a subscriber through a broker failure: what it was told, against what was acked.

A subscriber's log is what arrived, in order: messages ``(epoch, offset, key)`` and notices (a
``recovered: false`` from a ``recovery`` event or a subscribe ack). ``score`` counts:

- lost silently: an acknowledged message ``(E, o)`` never delivered, with no notice between the
  last delivered ``(E, < o)`` (or the start) and the first delivered ``(E, > o)`` (or the end)
  (must be 0);
- lost announced: the same, with a notice there;
- duplicated: a key delivered more than once (must be 0);
- out of order: an offset not above the previous one within an epoch, a return to an epoch
  already left, or one publisher's messages out of their publish order (must be 0).

``reused`` checks every log and ack together: one (epoch, offset) naming two different keys.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Delivered:
    epoch: str
    offset: int
    key: str


@dataclass(frozen=True)
class Notice:
    epoch: str
    offset: int


Entry = Delivered | Notice


@dataclass(frozen=True)
class Score:
    delivered: int
    lost_silently: int
    lost_announced: int
    duplicated: int
    out_of_order: int


@dataclass
class Log:
    entries: list[Entry] = field(default_factory=list)

    def message(self, epoch: str, offset: int, key: str) -> None:
        self.entries.append(Delivered(epoch, offset, key))

    def notice(self, epoch: str, offset: int) -> None:
        self.entries.append(Notice(epoch, offset))

    def last(self) -> Delivered | None:
        for entry in reversed(self.entries):
            if isinstance(entry, Delivered):
                return entry
        return None


def publisher_of(key: str) -> tuple[str, int]:
    """Keys are ``PUBLISHER:N``, N counting up per publisher."""
    who, _, n = key.rpartition(":")
    return who, int(n)


def score(log: Log, acked: dict[str, tuple[str, int]]) -> Score:
    entries = log.entries
    seen: dict[str, int] = defaultdict(int)
    out_of_order = 0
    previous: Delivered | None = None
    left: set[str] = set()
    last_n: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, Delivered):
            continue
        seen[entry.key] += 1
        if seen[entry.key] > 1:
            continue
        if previous is not None:
            if entry.epoch == previous.epoch and entry.offset <= previous.offset:
                out_of_order += 1
            elif entry.epoch != previous.epoch:
                if entry.epoch in left:
                    out_of_order += 1
                left.add(previous.epoch)
        who, n = publisher_of(entry.key)
        if n <= last_n.get(who, -1):
            out_of_order += 1
        last_n[who] = max(n, last_n.get(who, -1))
        previous = entry
    duplicated = sum(count - 1 for count in seen.values() if count > 1)

    silent = announced = 0
    for key, (epoch, offset) in acked.items():
        if key in seen:
            continue
        before = -1
        for i, entry in enumerate(entries):
            if isinstance(entry, Delivered) and entry.epoch == epoch and entry.offset < offset:
                before = i
        after = len(entries)
        for i in range(before + 1, len(entries)):
            entry = entries[i]
            if isinstance(entry, Delivered) and entry.epoch == epoch and entry.offset > offset:
                after = i
                break
        if any(isinstance(entries[i], Notice) for i in range(before + 1, after)):
            announced += 1
        else:
            silent += 1
    delivered = sum(1 for e in entries if isinstance(e, Delivered))
    return Score(delivered, silent, announced, duplicated, out_of_order)


def reused(logs: Iterable[Log], acked: dict[str, tuple[str, int]]) -> int:
    """Positions that name more than one key, over every log and every ack."""
    names: dict[tuple[str, int], set[str]] = defaultdict(set)
    for key, position in acked.items():
        names[position].add(key)
    for log in logs:
        for entry in log.entries:
            if isinstance(entry, Delivered):
                names[(entry.epoch, entry.offset)].add(entry.key)
    return sum(1 for keys in names.values() if len(keys) > 1)
