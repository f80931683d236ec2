"""I/O: the proxy server: listeners, routes to pools, and the task group of background work.

One ``ProxyServer`` per process. It owns the pools (the core's ``Pool`` state machine plus an
``UpstreamPool`` per backend), the affinity policy of each pool, the listeners, the health
probes and the admin listener, and shuts them down in order: stop accepting, finish open
exchanges until a deadline, then close what is left.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

from limpet.admin.metrics import ProxyMetrics
from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.affinity.factory import build_policy
from limpet.affinity.session_keys import NoKeys, for_policy
from limpet.balancing.groups import CANARY, STABLE, GroupSplit
from limpet.balancing.groups import wrap as wrap_groups
from limpet.config.model import LimitsConfig, PoolConfig, ProxyConfig, RouteConfig
from limpet.errors import ConfigError
from limpet.pool.health import HealthEvent, HealthRules
from limpet.pool.model import BackendState, PoolSnapshot
from limpet.pool.pool import Pool
from limpet.proxy import (
    accept,
    builds,
    discovery,
    fdbudget,
    goaway,
    handshake,
    memory,
    rebalance,
    tls,
)
from limpet.proxy.context import ProxyContext
from limpet.proxy.upstream import UpstreamPool  # the type; builds.UpstreamPool the class
from limpet.runtime import parse_hostport

log = logging.getLogger("limpet.proxy")
#: read per request: module constants, as an Enum member read through its class costs ~0.1 µs
_PINNING = (PickReason.NEW, PickReason.REPINNED)
#: (Host, path) answers of the route table remembered at most (ProxyServer.route)
ROUTE_MEMO = 1024
_PASSIVE_OK = HealthEvent.PASSIVE_OK
#: balances that read the session counts (limpet.pool.sessions)
SESSION_BALANCES = ("least-sessions", "power-of-two-sessions")


class PoolRuntime:
    """A pool at run time: health state (core Pool), policy, upstream connections, counters."""

    def __init__(self, cfg: PoolConfig, secret: bytes, metrics: ProxyMetrics) -> None:
        self.name = cfg.name
        self.cfg = cfg
        h = cfg.health
        rules = HealthRules(
            rise=h.rise,
            fall=h.fall,
            passive_failures=h.passive_failures,
            eject_seconds=h.eject_seconds,
            max_ejection_percent=h.max_ejection_percent,
            panic_threshold=h.panic_threshold,
        )
        self.pool = Pool(
            cfg.name,
            [(b.id, b.address) for b in cfg.backends],
            rules,
            weights={b.id: b.weight for b in cfg.backends},
        )
        self.policy = build_policy(cfg.affinity, secret=secret, pool_name=cfg.name)
        #: the session of a request, for the accounting and the rebalance (one hook per mode);
        #: counted only where something reads the counts (the rest of the hot path is as it was)
        counted = (
            cfg.affinity.balancer in SESSION_BALANCES
            or cfg.rebalance.enabled
            or cfg.canary is not None
        )
        self.session_keys = for_policy(self.policy) if counted else NoKeys()
        #: canary groups: new sessions split between stable and canary by weight
        self.groups = canary_groups(cfg, self.policy)
        self.sessions = rebalance.Sessions(
            cfg.name, self.pool, cfg.rebalance, metrics, groups=self.groups
        )
        self._ledger = self.pool.sessions
        self._moving = self.sessions.moving
        #: one client context for the pool's https:// backends (built once: loading a CA is slow)
        self.backend_ssl = (
            tls.backend_context(cfg.tls_ca) if any(b.tls for b in cfg.backends) else None
        )
        self.upstreams = {
            b.id: builds.UpstreamPool(
                b.id, b.address, ssl_context=self.backend_ssl if b.tls else None
            )
            for b in cfg.backends
        }
        self.metrics = metrics
        self.passive_enabled = h.passive
        self.pins: dict[str, int] = {b.id: 0 for b in cfg.backends}
        self.open: dict[str, int] = {b.id: 0 for b in cfg.backends}
        self._open_gauges = {b.id: self.open_gauge(b.id) for b in cfg.backends}
        #: (backend id, status class) -> responses; plain ints on the hot path, read by
        #: CountsCollector at scrape time (Counter.inc takes a lock and showed in the profile)
        self.response_counts: dict[tuple[str, int], int] = {}
        self.discovery_info: dict[str, Any] | None = None  # set by limpet.proxy.discovery
        self.refresh_gauges()

    def __repr__(self) -> str:
        return f"PoolRuntime({self.name!r}, backends={list(self.upstreams)}, policy={self.policy.name!r})"

    def snapshot(self, exclude: set[str] | None = None) -> PoolSnapshot:
        snap = self.pool.snapshot()
        if exclude:
            snap = replace(
                snap,
                backends=tuple(
                    replace(b, state=BackendState.EJECTED) if b.id in exclude else b
                    for b in snap.backends
                ),
            )
        return snap

    def pick(self, facts: RequestFacts, exclude: set[str] | None = None) -> Pick:
        # (self.snapshot(None) is pool.snapshot(): read directly, a call less per request)
        snapshot = self.snapshot(exclude) if exclude else self.pool.snapshot()
        pick = self.policy.pick(facts, snapshot)
        backend = pick.backend
        if backend is None:
            return pick
        if pick.reason in _PINNING:
            return self._pinned(pick, facts)
        key = self.session_keys.key(facts, pick)
        if key is not None:
            if key in self._moving:  # moved by the rebalance: this request repins it
                pick = self.session_keys.moved(facts, pick, snapshot)
                return self._pinned(pick, facts) if pick.reason in _PINNING else pick
            self._ledger.touch(backend.id, key, facts.now)
        return pick

    def _pinned(self, pick: Pick, facts: RequestFacts) -> Pick:
        """A session placed afresh: counted as a pin, and in the ledger until its key shows."""
        assert pick.backend is not None
        bid = pick.backend.id
        # a plain int, read by CountsCollector at scrape time: under ``--affinity none`` every
        # request is a new placement, and Counter.labels().inc() cost ~1 µs of each
        self.pins[bid] = self.pins.get(bid, 0) + 1
        if self.session_keys.new(pick):
            self._ledger.placed(bid, facts.now)
        return pick

    def set_canary(self, percent: int) -> None:
        """Promote (100), roll back (0) or reweigh the canary: new sessions follow at once;
        the sessions of a group set to 0 move at the rebalance rate (limpet.pool.rebalance)."""
        if self.groups is None:
            raise ValueError(f"pool {self.name!r} has no canary group")
        if not 0 <= percent <= 100:
            raise ValueError("canary weight is a percent: 0 to 100")
        self.groups.set_weights({STABLE: 100 - percent, CANARY: percent})

    def passive(self, backend_id: str, event: HealthEvent) -> None:
        if not self.passive_enabled:
            return
        if event is _PASSIVE_OK:
            # the hot path: a success only matters when it breaks a run of failures
            # (or when it is the first sign of life of a backend never seen up)
            member = self.pool.get(backend_id)
            if member is None or (member.status.passive_fails == 0 and member.status.seen_up):
                return
        self.record(backend_id, event)

    def record(self, backend_id: str, event: HealthEvent) -> None:
        before = self.state(backend_id)
        self.pool.record(backend_id, event, time.monotonic())
        if self.state(backend_id) is not before:
            self.state_changed(backend_id)

    def set_drain(self, backend_id: str, drain: bool) -> None:
        """Operator drain: no new sessions on the backend; pinned sessions stay."""
        before = self.state(backend_id)
        if drain:
            self.pool.drain(backend_id)
        else:
            self.pool.undrain(backend_id)
        if self.state(backend_id) is not before:
            self.state_changed(backend_id)

    def state(self, backend_id: str) -> BackendState | None:
        member = self.pool.get(backend_id)  # the true state (a panic snapshot shows HEALTHY)
        return member.state if member is not None else None

    def state_changed(self, backend_id: str) -> None:
        log.warning(
            "pool %s: backend %s is now %s",
            self.name,
            backend_id,
            getattr(self.state(backend_id), "value", None),
        )
        self.refresh_gauges()

    def refresh_gauges(self) -> None:
        for b in self.pool.views():
            self.metrics.backend_healthy.labels(self.name, b.id).set(1 if b.takes_new else 0)

    def open_gauge(self, backend_id: str) -> Any:
        """The backend's open-exchanges gauge, read from ``self.open`` at scrape time (and
        its sessions gauge, from the ledger)."""
        gauge = self.metrics.backend_open.labels(self.name, backend_id)
        gauge.set_function(lambda: self.open.get(backend_id, 0))
        counts = self.pool.sessions.counts
        sessions = self.metrics.backend_sessions.labels(self.name, backend_id)
        sessions.set_function(lambda: counts.get(backend_id, 0))
        return gauge

    def join(self, backend_id: str, address: str) -> UpstreamPool | None:
        """Discovery added ``backend_id`` (or moved it to ``address``): give it an upstream
        connection pool, counters and a gauge. Returns the replaced upstream pool, if any."""
        old = self.upstreams.get(backend_id)
        self.upstreams[backend_id] = builds.UpstreamPool(backend_id, address)
        self.pins.setdefault(backend_id, 0)
        self.open.setdefault(backend_id, 0)
        self._open_gauges[backend_id] = self.open_gauge(backend_id)
        return old

    def left(self, backend_id: str) -> None:
        """Discovery removed ``backend_id``: it takes no new session from now on."""
        self.metrics.backend_healthy.labels(self.name, backend_id).set(0)

    def forget(self, backend_id: str) -> UpstreamPool | None:
        """Drop a departed backend's upstream pool and gauge (unless it came back)."""
        if backend_id in self.pool:
            return None
        self._open_gauges.pop(backend_id, None)
        return self.upstreams.pop(backend_id, None)

    def opened(self, backend_id: str, pick: Pick) -> None:
        self.pool.opened(backend_id)
        self.open[backend_id] = self.open.get(backend_id, 0) + 1

    def closed(self, backend_id: str) -> None:
        self.pool.closed(backend_id)
        self.open[backend_id] = self.open.get(backend_id, 1) - 1

    def count_response(self, backend_id: str, status: int) -> None:
        key = (backend_id, status // 100)
        counts = self.response_counts
        n = counts.get(key, 0)
        counts[key] = n + 1
        if not n:
            self.sessions.answered.add(backend_id)  # seen up, for the rebalance
        if not n and self.passive_enabled:
            # the first answer of its kind: the backend listens (even a 5xx says so), so
            # passive failures may eject it from now on (one branch, once per status class)
            self.pool.record(backend_id, HealthEvent.ANSWERED, time.monotonic())

    def _seen_up(self, backend_id: str) -> bool:
        member = self.pool.get(backend_id)
        return member is not None and member.status.seen_up

    def _overloaded(self, backend_id: str) -> bool:
        """Ejected by probes that timed out rather than being refused (limpet.pool.health)."""
        member = self.pool.get(backend_id)
        return member is not None and member.status.panic_candidate and member.status.overloaded

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "affinity": self.cfg.affinity.flag(),
            "backends": [
                {
                    "id": b.id,
                    "address": b.address,
                    "weight": b.weight,
                    "state": b.state.value,
                    "seen_up": self._seen_up(b.id),
                    "overloaded": self._overloaded(b.id),
                    "open": self.open.get(b.id, 0),
                    "sessions_pinned": self.pins.get(b.id, 0),
                    "sessions": self.pool.sessions.count(b.id),
                    **({"group": self.groups.group_of(b.id)} if self.groups else {}),
                    "idle_upstream_connections": len(getattr(self.upstreams.get(b.id), "idle", ())),
                }
                for b in self.pool.views()
            ],
            "panic": self.pool.snapshot().panic,
            "balance": self.cfg.affinity.balancer,
            "rebalance": self.sessions.status(),
            **({"canary": {"weights": dict(self.groups.weights)}} if self.groups else {}),
            **({"discovery": discovery.status(self.discovery_info)} if self.discovery_info else {}),
        }


