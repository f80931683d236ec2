"""Discovery for the proxy's pools: the flags and config that ask for it, the Kubernetes affinity
read at start, and the server-owned tasks that keep each pool's members in step with DNS or
EndpointSlices (ready endpoints join, terminating ones drain, vanished ones leave).

Cheap imports at the top: ``add_flags`` runs for every ``limpet --help``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from limpet.affinity.spec import AffinitySpec
    from limpet.config.model import DiscoveryConfig, PoolConfig, ProxyConfig
    from limpet.discovery.base import Discovery, Snapshot
    from limpet.pool.pool import Pool
    from limpet.proxy.upstream import UpstreamPool


class PoolRuntime(Protocol):
    """A pool's runtime as discovery changes it: through its methods, never its fields
    (limpet.proxy.server.PoolRuntime)."""

    name: str
    cfg: PoolConfig
    pool: Pool
    upstreams: dict[str, UpstreamPool]
    discovery_info: dict[str, Any] | None

    def join(self, backend_id: str, address: str) -> UpstreamPool | None: ...
    def left(self, backend_id: str) -> None: ...
    def forget(self, backend_id: str) -> UpstreamPool | None: ...
    def refresh_gauges(self) -> None: ...


log = logging.getLogger("limpet.proxy.discovery")

#: ``--backend`` URL schemes that mean "resolve this name", and the records each asks for
DNS_SCHEMES = {"dns": "A+AAAA", "dns+a": "A", "dns+aaaa": "AAAA", "dns+srv": "SRV"}
#: how long a discovery task waits before retrying after an error it cannot ride out itself
RETRY_SECONDS = (1.0, 30.0)


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dns-nameserver",
        metavar="HOST[:PORT]",
        help="DNS server for dns:// backends [the system resolver]",
    )
    parser.add_argument(
        "--dns-interval", type=float, metavar="SECONDS", help="re-resolve dns:// backends every [5]"
    )
    parser.add_argument(
        "--kubernetes-service",
        metavar="NAMESPACE/NAME",
        help="derive affinity from this Service's settings and follow its EndpointSlices",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig for Kubernetes discovery [in-cluster, $KUBECONFIG, ~/.kube/config]",
    )


# -- resolving flags and config ---------------------------------------------------------------


def parse_dns_backend(text: str) -> DiscoveryConfig:
    """``dns://NAME:PORT`` (A+AAAA), ``dns+a://``, ``dns+aaaa://``, ``dns+srv://NAME`` (SRV)."""
    from limpet.config.model import DiscoveryConfig
    from limpet.errors import UsageError

    scheme, _, rest = text.partition("://")
    record = DNS_SCHEMES[scheme.lower()]
    rest = rest.rstrip("/")
    if record == "SRV":
        name, port = rest, None
        if not name or ":" in name or "/" in name:
            raise UsageError(f"--backend {text!r}: expected dns+srv://_SERVICE._PROTO.NAME")
    else:
        name, sep, port_text = rest.rpartition(":")
        if not sep or not name or "/" in name or not port_text.isdigit():
            raise UsageError(f"--backend {text!r}: expected {scheme}://NAME:PORT")
        port = int(port_text)
        if not 0 < port < 65536:
            raise UsageError(f"--backend {text!r}: port out of range")
    return DiscoveryConfig(kind="dns", name=name, port=port, record=record)


def is_dns_backend(text: str) -> bool:
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in DNS_SCHEMES


