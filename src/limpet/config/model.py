"""The proxy's configuration as frozen values; the YAML file and the flags both produce these."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from limpet.affinity.spec import AffinitySpec
from limpet.pool.rebalance import RebalanceRules

ListenerMode = Literal["http", "tcp"]


def backend_id_for(address: str) -> str:
    """A stable id for a backend given without a name: the same address gives the same id
    in every proxy replica (so cookies minted by one replica are understood by the others)."""
    return "b-" + hashlib.sha256(address.encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    id: str
    address: str  # "host:port"
    weight: int = 1  # share of new sessions relative to the pool's other backends
    tls: bool = False  # an https:// (or wss://) URL: the proxy speaks TLS to it
    group: str | None = None  # "stable" or "canary" (limpet.balancing.groups); None: stable


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Active HTTP probes (HAProxy ``option httpchk``-like) and passive ejection thresholds."""

    active: bool = True
    path: str = "/"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    passive: bool = True
    passive_failures: int = 3
    eject_seconds: float = 10.0
    max_ejection_percent: int = 10  # passive failures eject at most this share (at least one)
    panic_threshold: int = 50  # below this share healthy, passively ejected ones serve again


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    connect: float = 3.0  # upstream TCP connect
    response: float = 60.0  # upstream response head; exceeded -> 504
    header: float = 10.0  # downstream request head must arrive within (slowloris)
    #: a TLS handshake must finish within (counted against max-connections meanwhile); a few
    #: round trips take well under a second, so this bounds stalled ClientHellos, not clients
    handshake: float = 5.0
    idle: float = 60.0  # downstream keep-alive idle
    tunnel_idle: float = 3600.0  # WebSocket / TCP tunnel with no bytes either way
    shutdown: float = 5.0  # graceful shutdown (drain) deadline; --drain-timeout


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_header_bytes: int = 65536
    max_headers: int = 100
    max_connections: int = 10000
    #: the admin listener's own limit (its connections come out of the fd reserve, not out of
    #: max-connections): Prometheus, probes and a few dashboards need a handful
    admin_connections: int = 64


@dataclass(frozen=True, slots=True)
class ForwardingConfig:
    """X-Forwarded-* and X-Request-Id: trusted incoming values are kept/extended, else replaced."""

    trust_forwarded: bool = False
    request_id_header: str = "X-Request-Id"
    via: str = "limpet"


DiscoveryKind = Literal["static", "dns", "kubernetes"]


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Where a pool's backends come from (limpet.proxy.discovery runs it).

    ``static``: the ``backends`` list. ``dns``: ``name`` re-resolved every ``interval`` seconds
    (``record`` A, AAAA, A+AAAA with ``port``, or SRV), optionally at ``nameserver`` HOST:PORT.
    ``kubernetes``: the EndpointSlices of ``service`` (NAMESPACE/NAME), in-cluster or ``kubeconfig``.
    """

    kind: DiscoveryKind = "static"
    name: str | None = None
    port: int | None = None
    record: str = "A+AAAA"
    interval: float = 5.0
    nameserver: str | None = None
    service: str | None = None
    kubeconfig: str | None = None
    port_name: str | None = None


@dataclass(frozen=True, slots=True)
class PoolConfig:
    name: str
    backends: tuple[BackendConfig, ...] = ()
    affinity: AffinitySpec = field(default_factory=AffinitySpec)
    health: HealthConfig = field(default_factory=HealthConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    #: PEM CA file that https:// backends' certificates are verified against (None: the
    #: system's trust store); ``tls-ca`` in the file, ``--backend-ca`` on the command line
    tls_ca: str | None = None
    #: move live sessions off over-full backends (``pools.NAME.rebalance``; ``--rebalance``)
    rebalance: RebalanceRules = field(default_factory=RebalanceRules)
    #: percent of new sessions that go to the backends of group ``canary`` (None: no groups)
    canary: int | None = None


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Requests whose Host matches ``host`` (None: any; ``*.example.com``: suffix) and whose
    path starts with ``path`` go to ``pool``. First match wins."""

    pool: str
    host: str | None = None
    path: str = "/"


#: where L4 balancers (NLB, SLB, a GCP proxy's private side, HAProxy) usually connect from
TRUSTED_BALANCERS = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


@dataclass(frozen=True, slots=True)
class TlsPair:
    """A PEM certificate chain and its private key; SNI picks among a listener's pairs."""

    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    address: str = "127.0.0.1:8080"
    mode: ListenerMode = "http"
    pool: str | None = None  # tcp listeners: the pool they serve (default: the first route's)
    tls: tuple[TlsPair, ...] = ()  # terminate TLS with these pairs (none: plaintext)
    #: read a PROXY protocol v1/v2 header from balancers in ``proxy_protocol_from``
    proxy_protocol: bool = False
    proxy_protocol_from: str = TRUSTED_BALANCERS
    send_proxy_protocol: str = ""  # tcp listeners: "v1" or "v2" header to the backend

    @property
    def scheme(self) -> str:
        """What a client speaks to it: http, https, tcp or tcp+tls (logs and banners say it)."""
        if self.mode == "http":
            return "https" if self.tls else "http"
        return "tcp+tls" if self.tls else "tcp"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    pools: tuple[PoolConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    forwarding: ForwardingConfig = field(default_factory=ForwardingConfig)
    admin: str | None = None
    secret: str | None = None
    workers: int = 1
    admin_token_file: str | None = None  # bearer token for mutating admin calls (first line)
    secret_file: str | None = None  # the affinity secret, read from a file (not argv)
    #: Host names the admin answers to besides loopback names and IP addresses (DNS rebinding)
    admin_hosts: tuple[str, ...] = ()

    def pool(self, name: str) -> PoolConfig | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None

    def tcp_pool(self, listener: ListenerConfig) -> str:
        """The pool a tcp listener serves: its own ``pool``, else the first route's."""
        if listener.pool:
            return listener.pool
        return self.routes[0].pool if self.routes else self.pools[0].name