def canary_groups(cfg: PoolConfig, policy: Any) -> GroupSplit | None:
    """The pool's ``GroupSplit`` when it has a canary group (config ``canary`` + ``group``)."""
    if cfg.canary is None:
        return None
    members = {b.id: b.group or STABLE for b in cfg.backends}
    try:
        return wrap_groups(policy, members, {STABLE: 100 - cfg.canary, CANARY: cfg.canary})
    except ValueError as exc:
        raise ConfigError(str(exc), key=f"pools.{cfg.name}.canary") from None


class CountsCollector:
    """``limpet_responses_total`` and ``limpet_pins_total``, built at scrape time from the
    pools' plain-int counts (a Counter bumped per request takes a label lookup and a lock)."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        responses = CounterMetricFamily(
            "limpet_responses",
            "Responses relayed from backends, by pool, backend and status class",
            labels=["pool", "backend", "code"],
        )
        pins = CounterMetricFamily(
            "limpet_pins",
            "Sessions pinned (new or repinned) to a backend by this process",
            labels=["pool", "backend"],
        )
        for runtime in self.server.pools.values():
            for (backend_id, cls), n in list(runtime.response_counts.items()):
                responses.add_metric([runtime.name, backend_id, f"{cls}xx"], n)
            for backend_id, n in list(runtime.pins.items()):
                pins.add_metric([runtime.name, backend_id], n)
        yield responses
        yield pins


class ProxyServer:
    """Everything one proxy process runs; built from a resolved ProxyConfig."""

    def __init__(
        self,
        config: ProxyConfig,
        secret: bytes,
        *,
        reuse_port: bool = False,
        admin: bool = True,
        start_admin: Callable[[ProxyServer, str], Awaitable[Any]] | None = None,
        run_probes: Callable[[ProxyServer, PoolRuntime], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        # the admin server and the health prober are handed in (limpet.proxy.cli does), so this
        # module imports neither and neither import cycle back to it exists
        self.start_admin = start_admin
        self.run_probes = run_probes
        self.config = config
        self.secret = secret
        self.reuse_port = reuse_port
        self.serve_admin = admin
        self.loop = asyncio.get_running_loop()
        self.metrics = ProxyMetrics()
        self.pools = {p.name: PoolRuntime(p, secret, self.metrics) for p in config.pools}
        # the declared Counters are replaced by collectors over plain ints (same metric names)
        self.metrics.registry.unregister(self.metrics.responses)
        self.metrics.registry.unregister(self.metrics.pins)
        self.metrics.registry.register(CountsCollector(self))
        #: (Host, path) -> the route's runtime, for the current route table (``routes``)
        self._route_memo: dict[tuple[str, str], PoolRuntime | None] = {}
        self.routes = [(r, self.pools[r.pool]) for r in config.routes]
        self.connections: set[Any] = set()
        self.stopping = False
        #: the open-files limit, raised to the hard one; max-connections is fitted under it
        self.nofile = fdbudget.raise_nofile()
        #: what the protocol classes see of this server (they never import it)
        self.context = ProxyContext(
            self.loop,
            self.fit_limits(config),
            config.timeouts,
            config.forwarding,
            self.metrics,
            self.route,
            self.spawn,
            self.connections,
        )
        self.listeners: list[asyncio.AbstractServer] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.admin_runner: Any = None
        #: re-reads --config for SIGHUP and POST /reload (None: started without --config)
        self.config_loader: Callable[[], ProxyConfig] | None = None

    def fit_limits(self, config: ProxyConfig) -> LimitsConfig:
        """``config.limits`` with max-connections fitted to the open-files limit (fdbudget)."""
        backends = sum(len(p.backends) for p in config.pools)
        return fdbudget.apply(config.limits, backends, self.nofile)

    @property
    def routes(self) -> list[tuple[RouteConfig, PoolRuntime]]:
        """The route table, first match wins; setting it (a reload) forgets the memo."""
        return self._routes

    @routes.setter
    def routes(self, routes: list[tuple[RouteConfig, PoolRuntime]]) -> None:
        self._routes = routes
        self._route_memo = {}

    def route(self, host: str, path: str) -> PoolRuntime | None:
        """First route whose host and path prefix match (RFC 9110 §7.2: Host without port).

        The answer depends on the route table alone, so it is remembered per (Host, path)
        until the table changes (bounded by ROUTE_MEMO: a client that sends many paths only
        refills it): a request of a known Host and path is one dict lookup.
        """
        memo = self._route_memo
        key = (host, path)
        if key in memo:
            return memo[key]
        runtime = self.match_route(host, path)
        if len(memo) >= ROUTE_MEMO:
            memo.clear()
        memo[key] = runtime
        return runtime

    def match_route(self, host: str, path: str) -> PoolRuntime | None:
        """``route`` without the memo: the route table read in order."""
        host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
        host = host.lower()
        for route, runtime in self.routes:
            if route.host is not None:
                want = route.host.lower()
                if want.startswith("*."):
                    if not host.endswith(want[1:]):
                        continue
                elif host != want:
                    continue
            if path.startswith(route.path):
                return runtime
        return None

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        from limpet.proxy import wire
        from limpet.proxy.h2.protocol import H2Downstream
        from limpet.proxy.tcp import TcpDownstream

        # which build of the wire core parses requests: said once, louder when it is the
        # fallback nobody asked for (no compiler at install time, or a stale build refused)
        asked = "LIMPET_NO_EXTENSIONS" in wire.WHY
        level = logging.WARNING if wire.CORE == "python" and not asked else logging.INFO
        log.log(level, "wire core: %s (%s)", wire.CORE, wire.WHY)
        log.log(level, "protocol code: %s (%s)", builds.CORE, builds.WHY)
        for runtime in self.pools.values():
            if self.run_probes is not None:
                self.spawn(self.run_probes(self, runtime))
        discovery.start(
            self.pools.values(), self.spawn
        )  # DNS / EndpointSlice pools follow their discovery
        self.spawn(memory.keep_trimmed())  # a burst's memory goes back to the system
        # session counts age, and over-full pools rebalance, once a second
        self.spawn(rebalance.run(lambda: self.pools.values()))
        for listener in self.config.listeners:
            host, port = parse_hostport(listener.address)
            factory: Any
            if listener.mode == "tcp":
                # the pool is looked up per connection: a reload may have replaced it
                factory = lambda lc=listener: TcpDownstream(  # noqa: E731
                    self.context, self.pools[self.config.tcp_pool(lc)]
                )
            else:
                factory = accept.choose(
                    lambda: builds.Downstream(self.context),
                    lambda: H2Downstream(self.context),
                    listener,
                    self.context,
                )
            # TLS stays out of the protocol classes: a front runs the handshake, counted and
            # bounded (timeouts.handshake), and hands the TLS transport over (proxy/handshake);
            # the chooser then reads the ALPN result (h2 or http/1.1) from that transport
            factory = handshake.wrap(factory, tls.listener_ssl(self, listener), self.context)
            factory = accept.wrap(factory, listener, self.loop)  # PROXY protocol, if any
            server = await self.loop.create_server(
                factory,
                host,
                port,
                reuse_port=self.reuse_port or None,
                backlog=2048,
                reuse_address=True,
            )
            for sock in server.sockets or ():
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.listeners.append(server)
        if self.config.admin and self.serve_admin and self.start_admin is not None:
            self.admin_runner = await self.start_admin(self, self.config.admin)
        # said once every listener and the admin are bound: a busy admin port is one error,
        # with no "listening" line before it
        for listener in self.config.listeners:
            log.info("listening on %s (%s)", listener.address, listener.scheme)

    async def stop(self) -> None:
        """Shut down in order: stop accepting, stop new sessions (``stopping`` refuses new
        connections), close what has nothing in flight, drain open exchanges and tunnels until
        the deadline (``timeouts.shutdown``, ``--drain-timeout``), then close the rest."""
        self.stopping = self.context.stopping = True
        for server in self.listeners:
            server.close()
        connections: set[goaway.Stoppable] = self.connections
        for conn in list(connections):
            conn.drain()  # idle keep-alive and half-closed downstreams close at once
        deadline = self.loop.time() + self.config.timeouts.shutdown
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(connections):
            conn.go_away()  # WebSockets get a 1001 close frame; the rest is aborted
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for runtime in self.pools.values():
            for upstream in runtime.upstreams.values():
                upstream.close_all()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()

    def status(self) -> dict[str, Any]:
        return {
            "listeners": [
                {
                    "address": lc.address,
                    "mode": lc.mode,
                    "h2": bool(lc.tls) and lc.h2,
                    "h2c": lc.h2c,
                }
                for lc in self.config.listeners
            ],
            "downstream_connections": len(self.connections),
            "max_connections": self.context.limits.max_connections,
            "open_files_limit": self.nofile,
            "pools": [runtime.status() for runtime in self.pools.values()],
        }

    def find_backend(self, backend_id: str) -> PoolRuntime | None:
        for runtime in self.pools.values():
            if backend_id in runtime.upstreams:
                return runtime
        return None