def apply_flags(cfg: ProxyConfig, args: argparse.Namespace) -> tuple[ProxyConfig, list[str]]:
    """Apply the discovery flags to the config; return it and the static ``--backend`` values
    left for the caller. The affinity a Kubernetes Service configures is read here, before
    anything listens, so a bad reference or an unreachable API stops the proxy at once."""
    from limpet.config.discovery import parse_nameserver
    from limpet.config.model import DiscoveryConfig, PoolConfig
    from limpet.discovery.kubernetes import parse_service_ref
    from limpet.errors import UsageError

    flags = list(getattr(args, "backend", None) or [])
    dns = [b for b in flags if is_dns_backend(b)]
    static = [b for b in flags if not is_dns_backend(b)]
    service = getattr(args, "kubernetes_service", None)
    first: DiscoveryConfig | None = None
    if dns:
        if len(dns) > 1 or static:
            raise UsageError("--backend dns://...: give one DNS name and no other --backend")
        first = parse_dns_backend(dns[0])
        if service:
            raise UsageError("--backend dns://... and --kubernetes-service: choose one")
    elif service:
        parse_service_ref(service)  # a bad reference is an error even when --backend wins
        if not static:
            first = DiscoveryConfig(kind="kubernetes", service=service)
        else:
            log.warning("--backend given: the pool's members come from the flags, not from "
                        "the EndpointSlices of %s", service)  # fmt: skip
    if static and cfg.pools and cfg.pools[0].discovery.kind != "static":
        cfg = replace(
            cfg, pools=(replace(cfg.pools[0], discovery=DiscoveryConfig()), *cfg.pools[1:])
        )
    if first is None and service and not cfg.pools:
        first = DiscoveryConfig()  # the flags' static pool, whose affinity the Service gives
    if first is not None:
        if cfg.pools:
            head = replace(cfg.pools[0], backends=(), discovery=first)
            cfg = replace(cfg, pools=(head, *cfg.pools[1:]))
        else:
            cfg = replace(cfg, pools=(PoolConfig(name="default", discovery=first),))
    nameserver = getattr(args, "dns_nameserver", None)
    interval = getattr(args, "dns_interval", None)
    kubeconfig = getattr(args, "kubeconfig", None)
    if nameserver:
        parse_nameserver(nameserver)
    if interval is not None and interval <= 0:
        raise UsageError("--dns-interval must be positive")
    pools = []
    for pool in cfg.pools:
        d = pool.discovery
        if d.kind == "dns":
            d = replace(d, nameserver=nameserver or d.nameserver)
            d = replace(d, interval=interval if interval is not None else d.interval)
        elif d.kind == "kubernetes" and kubeconfig:
            d = replace(d, kubeconfig=kubeconfig)
        pools.append(replace(pool, discovery=d))
    cfg = replace(cfg, pools=tuple(pools))
    # the Services whose affinity to derive: every kubernetes pool, and --kubernetes-service
    pools = []
    for index, pool in enumerate(cfg.pools):
        ref = pool.discovery.service if pool.discovery.kind == "kubernetes" else None
        if index == 0 and service:
            ref = service
        if ref is not None:
            derived = derive_service_affinity(ref, pool.discovery.kubeconfig or kubeconfig)
            pool = replace(pool, affinity=merge_affinity(derived, pool.affinity, pool.name))
        pools.append(pool)
    return replace(cfg, pools=tuple(pools)), static


def merge_affinity(derived: AffinitySpec, configured: AffinitySpec, pool: str) -> AffinitySpec:
    """The derived rule with every key the config set (to a non-default value) on top."""
    from limpet.affinity.spec import AffinitySpec

    default = AffinitySpec()
    explicit = {
        f.name: getattr(configured, f.name)
        for f in fields(AffinitySpec)
        if getattr(configured, f.name) != getattr(default, f.name)
    }
    if explicit:
        log.info("pool %s: config keys override the derived affinity: %s",
                 pool, ", ".join(k.replace("_", "-") for k in sorted(explicit)))  # fmt: skip
    return replace(derived, **explicit)


def derive_service_affinity(ref: str, kubeconfig: str | None) -> AffinitySpec:
    """Read Service ``ref`` and what configures it (BackendConfig, Ingress, Traefik) once, with
    a private event loop (the proxy's loop does not exist yet), and log the derivation."""
    import asyncio

    from limpet.discovery.kubernetes import parse_service_ref, read_service_affinity
    from limpet.errors import DiscoveryError

    namespace, name = parse_service_ref(ref)

    async def read() -> tuple[AffinitySpec, list[str]]:
        return await asyncio.wait_for(
            read_service_affinity(namespace, name, kubeconfig=kubeconfig), 30
        )

    try:
        spec, notes = asyncio.run(read())
    except DiscoveryError:
        raise
    except TimeoutError:
        raise DiscoveryError(f"reading Service {ref}: the Kubernetes API did not answer") from None
    except Exception as exc:  # aiohttp/OS errors: an unreachable API is a user-facing error
        raise DiscoveryError(
            f"reading Service {ref}: Kubernetes API unreachable ({type(exc).__name__}: {exc})"
        ) from None
    for note in notes:
        log.info("%s", note)
    log.info("Service %s: derived affinity %s", ref, describe(spec))
    return spec


def describe(spec: AffinitySpec) -> str:
    if spec.mode == "cookie":
        ttl = f" ttl={spec.cookie_ttl}" if spec.cookie_ttl else ""
        return f"cookie name={spec.cookie_name}{ttl} mode={spec.cookie_mode}"
    if spec.mode == "client-ip":
        return f"client-ip timeout={spec.client_ip_timeout}"
    return spec.flag()


# -- running -------------------------------------------------------------------------------------


def source_of(d: DiscoveryConfig) -> str:
    if d.kind == "dns":
        where = f" @{d.nameserver}" if d.nameserver else ""
        port = f":{d.port}" if d.port is not None else ""
        return f"dns {d.record} {d.name}{port} every {d.interval:g}s{where}"
    return f"kubernetes EndpointSlices of {d.service}"


