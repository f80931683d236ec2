"""YAML -> ProxyConfig, validated on load; every error names the key path and the line.

PyYAML's ``compose`` keeps each node's position (``start_mark``), so the loader walks nodes
rather than plain dicts: a wrong value is reported where the user wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from limpet.affinity.spec import AffinitySpec
from limpet.config.model import (
    BackendConfig,
    ForwardingConfig,
    HealthConfig,
    LimitsConfig,
    ListenerConfig,
    PoolConfig,
    ProxyConfig,
    RouteConfig,
    TimeoutsConfig,
    TlsPair,
    backend_id_for,
)
from limpet.config.nodes import Ctx, mapping, typed
from limpet.errors import ConfigError, UsageError
from limpet.pool.rebalance import RebalanceRules

T = TypeVar("T")


def _section(ctx: Ctx, node: yaml.Node, key: str, cls: type[T], **extra: Any) -> T:
    """Fill a flat dataclass from a mapping: each field typed from its default's type."""
    items = mapping(ctx, node, key)
    known = {f.name.replace("_", "-"): f for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = dict(extra)
    defaults = cls(**extra)
    for name, (knode, vnode) in items.items():
        f = known.get(name) or known.get(name.replace("_", "-"))
        if f is None:
            raise ctx.error(
                f"unknown key {name!r} (expected one of {', '.join(sorted(known))})",
                f"{key}.{name}",
                knode,
            )
        default = getattr(defaults, f.name)
        kind = type(default) if default is not None else str
        value = typed(ctx, vnode, f"{key}.{name}", kind, optional=default is None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ctx.error("must not be negative", f"{key}.{name}", vnode)
        values[f.name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ctx.error(str(exc), key, node) from None


def _address(ctx: Ctx, text: str, key: str, node: yaml.Node) -> str:
    """Accept ``host:port`` or ``http://host:port``; return ``host:port``."""
    try:
        return normalize_address(text)
    except UsageError as exc:
        raise ctx.error(str(exc), key, node) from None


#: backend URL schemes that mean "speak TLS to it" (the rest are plain)
TLS_SCHEMES = ("https", "wss")


def is_tls_url(text: str) -> bool:
    """Whether a backend URL asks for TLS to the backend (``https://``, ``wss://``)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in TLS_SCHEMES


def normalize_address(text: str) -> str:
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "ws", "tcp", *TLS_SCHEMES) or not parts.hostname:
            raise UsageError(
                f"backend URL {text!r}: expected http://HOST:PORT or https://HOST:PORT"
            )
        port = parts.port or (443 if parts.scheme in TLS_SCHEMES else 80)
        host = parts.hostname
    else:
        from limpet.runtime import parse_hostport

        host, port = parse_hostport(text, default_port=80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_backend_flag(text: str) -> BackendConfig:
    """``[NAME=]URL`` from ``--backend``; an unnamed backend gets an id derived from its URL."""
    name, sep, url = text.partition("=")
    if not sep or "/" in name or ":" in name:
        name, url = "", text
    address = normalize_address(url)
    return BackendConfig(id=name or backend_id_for(address), address=address, tls=is_tls_url(url))


def _affinity(ctx: Ctx, node: yaml.Node, key: str) -> AffinitySpec:
    items = mapping(ctx, node, key)
    spec = AffinitySpec()
    mode_node = items.get("mode")
    if mode_node is not None:
        text = typed(ctx, mode_node[1], f"{key}.mode", str)
        try:
            spec = AffinitySpec.from_flag(text, spec)
        except UsageError as exc:
            raise ctx.error(str(exc), f"{key}.mode", mode_node[1]) from None
    known = {f.name: f for f in fields(AffinitySpec)}
    for name, (knode, vnode) in items.items():
        if name == "mode":
            continue
        fname = name.replace("-", "_")
        if fname not in known:
            raise ctx.error(
                f"unknown key {name!r} (expected mode or one of "
                f"{', '.join(sorted(n.replace('_', '-') for n in known if n != 'mode'))})",
                f"{key}.{name}",
                knode,
            )
        default = getattr(AffinitySpec(), fname)
        kind = type(default) if default is not None else (int if fname == "cookie_ttl" else str)
        value = typed(ctx, vnode, f"{key}.{name}", kind, optional=True)
        spec = replace(spec, **{fname: value})
    if spec.mode == "hash" and not (spec.hash_source and spec.hash_key):
        raise ctx.error("hash affinity needs hash-source and hash-key", key, node)
    if spec.hash_source not in (None, "header", "cookie", "query"):
        raise ctx.error("hash-source must be header, cookie or query", key, node)
    if spec.cookie_mode not in ("persistent", "balanced"):
        raise ctx.error("cookie-mode must be persistent or balanced", key, node)
    if spec.cookie_samesite not in (None, "Lax", "Strict", "None"):
        raise ctx.error("cookie-samesite must be Lax, Strict or None", key, node)
    return spec


def _rebalance(ctx: Ctx, node: yaml.Node, key: str) -> RebalanceRules:
    """``rebalance: on`` (or off), or a mapping: enabled, bound, hold, rate, max-moving, ..."""
    if isinstance(node, yaml.ScalarNode):
        return RebalanceRules(enabled=typed(ctx, node, key, bool))
    return _section(ctx, node, key, RebalanceRules, enabled=True)


def _pool(ctx: Ctx, name: str, node: yaml.Node, key: str) -> PoolConfig:
    items = mapping(ctx, node, key)
    pool = PoolConfig(name=name)
    for k, (knode, vnode) in items.items():
        sub = f"{key}.{k}"
        if k == "backends":
            if not isinstance(vnode, yaml.SequenceNode) or not vnode.value:
                raise ctx.error("expected a non-empty list of backends", sub, vnode)
            backends: list[BackendConfig] = []
            for i, bnode in enumerate(vnode.value):
                bkey = f"{sub}[{i}]"
                if isinstance(bnode, yaml.ScalarNode):
                    text = typed(ctx, bnode, bkey, str)
                    address = _address(ctx, text, bkey, bnode)
                    backends.append(
                        BackendConfig(backend_id_for(address), address, tls=is_tls_url(text))
                    )
                    continue
                b = mapping(ctx, bnode, bkey)
                if "url" not in b and "address" not in b:
                    raise ctx.error("a backend needs url (or address)", bkey, bnode)
                unknown = set(b) - {"url", "address", "id", "name", "weight", "group"}
                if unknown:
                    u = sorted(unknown)[0]
                    raise ctx.error(f"unknown key {u!r}", f"{bkey}.{u}", b[u][0])
                anode = (b.get("url") or b["address"])[1]
                url = typed(ctx, anode, f"{bkey}.url", str)
                address = _address(ctx, url, bkey, anode)
                idnode = b.get("id") or b.get("name")
                bid = typed(ctx, idnode[1], f"{bkey}.id", str) if idnode else ""
                weight = typed(ctx, b["weight"][1], f"{bkey}.weight", int) if "weight" in b else 1
                if not 1 <= weight <= 1000:
                    raise ctx.error("weight must be 1 to 1000", f"{bkey}.weight", b["weight"][1])
                group = typed(ctx, b["group"][1], f"{bkey}.group", str) if "group" in b else None
                if group not in (None, "stable", "canary"):
                    raise ctx.error(
                        "group must be stable or canary", f"{bkey}.group", b["group"][1]
                    )
                backends.append(
                    BackendConfig(
                        bid or backend_id_for(address), address, weight, is_tls_url(url), group
                    )
                )
            seen: set[str] = set()
            for i, (backend, bnode) in enumerate(zip(backends, vnode.value, strict=True)):
                if backend.id in seen:
                    raise ctx.error(f"duplicate backend id {backend.id!r}", f"{sub}[{i}]", bnode)
                seen.add(backend.id)
            pool = replace(pool, backends=tuple(backends))
        elif k == "affinity":
            pool = replace(pool, affinity=_affinity(ctx, vnode, sub))
        elif k == "health":
            pool = replace(pool, health=_section(ctx, vnode, sub, HealthConfig))
        elif k == "discovery":
            from limpet.config.discovery import parse_discovery

            pool = replace(pool, discovery=parse_discovery(ctx, vnode, sub))
        elif k == "tls-ca":
            pool = replace(pool, tls_ca=typed(ctx, vnode, sub, str))
        elif k == "rebalance":
            pool = replace(pool, rebalance=_rebalance(ctx, vnode, sub))
        elif k == "canary":
            percent = typed(ctx, vnode, sub, int)
            if not 0 <= percent <= 100:
                raise ctx.error("canary is a percent of new sessions: 0 to 100", sub, vnode)
            pool = replace(pool, canary=percent)
        else:
            raise ctx.error(
                f"unknown key {k!r} (expected backends, affinity, health, discovery, tls-ca, "
                "rebalance, canary)",
                sub,
                knode,
            )
    has_canary = any(b.group == "canary" for b in pool.backends)
    if has_canary and pool.canary is None:
        raise ctx.error("backends in group canary need the pool's canary: PERCENT", key, node)
    if pool.canary is not None and not has_canary:
        raise ctx.error("canary: PERCENT needs backends with group: canary", key, node)
    if pool.canary is not None and pool.affinity.mode not in ("none", "cookie", "engineio"):
        raise ctx.error(
            "canary groups split new sessions of affinity none, cookie or engineio "
            f"(not {pool.affinity.flag()}, whose keys pick the backend)",
            key,
            node,
        )
    if pool.backends and pool.discovery.kind != "static":
        raise ctx.error("a pool takes backends or a discovery, not both", key, node)
    if pool.health.rise < 1 or pool.health.fall < 1 or pool.health.passive_failures < 1:
        raise ctx.error("rise, fall and passive-failures must be >= 1", f"{key}.health", node)
    for name in ("max_ejection_percent", "panic_threshold"):
        if getattr(pool.health, name) > 100:
            raise ctx.error(
                "a percentage: 0 to 100", f"{key}.health.{name.replace('_', '-')}", node
            )
    return pool


def _tls(ctx: Ctx, node: yaml.Node, key: str) -> tuple[TlsPair, ...]:
    """``tls: {cert, key}`` or a list of such pairs (SNI picks among them)."""
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not nodes:
        raise ctx.error("expected {cert: FILE, key: FILE} or a list of them", key, node)
    pairs = []
    for i, pnode in enumerate(nodes):
        pkey = f"{key}[{i}]" if isinstance(node, yaml.SequenceNode) else key
        items = mapping(ctx, pnode, pkey)
        unknown = sorted(set(items) - {"cert", "key"})
        if unknown:
            raise ctx.error(f"unknown key {unknown[0]!r} (expected cert, key)", pkey, pnode)
        if "cert" not in items or "key" not in items:
            raise ctx.error("a TLS pair needs cert and key (PEM files)", pkey, pnode)
        cert = typed(ctx, items["cert"][1], f"{pkey}.cert", str)
        keyfile = typed(ctx, items["key"][1], f"{pkey}.key", str)
        pairs.append(TlsPair(cert=cert, key=keyfile))
    return tuple(pairs)


def _check_proxy_protocol(ctx: Ctx, listener: ListenerConfig, key: str, node: yaml.Node) -> None:
    from limpet.proxy.proxyproto import networks

    try:
        networks(listener.proxy_protocol_from)
    except ValueError as exc:
        raise ctx.error(str(exc), f"{key}.proxy-protocol-from", node) from None
    if listener.send_proxy_protocol not in ("", "v1", "v2"):
        raise ctx.error("send-proxy-protocol must be v1 or v2", f"{key}.send-proxy-protocol", node)
    if listener.send_proxy_protocol and listener.mode != "tcp":
        raise ctx.error(
            "send-proxy-protocol applies to tcp listeners (http ones send X-Forwarded-For)",
            f"{key}.send-proxy-protocol",
            node,
        )


def _listeners(ctx: Ctx, node: yaml.Node, key: str) -> tuple[ListenerConfig, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise ctx.error("expected a non-empty list of listeners", key, node)
    out: list[ListenerConfig] = []
    for i, lnode in enumerate(node.value):
        lkey = f"{key}[{i}]"
        if isinstance(lnode, yaml.ScalarNode):
            lnode_map = None
            address = typed(ctx, lnode, lkey, str)
            listener = ListenerConfig(address=address)
        else:
            lnode_map = lnode
            items = mapping(ctx, lnode, lkey)
            tls: tuple[TlsPair, ...] = ()
            if "tls" in items:
                tls = _tls(ctx, items["tls"][1], f"{lkey}.tls")
                lnode = yaml.MappingNode(
                    lnode.tag, [(k, v) for k, v in lnode.value if k.value != "tls"]
                )
            listener = replace(_section(ctx, lnode, lkey, ListenerConfig), tls=tls)
        if listener.mode not in ("http", "tcp"):
            raise ctx.error("mode must be http or tcp", f"{lkey}.mode", lnode_map or lnode)
        _check_proxy_protocol(ctx, listener, lkey, lnode_map or lnode)
        try:
            from limpet.runtime import parse_hostport

            parse_hostport(listener.address)
        except UsageError as exc:
            raise ctx.error(str(exc), f"{lkey}.address", lnode) from None
        out.append(listener)
    return tuple(out)


def parse_config(text: str, source: str = "<config>") -> ProxyConfig:
    """Parse and validate a YAML config document."""
    ctx = Ctx(source)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {problem}", source=source, line=line) from None
    if root is None:
        return ProxyConfig()
    items = mapping(ctx, root, "")
    cfg = ProxyConfig()
    route_nodes: list[tuple[str, yaml.Node]] = []
    for k, (knode, vnode) in items.items():
        if k == "listeners":
            cfg = replace(cfg, listeners=_listeners(ctx, vnode, k))
        elif k == "pools":
            pools = mapping(ctx, vnode, k)
            cfg = replace(
                cfg,
                pools=tuple(_pool(ctx, n, v, f"pools.{n}") for n, (_, v) in pools.items()),
            )
        elif k == "routes":
            if not isinstance(vnode, yaml.SequenceNode):
                raise ctx.error("expected a list of routes", k, vnode)
            routes = []
            for i, rnode in enumerate(vnode.value):
                rkey = f"routes[{i}]"
                route = _section(ctx, rnode, rkey, RouteConfig, pool="")
                if not route.pool:
                    raise ctx.error("a route needs a pool", rkey, rnode)
                if not route.path.startswith("/"):
                    raise ctx.error("path must start with /", f"{rkey}.path", rnode)
                routes.append(route)
                route_nodes.append((rkey, rnode))
            cfg = replace(cfg, routes=tuple(routes))
        elif k == "timeouts":
            cfg = replace(cfg, timeouts=_section(ctx, vnode, k, TimeoutsConfig))
        elif k == "limits":
            cfg = replace(cfg, limits=_section(ctx, vnode, k, LimitsConfig))
        elif k == "forwarding":
            cfg = replace(cfg, forwarding=_section(ctx, vnode, k, ForwardingConfig))
        elif k in ("admin", "secret", "admin-token-file", "secret-file"):
            field_name = k.replace("-", "_")
            cfg = replace(cfg, **{field_name: typed(ctx, vnode, k, str, optional=True)})
        elif k == "workers":
            workers = typed(ctx, vnode, k, int)
            if workers < 1:
                raise ctx.error("must be >= 1", k, vnode)
            cfg = replace(cfg, workers=workers)
        else:
            raise ctx.error(
                f"unknown key {k!r} (expected listeners, pools, routes, timeouts, limits, "
                "forwarding, admin, admin-token-file, secret, secret-file, workers)",
                k,
                knode,
            )
    names = {p.name for p in cfg.pools}
    for (rkey, rnode), route in zip(route_nodes, cfg.routes, strict=True):
        if route.pool not in names:
            raise ctx.error(f"unknown pool {route.pool!r}", f"{rkey}.pool", rnode)
    if "listeners" in items:
        lnodes = items["listeners"][1].value
        for i, (listener, lnode) in enumerate(zip(cfg.listeners, lnodes, strict=True)):
            if listener.pool is None:
                continue
            if listener.mode != "tcp":
                raise ctx.error(
                    "pool applies to tcp listeners (http ones follow the routes)",
                    f"listeners[{i}].pool",
                    lnode,
                )
            if listener.pool not in names:
                raise ctx.error(f"unknown pool {listener.pool!r}", f"listeners[{i}].pool", lnode)
    return cfg


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a config file; ConfigError (with file and line) when it is wrong."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
    return parse_config(text, str(p))


def finish(cfg: ProxyConfig, check: Callable[[str], None] | None = None) -> ProxyConfig:
    """Fill the defaults that depend on the whole config: a catch-all route to the only pool."""
    if not cfg.pools:
        raise ConfigError("no backends: give --backend URL or a pools: section", key="pools")
    for p in cfg.pools:
        if not p.backends and p.discovery.kind == "static":
            raise ConfigError("pool has no backends", key=f"pools.{p.name}.backends")
    if not cfg.routes:
        cfg = replace(cfg, routes=(RouteConfig(pool=cfg.pools[0].name),))
    return cfg
