"""Every metric the proxy exports, declared in one place (names use the DESIGN.md vocabulary)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ProxyMetrics:
    """The proxy's metrics on their own registry (one per process; no import-time globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.downstream_connections = Gauge(
            "limpet_downstream_connections", "Open client connections", registry=r
        )
        self.tunnels_open = Gauge(
            "limpet_tunnels_open", "Open upgraded (WebSocket) or TCP tunnels", registry=r
        )
        self.responses = Counter(
            "limpet_responses",
            "Responses relayed from backends, by pool, backend and status class",
            ["pool", "backend", "code"],
            registry=r,
        )
        self.local_responses = Counter(
            "limpet_local_responses",
            "Responses the proxy answered itself (400, 431, 502, 503, 504...)",
            ["code"],
            registry=r,
        )
        self.upstream_connect_failures = Counter(
            "limpet_upstream_connect_failures",
            "Failed connections to a backend",
            ["pool", "backend"],
            registry=r,
        )
        self.repins = Counter(
            "limpet_repins",
            "Requests moved to another backend after a failure",
            ["pool"],
            registry=r,
        )
        self.pins = Counter(
            "limpet_pins",
            "Sessions pinned (new or repinned) to a backend by this process",
            ["pool", "backend"],
            registry=r,
        )
        self.backend_open = Gauge(
            "limpet_backend_open_connections",
            "Exchanges/tunnels open on a backend",
            ["pool", "backend"],
            registry=r,
        )
        self.backend_sessions = Gauge(
            "limpet_backend_sessions",
            "Sessions on a backend: open tunnels, sessions active within the window, new ones"
            " placed there (limpet.pool.sessions)",
            ["pool", "backend"],
            registry=r,
        )
        self.rebalance_moves = Counter(
            "limpet_rebalance_moves",
            "Live sessions moved off over-full backends, by reason: spread (automatic), admin",
            ["pool", "reason"],
            registry=r,
        )
        self.backend_healthy = Gauge(
            "limpet_backend_healthy",
            "1 when the backend takes new sessions, else 0",
            ["pool", "backend"],
            registry=r,
        )
        self.config_reloads = Counter(
            "limpet_config_reloads",
            "Config reloads (SIGHUP, POST /reload) by result: ok, or error (the old config stays)",
            ["result"],
            registry=r,
        )
        self.probes = Counter(
            "limpet_health_probes",
            "Active health probes by result",
            ["pool", "backend", "result"],
            registry=r,
        )
