"""SANS-IO: the live pool of one service: members, health, drain, open-connection counts.

The I/O layers feed it facts (probe results, passive failures, discovery membership,
connections opened/closed); policies read immutable ``PoolSnapshot`` values from it.

Keeping the hot path cheap:
- ``snapshot()`` returns a cached value; it is rebuilt only when membership or a backend's
  *public* state changes (``record``/``drain``/``set_members``), never per request.
- Open-connection counts change per request, so they are not frozen into snapshots. The pool
  keeps one live ``loads`` dict (backend id -> open count), mutated in place by ``opened``/
  ``closed``, and every snapshot holds a read-only reference to that same dict
  (``PoolSnapshot.loads``). Least-connections and bounded-load hashing call
  ``snapshot.load(id)`` and see the current figure at the cost of one dict lookup.
  ``BackendView.open`` is the figure at the time the snapshot was built (for status pages).

Clients cannot weaponise passive health (Envoy's outlier detection rules):
- a passive ejection happens only while fewer than ``max_ejection_percent`` of the members
  (at least one) are passively ejected; past that, failures are counted but eject nobody;
- when fewer than ``panic_threshold`` percent of the non-draining members are healthy, the
  snapshot is in *panic*: passively ejected members (not confirmed down by a probe) and
  overloaded ones (probes connect but time out) are offered to policies as HEALTHY again, so
  load spreads over all of them instead of piling onto few, or onto none.
  ``views()`` keeps the true states for status pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from limpet.pool.health import HealthEvent, HealthRules, HealthStatus, advance
from limpet.pool.model import BackendState, BackendView, PoolSnapshot
from limpet.pool.sessions import SessionLedger


class Backend:
    """One member of a live pool (mutable; the pool owns it)."""

    __slots__ = ("address", "id", "loads", "operator_drain", "status", "terminating", "weight")

    def __init__(
        self, backend_id: str, address: str, loads: Mapping[str, int], weight: int = 1
    ) -> None:
        self.id = backend_id
        self.address = address
        self.weight = weight
        self.status = HealthStatus()
        self.operator_drain = False  # drained by drain(); undone only by undrain()
        self.terminating = False  # drained by discovery; undone when discovery says so
        self.loads = loads

    @property
    def state(self) -> BackendState:
        return self.status.state

    @property
    def open(self) -> int:
        return self.loads.get(self.id, 0)

    def view(self, state: BackendState | None = None) -> BackendView:
        return BackendView(
            id=self.id,
            address=self.address,
            state=state or self.state,
            open=self.open,
            weight=self.weight,
        )

    def __repr__(self) -> str:
        return f"Backend(id={self.id!r}, state={self.state.name}, open={self.open})"


def _panic_candidate(backend: Backend) -> bool:
    return backend.status.panic_candidate and not backend.status.draining


class Pool:
    """A mutable plain-data pool; no I/O, no clock (``now`` is passed in)."""

    def __init__(
        self,
        name: str,
        backends: Iterable[tuple[str, str]],
        rules: HealthRules = HealthRules(),
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self.name = name
        self.rules = rules
        self._loads: dict[str, int] = {}
        #: read-only view of the live open-connection counts, shared with every snapshot
        self.loads: Mapping[str, int] = MappingProxyType(self._loads)
        self._members: dict[str, Backend] = {}
        for backend_id, address in backends:
            if backend_id in self._members:
                raise ValueError(f"pool {name!r}: duplicate backend id {backend_id!r}")
            weight = (weights or {}).get(backend_id, 1)
            self._members[backend_id] = Backend(backend_id, address, self.loads, weight)
        self._snapshot: PoolSnapshot | None = None
        #: session counts per backend (new sessions placed by load; the rebalance planner)
        self.sessions = SessionLedger()

    def __repr__(self) -> str:
        return f"Pool(name={self.name!r}, backends={list(self._members.values())!r})"

    def __contains__(self, backend_id: object) -> bool:
        return backend_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def backends(self) -> tuple[Backend, ...]:
        return tuple(self._members.values())

    def get(self, backend_id: str) -> Backend | None:
        return self._members.get(backend_id)

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> PoolSnapshot:
        """The current picture (cached until membership or a state changes)."""
        snap = self._snapshot
        if snap is None:
            panic = self.in_panic()
            healthy = BackendState.HEALTHY
            snap = PoolSnapshot(
                name=self.name,
                backends=tuple(
                    b.view(healthy if panic and _panic_candidate(b) else None)
                    for b in self._members.values()
                ),
                loads=self.loads,
                panic=panic,
                session_counts=self.sessions.counts,
            )
            self._snapshot = snap
        return snap

    def views(self) -> tuple[BackendView, ...]:
        """Every member with its true state (a panic snapshot shows some as HEALTHY)."""
        return tuple(b.view() for b in self._members.values())

    def in_panic(self) -> bool:
        """Fewer than ``panic_threshold`` percent of the non-draining members are healthy."""
        serving = [b for b in self._members.values() if not b.status.draining]
        healthy = sum(1 for b in serving if b.state is BackendState.HEALTHY)
        return bool(serving) and healthy * 100 < self.rules.panic_threshold * len(serving)

    def may_eject(self) -> bool:
        """Whether one more passive ejection stays within ``max_ejection_percent``."""
        ejected = sum(1 for b in self._members.values() if b.status.passively_ejected)
        budget = max(1, len(self._members) * self.rules.max_ejection_percent // 100)
        return ejected < budget

    def _changed(self) -> None:
        self._snapshot = None

    # -- health --------------------------------------------------------------------------------

    def record(self, backend_id: str, event: HealthEvent, now: float) -> BackendState:
        """Feed one health event; returns the backend's state after it.

        An unknown id (a backend removed by discovery while a request to it was in flight)
        is ignored and reported as EJECTED: it serves nothing here any more.
        """
        backend = self._members.get(backend_id)
        if backend is None:
            return BackendState.EJECTED
        before, was_candidate = backend.state, backend.status.panic_candidate
        may_eject = event is not HealthEvent.PASSIVE_FAIL or self.may_eject()
        backend.status = advance(backend.status, event, self.rules, now, may_eject=may_eject)
        after = backend.state
        # a probe confirming a passive ejection changes what a panic snapshot offers
        if after is not before or backend.status.panic_candidate is not was_candidate:
            self._changed()
        return after

    def tick(self, now: float) -> list[str]:
        """Let time pass for every ejected backend; returns the ids whose state changed."""
        changed: list[str] = []
        for backend in self._members.values():
            if backend.status.ejected_until is not None:
                before = backend.state
                if self.record(backend.id, HealthEvent.TICK, now) is not before:
                    changed.append(backend.id)
        return changed

    def next_deadline(self) -> float | None:
        """The earliest passive-ejection expiry, so the I/O side knows when to ``tick``."""
        deadlines = [
            b.status.ejected_until
            for b in self._members.values()
            if b.status.ejected_until is not None
        ]
        return min(deadlines) if deadlines else None

    # -- drain ---------------------------------------------------------------------------------

    def drain(self, backend_id: str) -> None:
        """Operator drain: no new sessions; pinned ones stay. Raises KeyError if unknown."""
        backend = self._members[backend_id]
        backend.operator_drain = True
        self._sync_drain(backend)

    def undrain(self, backend_id: str) -> None:
        """Undo an operator drain (a backend discovery reports terminating stays drained)."""
        backend = self._members[backend_id]
        backend.operator_drain = False
        self._sync_drain(backend)

    def _sync_drain(self, backend: Backend) -> None:
        want = backend.operator_drain or backend.terminating
        if want is not backend.status.draining:
            event = HealthEvent.DRAIN if want else HealthEvent.UNDRAIN
            self.record(backend.id, event, 0.0)  # drain events do not read the clock

    # -- membership ----------------------------------------------------------------------------

    def set_members(self, members: Iterable[tuple[str, str, bool]], now: float) -> None:
        """Apply a discovery result: (id, address, terminating) for every current member.

        New ids join HEALTHY (or DRAINING when already terminating); terminating members drain;
        ids missing from the list are removed (their open counts stay until closed).
        """
        seen: set[str] = set()
        changed = False
        for backend_id, address, terminating in members:
            seen.add(backend_id)
            backend = self._members.get(backend_id)
            if backend is None:
                backend = Backend(backend_id, address, self.loads)
                self._members[backend_id] = backend
                changed = True
            elif backend.address != address:
                backend.address = address
                changed = True
            if backend.terminating is not terminating:
                backend.terminating = terminating
                self._sync_drain(backend)
        for backend_id in [b for b in self._members if b not in seen]:
            del self._members[backend_id]
            self.sessions.drop_backend(backend_id)
            if self._loads.get(backend_id) == 0:
                del self._loads[backend_id]
            changed = True
        if changed:
            self._changed()
        self.tick(now)

    # -- load ----------------------------------------------------------------------------------

    def opened(self, backend_id: str) -> None:
        """A downstream connection/session started using this backend."""
        self._loads[backend_id] = self._loads.get(backend_id, 0) + 1

    def closed(self, backend_id: str) -> None:
        """The matching end of ``opened``; never goes below zero."""
        count = self._loads.get(backend_id, 0) - 1
        if count > 0:
            self._loads[backend_id] = count
        elif backend_id in self._members:
            self._loads[backend_id] = 0
        else:
            self._loads.pop(backend_id, None)
