"""SANS-IO: how many sessions each backend of a pool holds, for placing new ones by load.

A *session* is what affinity pins: an Engine.IO sid, an affinity cookie. Open connections are a
poor measure of it: a polling session holds no connection between its requests, and a burst of
handshakes opens connections that close a moment later. So a backend's session count is

- the session keys seen on it within ``window`` seconds (every request of a session touches
  its key), plus
- the keys held open by a tunnel (a WebSocket is alive however quiet it is), plus
- the new sessions placed on it whose key has not come back yet (``placed``: a handshake was
  sent there; its first request with the minted sid turns the placement into a key). A
  placement never confirmed expires after ``grace`` seconds.

``counts`` is a read-only view of the live figures (backend id -> sessions), shared with every
pool snapshot as ``PoolSnapshot.sessions`` the way open-connection counts are: balancers read it
with one dict lookup. Time is a parameter (``now``, one clock used consistently); the I/O side
calls ``expire(now)`` now and then so counts fall when sessions go quiet.

Keys are bounded (``max_keys``): past it the longest-quiet key is forgotten (a count that is
low by one is harmless; memory that grows with every client ever seen is not).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class SessionFact:
    """One session as the rebalance planner sees it."""

    key: str
    backend: str
    idle: float  # seconds since its last request (or the last byte of its tunnel)
    tunnel: bool  # held open by a tunnel (a WebSocket): moved by closing it


class SessionLedger:
    """Session keys per backend, with live counts (see the module docstring)."""

    __slots__ = ("_counts", "_held", "_pending", "_seen", "counts", "grace", "max_keys", "window")

    def __init__(self, window: float = 60.0, grace: float = 10.0, max_keys: int = 200_000) -> None:
        if window <= 0 or grace <= 0 or max_keys < 1:
            raise ValueError("window and grace must be > 0, max_keys >= 1")
        self.window = window
        self.grace = grace
        self.max_keys = max_keys
        self._counts: dict[str, int] = {}
        #: read-only view of the live counts (shared with pool snapshots)
        self.counts: Mapping[str, int] = MappingProxyType(self._counts)
        #: key -> [backend, last seen], oldest first (touching moves a key to the end)
        self._seen: OrderedDict[str, list[object]] = OrderedDict()
        self._held: dict[str, int] = {}  # key -> open tunnels holding it
        self._pending: dict[str, deque[float]] = {}  # backend -> placement deadlines

    def __repr__(self) -> str:
        return f"SessionLedger(counts={dict(self._counts)!r}, keys={len(self._seen)})"

    def __len__(self) -> int:
        return len(self._seen)

    def _add(self, backend: str, n: int) -> None:
        count = self._counts.get(backend, 0) + n
        self._counts[backend] = count if count > 0 else 0

    # -- facts in ----------------------------------------------------------------------------
    def placed(self, backend: str, now: float) -> None:
        """A new session was sent to ``backend``; its key is not known yet."""
        pending = self._pending.get(backend)
        if pending is None:
            pending = self._pending[backend] = deque()
        if len(pending) >= self.max_keys:
            return  # a flood of handshakes that never come back: counted once each, bounded
        pending.append(now + self.grace)
        self._add(backend, 1)

    def touch(self, backend: str, key: str, now: float) -> None:
        """A request of session ``key`` went to ``backend`` at ``now`` (the hot path)."""
        entry = self._seen.get(key)
        if entry is not None:
            if entry[0] != backend:  # the same key on another backend: it moved
                self._add(str(entry[0]), -1)
                self._add(backend, 1)
                entry[0] = backend
            entry[1] = now
            self._seen.move_to_end(key)
            return
        if len(self._seen) >= self.max_keys:
            self._evict_one()
        pending = self._pending.get(backend)
        if pending:  # the placement this key came from is now the key itself
            pending.popleft()
        else:
            self._add(backend, 1)
        self._seen[key] = [backend, now]

    def hold(self, backend: str, key: str, now: float) -> None:
        """A tunnel of session ``key`` opened on ``backend``: it counts until ``release``."""
        self.touch(backend, key, now)
        self._held[key] = self._held.get(key, 0) + 1

    def release(self, key: str, now: float) -> None:
        """The tunnel of ``key`` ended: from now on it ages like any other key."""
        n = self._held.get(key, 0) - 1
        if n > 0:
            self._held[key] = n
            return
        self._held.pop(key, None)
        entry = self._seen.get(key)
        if entry is not None:
            entry[1] = now
            self._seen.move_to_end(key)

    def forget(self, key: str) -> str | None:
        """Drop ``key`` at once (its session was moved away); returns the backend it was on."""
        self._held.pop(key, None)
        entry = self._seen.pop(key, None)
        if entry is None:
            return None
        backend = str(entry[0])
        self._add(backend, -1)
        return backend

    def drop_backend(self, backend: str) -> None:
        """``backend`` left the pool: its counts and keys go."""
        for key in [k for k, e in self._seen.items() if e[0] == backend]:
            self.forget(key)
        self._pending.pop(backend, None)
        self._counts.pop(backend, None)

    def _evict_one(self) -> None:
        for key in self._seen:
            if key not in self._held:
                self.forget(key)
                return
        key = next(iter(self._seen))  # every key is held: the oldest held one goes
        self.forget(key)

    # -- time ----------------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Forget keys quiet for ``window`` seconds (unless a tunnel holds them) and placements
        past their grace."""
        cutoff = now - self.window
        seen, held = self._seen, self._held
        while seen:
            key, entry = next(iter(seen.items()))
            last = entry[1]
            assert isinstance(last, float | int)
            if last > cutoff:
                break
            if key in held:  # alive while its tunnel is: file it as seen now
                entry[1] = now
                seen.move_to_end(key)
                continue
            self.forget(key)
        for backend, pending in self._pending.items():
            while pending and pending[0] <= now:
                pending.popleft()
                self._add(backend, -1)

    # -- facts out -----------------------------------------------------------------------------
    def count(self, backend: str) -> int:
        return self._counts.get(backend, 0)

    def backend_of(self, key: str) -> str | None:
        entry = self._seen.get(key)
        return None if entry is None else str(entry[0])

    def sessions(self, now: float) -> list[SessionFact]:
        """Every known session, idle times from ``now`` (tunnels' own idle time is the I/O
        side's to fill in: a key's last touch is when its tunnel opened)."""
        out = []
        for key, (backend, last) in self._seen.items():
            assert isinstance(last, float | int)
            out.append(SessionFact(key, str(backend), max(0.0, now - last), key in self._held))
        return out