def build_discovery(d: DiscoveryConfig) -> Discovery:
    from typing import cast

    from limpet.config.discovery import parse_nameserver
    from limpet.discovery.base import Discovery
    from limpet.discovery.dns import DnsDiscovery, Record
    from limpet.discovery.kubernetes import EndpointSliceDiscovery, parse_service_ref

    if d.kind == "dns":
        assert d.name is not None
        kwargs: dict[str, Any] = {}
        if d.nameserver:
            host, port = parse_nameserver(d.nameserver)
            kwargs = {"nameservers": [host], "nameserver_port": port}
        return DnsDiscovery(
            d.name, d.port, record=cast(Record, d.record), interval=d.interval, **kwargs
        )
    assert d.service is not None
    namespace, name = parse_service_ref(d.service)
    return cast(
        Discovery,
        EndpointSliceDiscovery(namespace, name, port_name=d.port_name, kubeconfig=d.kubeconfig),
    )


def start(pools: Iterable[PoolRuntime], spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    """Start one discovery task per non-static pool, owned (and cancelled) by the server
    (``spawn`` is its task spawner)."""
    for runtime in pools:
        d = runtime.cfg.discovery
        if d.kind != "static":
            runtime.discovery_info = {"source": source_of(d), "updates": 0, "endpoints": []}
            spawn(follow(runtime, d))


async def follow(runtime: PoolRuntime, d: DiscoveryConfig) -> None:
    """Feed the pool from its discovery until cancelled; errors are logged and retried."""
    import asyncio
    import time

    from limpet.discovery.base import feed_pool

    delay = RETRY_SECONDS[0]
    info = runtime.discovery_info
    assert info is not None
    log.info("pool %s: backends from %s", runtime.name, info["source"])
    while True:
        try:
            await feed_pool(build_discovery(d), runtime.pool, on_change=lambda s: apply(runtime, s))
            return  # pragma: no cover - discoveries run until cancelled
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a DiscoveryError or anything unexpected: keep the last pool
            info["error"] = f"{type(exc).__name__}: {exc}"
            info["error_at"] = time.time()
            log.error("pool %s: discovery from %s failed: %s; retrying in %.0fs",
                      runtime.name, info["source"], exc, delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_SECONDS[1])


def apply(runtime: PoolRuntime, endpoints: Snapshot) -> None:
    """After ``Pool.set_members``: upstream connection pools, counters and logs follow."""
    import asyncio
    import time

    pool = runtime.pool
    info = runtime.discovery_info
    for backend in pool.backends():
        upstream = runtime.upstreams.get(backend.id)
        if upstream is None or upstream.address != backend.address:
            replaced = runtime.join(backend.id, backend.address)
            if replaced is not None:
                retire(replaced)
            log.warning("pool %s: backend %s (%s) joined%s", runtime.name, backend.id,
                        backend.address, " draining" if backend.terminating else "")  # fmt: skip
    gone = [bid for bid in runtime.upstreams if bid not in pool]
    for bid in gone:
        log.warning("pool %s: backend %s left; its sessions repin", runtime.name, bid)
        runtime.left(bid)
        # forget it on the next loop turn: a connect already scheduled for it still finds it
        asyncio.get_running_loop().call_soon(forget, runtime, bid)
    for backend in pool.backends():
        was = info.get("terminating", set()) if info is not None else set()
        if backend.terminating and backend.id not in was:
            log.warning("pool %s: backend %s is terminating; draining it", runtime.name, backend.id)
    runtime.refresh_gauges()
    if info is not None:
        info["updates"] += 1
        info["updated_at"] = time.time()
        info["endpoints"] = [
            {"id": e.id, "address": e.address, "ready": e.ready, "terminating": e.terminating}
            for e in endpoints
        ]
        info["terminating"] = {b.id for b in pool.backends() if b.terminating}
        info.pop("error", None)
    if not pool.snapshot().eligible():
        log.warning("pool %s: no backend can take new sessions (503 until one appears)",
                    runtime.name)  # fmt: skip


def forget(runtime: PoolRuntime, backend_id: str) -> None:
    upstream = runtime.forget(backend_id)  # None when it came back
    if upstream is not None:
        retire(upstream)


def retire(upstream: Any) -> None:
    """Close a departed backend's idle connections; busy ones close when their exchange ends."""
    upstream.max_idle = 0
    upstream.close_all()


def status(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON-safe discovery part of a pool's /status."""
    if info is None:
        return None
    return {k: sorted(v) if isinstance(v, set) else v for k, v in info.items()}
