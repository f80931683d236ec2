"""SANS-IO: Maglev consistent hashing, with an optional bounded-load lookup.

Maglev (Eisenbud et al., NSDI 2016) fills a lookup table of prime size M with the backends'
permutations; a key hashes to one slot. Every backend owns floor(M/N) or ceil(M/N) slots, so
keys spread within sampling noise of ideal. When one of N backends joins or leaves, about 1/N
of the keys move, plus a small excess that Maglev trades for its balance (measured with M =
65521: x1.05 at N=10, x1.25 at N=50, x2.5 at N=200). M is one fixed prime, never derived from N:
a table size that changed with N would remap nearly every key when it changed. Building a table
costs ~30-70 ms in Python, so tables are cached per set of backend ids (``MaglevCache``) and
rebuilt only when that set changes. Hand-written: the stdlib has no consistent hash and the
PyPI ones use Python's per-process ``hash()`` or need C builds.

Every hash is BLAKE2b from ``hashlib`` with a fixed personalisation, never ``hash()``, so
separate processes (proxy replicas, workers) build the same table and agree on every key. The
table depends only on the *set* of backend ids (sorted first), not on their order.

Weights (``BackendView.weight``): in each round of the population a backend fills as many
slots as its weight, so it owns a share of the table (and of the keys) proportional to it; all
weights 1 is the paper's table, unchanged.

Bounded load (Mirrokni et al., "Consistent Hashing with Bounded Loads", 2018): no backend may
take more than ``ceil(c * (total + 1) / n)`` open connections; a key whose backend is full walks
the table from its slot to the next backend with room. With loads it stops being a pure
function of the key (it reads live counts), so two proxies may then disagree for keys whose
backend is full: that is the price of the bound, and why it is off for pure affinity tables.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from limpet.pool.model import BackendView, PoolSnapshot

#: the lookup table size: a prime, >= 100 N for the paper's balance up to ~650 backends
TABLE_SIZE = 65521
LOAD_FACTOR = 1.25


def stable_hash(data: bytes, person: bytes = b"limpet-key") -> int:
    """A 64-bit hash that every process computes the same way."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "big")


class Maglev:
    """The lookup table for one set of backends (build once per membership, look up often)."""

    __slots__ = ("ids", "size", "table", "weights")

    def __init__(
        self,
        ids: Iterable[str],
        size: int | None = None,
        weights: dict[str, int] | None = None,
    ) -> None:
        self.ids: tuple[str, ...] = tuple(sorted(set(ids)))
        n = len(self.ids)
        self.size = size or TABLE_SIZE
        w = weights or {}
        self.weights = tuple(max(1, w.get(i, 1)) for i in self.ids)
        self.table: array[int] = self._populate(n) if n else array("i")

    def _populate(self, n: int) -> array[int]:
        m = self.size
        offsets = [stable_hash(i.encode(), b"maglev-offset") % m for i in self.ids]
        skips = [stable_hash(i.encode(), b"maglev-skip") % (m - 1) + 1 for i in self.ids]
        taken = [0] * n
        table = [-1] * m
        filled = 0
        weights = self.weights
        while True:  # the paper's Pseudocode 1, each backend taking `weight` turns a round
            for i in range(n):
                offset, skip = offsets[i], skips[i]
                for _ in range(weights[i]):
                    slot = (offset + taken[i] * skip) % m
                    while table[slot] >= 0:
                        taken[i] += 1
                        slot = (offset + taken[i] * skip) % m
                    table[slot] = i
                    taken[i] += 1
                    filled += 1
                    if filled == m:
                        return array("i", table)

    def lookup(self, key: bytes) -> str | None:
        """The backend id for ``key`` (None when the table is empty)."""
        if not self.table:
            return None
        return self.ids[self.table[stable_hash(key) % self.size]]

    def lookup_bounded(
        self, key: bytes, load: Callable[[str], int], factor: float = LOAD_FACTOR
    ) -> str | None:
        """The key's backend unless it already holds its share; then the next one with room."""
        n = len(self.ids)
        if n == 0:
            return None
        loads = [load(i) for i in self.ids]
        capacity = math.ceil(factor * (sum(loads) + 1) / n)
        start = stable_hash(key) % self.size
        seen: set[int] = set()
        for step in range(self.size):
            index = self.table[(start + step) % self.size]
            if loads[index] < capacity:
                return self.ids[index]
            seen.add(index)
            if len(seen) == n:
                break
        # unreachable with factor >= 1 (some backend is below the mean); stay total anyway
        return self.ids[self.table[start]]


class MaglevCache:
    """A few tables keyed by the backend ids they were built for (membership changes rarely).

    ``eligible(snapshot)`` is the per-request call: one identity check while the snapshot is
    the same object; a new snapshot costs a sort of its ids, and a table build only when the
    set of healthy ids is new (a flapping backend finds its old table in the cache).
    """

    __slots__ = ("_last", "_last_table", "_maxsize", "_tables")

    def __init__(self, maxsize: int = 4) -> None:
        self._tables: OrderedDict[tuple[tuple[str, int], ...], Maglev] = OrderedDict()
        self._maxsize = maxsize
        self._last: PoolSnapshot | None = None
        self._last_table: Maglev | None = None

    def eligible(self, pool: PoolSnapshot) -> Maglev:
        """The table over the snapshot's HEALTHY backends."""
        if pool is self._last and self._last_table is not None:
            return self._last_table
        table = self.get(pool.eligible())
        self._last, self._last_table = pool, table
        return table

    def get(self, backends: Sequence[BackendView]) -> Maglev:
        key = tuple(sorted((b.id, b.weight) for b in backends))
        table = self._tables.get(key)
        if table is None:
            table = Maglev((i for i, _ in key), weights=dict(key))
            self._tables[key] = table
            if len(self._tables) > self._maxsize:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        return table
