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
from limpet.config.nodes import Ctx, compose_document, mapping, sequence, typed
from limpet.errors import ConfigError, UsageError
from limpet.pool.rebalance import RebalanceRules

T = TypeVar("T")


def _section(ctx: Ctx, node: yaml.Node, key: str, cls: type[T], **extra: Any) -> T:
    """Fill a flat dataclass from a mapping: each field typed from its default's type."""
    items = mapping(ctx, node, key)
    known = {f.name.replace("_", "-"): f for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = dict(extra)
    defaults = cls(**extra)
    mark = ctx.mark()
    for name, (knode, vnode) in items.items():
        with ctx.gather():
            values.update(_field(ctx, known, defaults, name, knode, vnode, key))
    ctx.raise_since(mark)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ctx.error(str(exc), key, node) from None


def _field(
    ctx: Ctx,
    known: dict[str, Any],
    defaults: Any,
    name: str,
    knode: yaml.Node,
    vnode: yaml.Node,
    key: str,
) -> dict[str, Any]:
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
    return {f.name: value}


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
    if not valid_host(host):
        # ``http//127.0.0.1:9001`` (a missing colon) reads as host ``http//127.0.0.1``: it
        # would be probed, shown and picked, and every request would get a 503
        raise UsageError(
            f"backend URL {text!r}: {host!r} is not a host name or IP address"
            " (expected http://HOST:PORT, https://HOST:PORT or HOST:PORT)"
        )
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def valid_host(host: str) -> bool:
    """An IP address, or a DNS name of letters, digits, ``-``, ``_`` and dots (RFC 1123, with
    the underscore that SRV-style and Kubernetes-made names carry)."""
    import ipaddress
    import re

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    label = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
    return re.fullmatch(rf"(?=.{{1,253}}$){label}(\.{label})*\.?", host) is not None


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
            spec = AffinitySpec.from_flag(text, spec, label="mode")
        except UsageError as exc:
            raise ctx.error(str(exc), f"{key}.mode", mode_node[1]) from None
    known = {f.name: f for f in fields(AffinitySpec)}
    mark = ctx.mark()
    for name, (knode, vnode) in items.items():
        if name == "mode":
            continue
        with ctx.gather():
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
    ctx.raise_since(mark)
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
    mark = ctx.mark()
    for k, (knode, vnode) in items.items():
        with ctx.gather():
            pool = _pool_key(ctx, pool, k, knode, vnode, f"{key}.{k}")
    ctx.raise_since(mark)
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
    for hname in ("max_ejection_percent", "panic_threshold"):
        if getattr(pool.health, hname) > 100:
            raise ctx.error(
                "a percentage: 0 to 100", f"{key}.health.{hname.replace('_', '-')}", node
            )
    return pool


def _pool_key(
    ctx: Ctx, pool: PoolConfig, k: str, knode: yaml.Node, vnode: yaml.Node, sub: str
) -> PoolConfig:
    """One key of a pool's mapping read onto ``pool``."""
    if k == "backends":
        return replace(pool, backends=_backends(ctx, vnode, sub))
    if k == "affinity":
        return replace(pool, affinity=_affinity(ctx, vnode, sub))
    if k == "health":
        return replace(pool, health=_section(ctx, vnode, sub, HealthConfig))
    if k == "discovery":
        from limpet.config.discovery import parse_discovery

        return replace(pool, discovery=parse_discovery(ctx, vnode, sub))
    if k == "tls-ca":
        return replace(pool, tls_ca=typed(ctx, vnode, sub, str))
    if k == "rebalance":
        return replace(pool, rebalance=_rebalance(ctx, vnode, sub))
    if k == "canary":
        percent = typed(ctx, vnode, sub, int)
        if not 0 <= percent <= 100:
            raise ctx.error("canary is a percent of new sessions: 0 to 100", sub, vnode)
        return replace(pool, canary=percent)
    raise ctx.error(
        f"unknown key {k!r} (expected backends, affinity, health, discovery, tls-ca, "
        "rebalance, canary)",
        sub,
        knode,
    )


def _backends(ctx: Ctx, vnode: yaml.Node, sub: str) -> tuple[BackendConfig, ...]:
    backends = sequence(ctx, vnode, sub, "backends", lambda n, k: _backend(ctx, n, k))
    mark = ctx.mark()
    seen: set[str] = set()
    for i, (backend, bnode) in enumerate(zip(backends, vnode.value, strict=True)):
        with ctx.gather():
            if backend.id in seen:
                raise ctx.error(f"duplicate backend id {backend.id!r}", f"{sub}[{i}]", bnode)
        seen.add(backend.id)
    ctx.raise_since(mark)
    return tuple(backends)


def _backend(ctx: Ctx, bnode: yaml.Node, bkey: str) -> BackendConfig:
    if isinstance(bnode, yaml.ScalarNode):
        text = typed(ctx, bnode, bkey, str)
        address = _address(ctx, text, bkey, bnode)
        return BackendConfig(backend_id_for(address), address, tls=is_tls_url(text))
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
        raise ctx.error("group must be stable or canary", f"{bkey}.group", b["group"][1])
    return BackendConfig(bid or backend_id_for(address), address, weight, is_tls_url(url), group)


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
    return tuple(sequence(ctx, node, key, "listeners", lambda n, k: _listener(ctx, n, k)))


def _listener(ctx: Ctx, lnode: yaml.Node, lkey: str) -> ListenerConfig:
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
    return listener


TOP_KEYS = (
    "listeners, pools, routes, timeouts, limits, forwarding, admin, admin-token-file, "
    "admin-hosts, secret, secret-file, workers"
)


def _top_key(ctx: Ctx, cfg: ProxyConfig, k: str, knode: yaml.Node, vnode: yaml.Node) -> ProxyConfig:
    """One top-level key of the document read onto ``cfg``."""
    if k == "listeners":
        return replace(cfg, listeners=_listeners(ctx, vnode, k))
    if k == "pools":
        pools = mapping(ctx, vnode, k)
        out: list[PoolConfig] = []
        mark = ctx.mark()
        for n, (_, v) in pools.items():
            with ctx.gather():
                out.append(_pool(ctx, n, v, f"pools.{n}"))
        ctx.raise_since(mark)
        return replace(cfg, pools=tuple(out))
    if k == "routes":
        if not isinstance(vnode, yaml.SequenceNode):
            raise ctx.error("expected a list of routes", k, vnode)
        routes = []
        mark = ctx.mark()
        for i, rnode in enumerate(vnode.value):
            with ctx.gather():
                routes.append(_route(ctx, rnode, f"routes[{i}]"))
        ctx.raise_since(mark)
        return replace(cfg, routes=tuple(routes))
    if k == "timeouts":
        return replace(cfg, timeouts=_section(ctx, vnode, k, TimeoutsConfig))
    if k == "limits":
        return replace(cfg, limits=_section(ctx, vnode, k, LimitsConfig))
    if k == "forwarding":
        return replace(cfg, forwarding=_section(ctx, vnode, k, ForwardingConfig))
    if k in ("admin", "secret", "admin-token-file", "secret-file"):
        return replace(cfg, **{k.replace("-", "_"): typed(ctx, vnode, k, str, optional=True)})
    if k == "admin-hosts":
        return replace(cfg, admin_hosts=_names(ctx, vnode, k))
    if k == "workers":
        workers = typed(ctx, vnode, k, int)
        if workers < 1:
            raise ctx.error("must be >= 1", k, vnode)
        return replace(cfg, workers=workers)
    raise ctx.error(f"unknown key {k!r} (expected {TOP_KEYS})", k, knode)


def _names(ctx: Ctx, node: yaml.Node, key: str) -> tuple[str, ...]:
    """A list of host names (``admin-hosts``)."""
    if not isinstance(node, yaml.SequenceNode):
        raise ctx.error("expected a list of host names", key, node)
    return tuple(typed(ctx, n, f"{key}[{i}]", str).lower() for i, n in enumerate(node.value))


def _route(ctx: Ctx, rnode: yaml.Node, rkey: str) -> RouteConfig:
    route = _section(ctx, rnode, rkey, RouteConfig, pool="")
    if not route.pool:
        raise ctx.error("a route needs a pool", rkey, rnode)
    if not route.path.startswith("/"):
        raise ctx.error("path must start with /", f"{rkey}.path", rnode)
    return route


def parse_config(text: str, source: str = "<config>") -> ProxyConfig:
    """Parse and validate a YAML config document; a ConfigError lists every error found."""
    ctx = Ctx(source)
    root = compose_document(text, source)
    if root is None:
        return ProxyConfig()
    items = mapping(ctx, root, "")
    cfg = ProxyConfig()
    for k, (knode, vnode) in items.items():
        with ctx.gather():
            cfg = _top_key(ctx, cfg, k, knode, vnode)
    # the cross-checks name pools, so they run only on a file whose sections all read
    ctx.raise_since(0)
    names = {p.name for p in cfg.pools}
    if "routes" in items:
        for i, (route, rnode) in enumerate(zip(cfg.routes, items["routes"][1].value, strict=True)):
            with ctx.gather():
                if route.pool not in names:
                    raise ctx.error(f"unknown pool {route.pool!r}", f"routes[{i}].pool", rnode)
    if "listeners" in items:
        lnodes = items["listeners"][1].value
        for i, (listener, lnode) in enumerate(zip(cfg.listeners, lnodes, strict=True)):
            with ctx.gather():
                _check_listener_pool(ctx, listener, names, f"listeners[{i}].pool", lnode)
    ctx.raise_since(0)
    return cfg


def _check_listener_pool(
    ctx: Ctx, listener: ListenerConfig, names: set[str], key: str, lnode: yaml.Node
) -> None:
    if listener.pool is None:
        return
    if listener.mode != "tcp":
        raise ctx.error("pool applies to tcp listeners (http ones follow the routes)", key, lnode)
    if listener.pool not in names:
        raise ctx.error(f"unknown pool {listener.pool!r}", key, lnode)


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a config file; ConfigError (with file and line) when it is wrong."""
    p = Path(path)
    return parse_config(read_whole(p), str(p))


def read_whole(p: Path) -> str:
    """The text of a config file that nobody is writing: a file caught half-written is refused
    rather than applied, even when its first half happens to be valid YAML.

    - Atomic replacement (write a new file, ``rename`` it over the old one; a ConfigMap volume
      swaps its ``..data`` symlink the same way) never shows a half file: nothing to detect.
    - A file written in place is detected while its writer still holds it open (``writers``).
    - A file whose inode, size or mtime changed between the start and the end of the read was
      being rewritten meanwhile (by any means): refused too.
    """
    import os

    def refuse(message: str) -> ConfigError:
        return ConfigError(message + "; not applied", source=str(p))

    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
    try:
        if writers(fd):
            raise refuse("the file is open for writing by another process (still being written?)")
        before = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        data = b"".join(chunks)
        after = os.stat(p)
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
    finally:
        os.close(fd)
    stamp = (before.st_ino, before.st_size, before.st_mtime_ns)
    if stamp != (after.st_ino, after.st_size, after.st_mtime_ns) or len(data) != before.st_size:
        raise refuse("the file changed while it was read (being rewritten?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"not UTF-8 text (byte {exc.start})") from None


def writers(fd: int) -> bool:
    """Whether another process has the file open for writing (False when it cannot be told).

    Linux grants a read lease (``F_SETLEASE``) only on a file nobody has open for writing
    (fcntl(2)); the lease is taken and given back at once. Leases need the file's owner or
    CAP_LEASE (EACCES otherwise) and a file system that has them (EINVAL): then nothing is known.
    A writer opening the file while the lease is held would break it with SIGIO, whose default
    action ends the process: SIGIO is ignored for those two calls (only the main thread may
    change a signal's disposition, so elsewhere the check is skipped).
    """
    import errno
    import fcntl
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        if previous is not None:  # None: set outside Python, and cannot be put back from here
            signal.signal(signal.SIGIO, previous)


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
