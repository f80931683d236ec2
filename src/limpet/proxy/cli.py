"""`limpet proxy`: flags (one-to-one onto config fields) -> ProxyConfig -> running server(s)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HEALTH_HELP = "active health checks (GET PATH every INTERVAL seconds; status < 500 is up)"


def configure(parser: argparse.ArgumentParser) -> None:
    # the defaults live in the config model (flags only override it), so each help text
    # names its default in [brackets] instead of argparse's "(default: None)"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", metavar="FILE", help="YAML config file (flags override it)")
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="address to accept clients on [127.0.0.1:8080]"
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="[NAME=]URL",
        help="a backend of the default pool (repeat); unnamed ones get an id derived from the URL;"
        " dns://NAME:PORT or dns+srv://_http._tcp.NAME follows a DNS name",
    )
    parser.add_argument(
        "--backend-ca",
        metavar="FILE",
        help="PEM CA file that https:// backends' certificates are verified against, in every"
        " pool [the system's trust store]",
    )
    parser.add_argument(
        "--affinity",
        metavar="MODE",
        help="none|cookie|client-ip|engineio|hash:header:H|hash:cookie:C|hash:query:Q [cookie]",
    )
    parser.add_argument(
        "--rebalance",
        action="store_true",
        default=None,
        help="move live sessions off over-full backends after a scale-up (WebSockets closed with"
        " 1012, polling sessions repinned), in every pool; config pools.NAME.rebalance per pool",
    )
    parser.add_argument("--cookie-name", metavar="NAME", help="affinity cookie name [limpet]")
    parser.add_argument(
        "--cookie-ttl", type=int, metavar="SECONDS", help="affinity cookie Max-Age [session]"
    )
    parser.add_argument(
        "--client-ip-timeout",
        type=int,
        metavar="SECONDS",
        help="client-ip affinity: forget a client after this much inactivity [10800]",
    )
    parser.add_argument("--admin", metavar="HOST:PORT", help="serve /metrics, /status, drain")
    parser.add_argument(
        "--admin-host",
        action="append",
        metavar="NAME",
        help="a Host name the admin answers besides IP addresses and localhost (repeat;"
        " config admin-hosts); other names get 421 (DNS rebinding)",
    )
    parser.add_argument(
        "--secret",
        help="HMAC secret for affinity tokens; replicas must share it. Prefer --secret-file or"
        " env LIMPET_SECRET: every user of the host can read a command line",
    )
    parser.add_argument(
        "--secret-file", metavar="FILE", help="read the affinity secret from FILE (first line)"
    )
    parser.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="bearer token for drain/undrain on the admin (or env LIMPET_ADMIN_TOKEN);"
        " without one the admin is read-only",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="worker processes sharing the port (SO_REUSEPORT)"
    )
    parser.add_argument("--mode", choices=["http", "tcp"], help="listener mode [http]")
    parser.add_argument(
        "--proxy-protocol",
        action="store_true",
        default=None,
        help="read a PROXY protocol v1/v2 header (the client address) from trusted balancers",
    )
    parser.add_argument(
        "--proxy-protocol-from",
        metavar="CIDR[,CIDR...]",
        help="balancers trusted to send it [loopback and private ranges]",
    )
    parser.add_argument(
        "--send-proxy-protocol",
        choices=["v1", "v2"],
        help="--mode tcp: send the client address on to backends in a PROXY header",
    )
    parser.add_argument(
        "--tls-cert",
        action="append",
        metavar="FILE",
        help="terminate TLS with this PEM certificate chain (repeat with --tls-key; SNI picks)",
    )
    parser.add_argument(
        "--tls-key", action="append", metavar="FILE", help="the private key of each --tls-cert"
    )
    parser.add_argument(
        "--h2c",
        action="store_true",
        default=None,
        help="cleartext listeners also take HTTP/2 with prior knowledge (HTTP/1.1 still served)",
    )
    parser.add_argument(
        "--no-h2",
        action="store_true",
        default=None,
        help="TLS listeners offer only http/1.1 by ALPN [h2 and http/1.1]",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, let exchanges and tunnels in flight finish within this [5]",
    )
    parser.add_argument(
        "--health", action=argparse.BooleanOptionalAction, default=None, help=HEALTH_HELP
    )
    parser.add_argument("--health-path", metavar="PATH", help="active health check path [/]")
    parser.add_argument(
        "--health-interval", type=float, metavar="SECONDS", help="active check interval [2]"
    )
    parser.add_argument(
        "--trust-forwarded",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep incoming X-Forwarded-* and X-Request-Id (only behind a trusted proxy)",
    )
    from limpet.proxy.discovery import add_flags

    add_flags(parser)  # --dns-nameserver, --dns-interval, --kubernetes-service, --kubeconfig
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="least severe log line printed (default: info)",
    )


def resolve(args: argparse.Namespace) -> Any:
    """Config file, then flags on top, then validation: a ProxyConfig or a ConfigError."""
    from dataclasses import replace

    from limpet.affinity.spec import AffinitySpec
    from limpet.config.load import finish, load_config, parse_backend_flag
    from limpet.config.model import ListenerConfig, PoolConfig, ProxyConfig
    from limpet.errors import ConfigError, UsageError
    from limpet.proxy.discovery import apply_flags
    from limpet.runtime import parse_hostport

    cfg = load_config(args.config) if args.config else ProxyConfig()
    cfg, static_backends = apply_flags(cfg, args)  # dns:// backends, --kubernetes-service
    if static_backends:
        backends = tuple(parse_backend_flag(b) for b in static_backends)
        ids = [b.id for b in backends]
        if len(set(ids)) != len(ids):
            raise UsageError("--backend: two backends with the same name or URL")
        if cfg.pools:
            cfg = replace(cfg, pools=(replace(cfg.pools[0], backends=backends), *cfg.pools[1:]))
        else:
            cfg = replace(cfg, pools=(PoolConfig(name="default", backends=backends),))
    pools = []
    for pool in cfg.pools:
        spec = pool.affinity
        if args.affinity:
            spec = AffinitySpec.from_flag(args.affinity, spec)
        if args.cookie_name:
            spec = replace(spec, cookie_name=args.cookie_name)
        if args.cookie_ttl is not None:
            spec = replace(spec, cookie_ttl=args.cookie_ttl)
        if args.client_ip_timeout is not None:
            spec = replace(spec, client_ip_timeout=args.client_ip_timeout)
        health = pool.health
        if args.health is not None:
            health = replace(health, active=args.health)
        if args.health_path:
            health = replace(health, path=args.health_path)
        if args.health_interval is not None:
            health = replace(health, interval=args.health_interval)
        tls_ca = args.backend_ca or pool.tls_ca
        pool = replace(pool, affinity=spec, health=health, tls_ca=tls_ca)
        if getattr(args, "rebalance", None):
            pool = replace(pool, rebalance=replace(pool.rebalance, enabled=True))
        pools.append(pool)
    cfg = replace(cfg, pools=tuple(pools))
    if args.listen:
        parse_hostport(args.listen)
        mode = cfg.listeners[0].mode if cfg.listeners else "http"
        cfg = replace(cfg, listeners=(ListenerConfig(address=args.listen, mode=mode),))
    if args.mode:
        cfg = replace(cfg, listeners=tuple(replace(lc, mode=args.mode) for lc in cfg.listeners))
    if args.proxy_protocol or args.proxy_protocol_from or args.send_proxy_protocol:
        cfg = replace(cfg, listeners=proxy_protocol_listeners(cfg.listeners, args))
    if args.tls_cert or args.tls_key:
        cfg = replace(cfg, listeners=tls_listeners(cfg.listeners, args.tls_cert, args.tls_key))
    if args.h2c:
        cfg = replace(cfg, listeners=tuple(replace(lc, h2c=True) for lc in cfg.listeners))
    if args.no_h2:
        cfg = replace(cfg, listeners=tuple(replace(lc, h2=False) for lc in cfg.listeners))
    if args.admin:
        parse_hostport(args.admin)
        cfg = replace(cfg, admin=args.admin)
    if args.admin_host:
        cfg = replace(cfg, admin_hosts=tuple(h.lower().rstrip(".") for h in args.admin_host))
    if args.admin_token_file:
        cfg = replace(cfg, admin_token_file=args.admin_token_file)
    if args.secret_file:
        cfg = replace(cfg, secret_file=args.secret_file)
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError("--workers must be >= 1")
        cfg = replace(cfg, workers=args.workers)
    if args.drain_timeout is not None:
        if not args.drain_timeout >= 0:
            raise UsageError("--drain-timeout must be >= 0 seconds")
        cfg = replace(cfg, timeouts=replace(cfg.timeouts, shutdown=args.drain_timeout))
    if args.trust_forwarded is not None:
        cfg = replace(cfg, forwarding=replace(cfg.forwarding, trust_forwarded=args.trust_forwarded))
    cfg = finish(cfg)
    for lc in cfg.listeners:
        if lc.proxy_protocol and lc.tls:
            # the header comes before the TLS handshake, which the listener's SSL layer owns
            raise UsageError(f"listener {lc.address}: PROXY protocol with TLS is not supported")
        if lc.send_proxy_protocol and lc.mode != "tcp":
            raise UsageError("--send-proxy-protocol applies to --mode tcp listeners")
    if all(lc.tls for lc in cfg.listeners if lc.mode == "http"):
        # every cookie is set over TLS: mark it Secure (browsers then never send it in clear)
        cfg = replace(
            cfg,
            pools=tuple(
                replace(p, affinity=replace(p.affinity, cookie_secure=True)) for p in cfg.pools
            ),
        )
    # only the pools a tcp listener serves must decide from the client address alone
    tcp_pools = {cfg.tcp_pool(lc) for lc in cfg.listeners if lc.mode == "tcp"}
    if tcp_pools:
        pools = []
        for pool in cfg.pools:
            affinity_mode = pool.affinity.mode
            if pool.name not in tcp_pools:
                pass
            elif affinity_mode == "cookie" and not args.affinity:
                # cookies need HTTP: in L4 mode the natural default is the client address
                pool = replace(pool, affinity=replace(pool.affinity, mode="client-ip"))
            elif affinity_mode not in ("none", "client-ip"):
                raise ConfigError(
                    f"tcp mode supports affinity none or client-ip, not {pool.affinity.flag()}"
                    " (give the tcp listener a pool of its own: listeners[*].pool)",
                    key=f"pools.{pool.name}.affinity.mode",
                    source=args.config or "",
                )
            pools.append(pool)
        cfg = replace(cfg, pools=tuple(pools))
    return cfg


def proxy_protocol_listeners(listeners: Any, args: argparse.Namespace) -> Any:
    """--proxy-protocol, --proxy-protocol-from, --send-proxy-protocol on every listener."""
    from dataclasses import replace

    from limpet.errors import UsageError
    from limpet.proxy.proxyproto import networks

    out = []
    for lc in listeners:
        if args.proxy_protocol:
            lc = replace(lc, proxy_protocol=True)
        if args.proxy_protocol_from:
            try:
                networks(args.proxy_protocol_from)
            except ValueError as exc:
                raise UsageError(f"--proxy-protocol-from: {exc}") from None
            lc = replace(lc, proxy_protocol_from=args.proxy_protocol_from)
        if args.send_proxy_protocol:
            lc = replace(lc, send_proxy_protocol=args.send_proxy_protocol)
        out.append(lc)
    return tuple(out)


def tls_listeners(listeners: Any, certs: list[str] | None, keys: list[str] | None) -> Any:
    """``--tls-cert``/``--tls-key`` pairs, in order, on every listener."""
    from dataclasses import replace

    from limpet.config.model import TlsPair
    from limpet.errors import UsageError

    certs, keys = certs or [], keys or []
    if len(certs) != len(keys):
        raise UsageError("give one --tls-key for each --tls-cert, in the same order")
    pairs = tuple(TlsPair(cert=c, key=k) for c, k in zip(certs, keys, strict=True))
    return tuple(replace(lc, tls=pairs) for lc in listeners)


def secret_for(args: argparse.Namespace, cfg: Any) -> bytes:
    import logging
    import secrets

    from limpet.errors import UsageError

    log = logging.getLogger("limpet.proxy")
    if args.secret:
        log.warning(
            "--secret on the command line is readable by every user of this host (ps, "
            "/proc/PID/cmdline); prefer --secret-file FILE or env LIMPET_SECRET"
        )
    text = args.secret or os.environ.get("LIMPET_SECRET")
    if not text and cfg.secret_file:
        try:
            text = Path(cfg.secret_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise UsageError(
                f"--secret-file {cfg.secret_file}: {getattr(exc, 'strerror', None) or 'empty'}"
            ) from None
    text = text or cfg.secret
    if text:
        return str(text).encode()
    log.warning(
        "no --secret / LIMPET_SECRET: using a random one; other proxy replicas (and this one "
        "after a restart) will not honour the affinity tokens it hands out"
    )
    return secrets.token_bytes(32)


async def serve(
    cfg: Any,
    secret: bytes,
    stop: Any,
    *,
    reuse_port: bool,
    admin: bool,
    worker: tuple[int, str] | None = None,
    loader: Any = None,
) -> None:
    from limpet.admin.server import start_admin
    from limpet.errors import LimpetError
    from limpet.health.probes import run_probes
    from limpet.proxy.server import ProxyServer

    # with --workers, each worker serves its admin on a Unix socket and worker 0 the front one
    server = ProxyServer(
        cfg,
        secret,
        reuse_port=reuse_port,
        admin=admin and worker is None,
        start_admin=start_admin,
        run_probes=run_probes,
    )
    admin_runners: list[Any] = []
    from limpet.proxy.reload import install_sighup

    # SIGHUP (and POST /reload) re-read --config; installed before anything listens, since
    # SIGHUP's default action ends the process: one sent as soon as the admin port answered
    # (as a deploy script or a test does) arrived before the handler and killed the proxy
    install_sighup(server, loader)
    try:
        await server.start()
        if worker is not None:
            from limpet.admin.server import start_worker_admin

            admin_runners = await start_worker_admin(
                server, cfg.admin if admin else None, worker[0], cfg.workers, worker[1]
            )
    except OSError as exc:  # bind errors: the one place listener OSErrors become user errors
        await server.stop()
        for runner in admin_runners:
            await runner.cleanup()
        raise LimpetError(f"cannot listen: {exc.strerror or exc}") from None
    for lc in cfg.listeners:
        print(
            f"limpet proxy listening on {lc.scheme}://{lc.address}/ (pid {os.getpid()})", flush=True
        )
    if cfg.admin and admin:
        print(f"limpet proxy admin on http://{cfg.admin}/status", flush=True)
    try:
        await stop.wait()
    finally:
        for runner in admin_runners:
            await runner.cleanup()
        await server.stop()


def run(args: argparse.Namespace) -> int:
    import logging

    from limpet.runtime import run_until_signal

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    cfg = resolve(args)  # a bad config stops here, before anything listens
    secret = secret_for(args, cfg)
    if cfg.admin:
        from limpet.admin.server import admin_token

        admin_token(cfg.admin_token_file)  # an unreadable token file stops here too
    from limpet.proxy import tls

    tls.check(cfg.listeners)  # and so does a certificate that does not load
    loader = (lambda: resolve(args)) if args.config else None
    if cfg.workers == 1:
        run_until_signal(
            lambda stop: serve(cfg, secret, stop, reuse_port=False, admin=True, loader=loader)
        )
        return 0
    return run_workers(cfg, secret, loader)


def run_worker(
    cfg: Any, secret: bytes, *, admin: bool, worker: tuple[int, str], loader: Any = None
) -> None:
    from limpet.runtime import run_until_signal

    run_until_signal(
        lambda stop: serve(
            cfg, secret, stop, reuse_port=True, admin=admin, worker=worker, loader=loader
        )
    )


def run_workers(cfg: Any, secret: bytes, loader: Any = None) -> int:
    """Fork N workers that share each listener via SO_REUSEPORT. Decisions are stateless given
    the secret, so every worker pins a session to the same backend. The front admin runs in
    worker 0 and asks every worker through its Unix socket in a private directory."""
    import shutil
    import signal
    import tempfile

    socket_dir = tempfile.mkdtemp(prefix="limpet-workers-")  # mode 0700: this user only
    children: list[int] = []
    for index in range(cfg.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                run_worker(cfg, secret, admin=index == 0, worker=(index, socket_dir), loader=loader)
            except BaseException as exc:  # the child must never return into the parent's code
                print(f"limpet proxy worker {index}: {exc}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reload_all(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGHUP)  # each worker re-reads the config itself
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload_all)
    worst = 0
    for pid in children:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        worst = max(worst, os.waitstatus_to_exitcode(status))
        forward(signal.SIGTERM, None)  # one worker gone: stop the others
    shutil.rmtree(socket_dir, ignore_errors=True)
    return worst
