"""`limpet hub`: flags -> settings; the server and brokers are imported only when run."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to serve on")
    parser.add_argument(
        "--broker",
        default="memory",
        help="backplane: memory, redis://HOST:PORT[/DB], "
        "redis+cluster://HOST:PORT[,HOST:PORT...] (Redis Cluster), "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME (Redis Sentinel) or "
        "nats://HOST:PORT[,HOST:PORT...] (one NATS server or a cluster)",
    )
    parser.add_argument(
        "--nats-replicas",
        type=int,
        default=None,
        metavar="N",
        help="copies JetStream keeps of the history (default: 3 on a NATS cluster of 3 servers "
        "or more, else 1)",
    )
    parser.add_argument(
        "--broker-ca",
        default=None,
        metavar="FILE",
        help="CA certificates (PEM) to verify a TLS broker with (rediss://, rediss+cluster://, "
        "rediss+sentinel://, tls://) instead of the system's",
    )
    parser.add_argument("--name", default=None, help="replica name (default: the host name)")
    parser.add_argument("--history-size", type=int, default=1000, help="messages kept per channel")
    parser.add_argument(
        "--history-ttl", type=float, default=300.0, help="seconds a message is kept for recovery"
    )
    parser.add_argument(
        "--history-rule",
        action="append",
        default=[],
        metavar="PREFIX=SIZE[:TTL]",
        help="history size/ttl for channels starting with PREFIX (repeatable)",
    )
    parser.add_argument(
        "--idempotency-ttl",
        type=float,
        default=60.0,
        help="seconds an idempotency_key is remembered",
    )
    parser.add_argument(
        "--presence-ttl",
        type=float,
        default=15.0,
        help="seconds before a silent client leaves presence",
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        default=2.0,
        help="seconds between broker PINGs; a live subscriber silent for 2x this is replaced",
    )
    parser.add_argument(
        "--max-payload", type=int, default=64 * 1024, help="largest message data, in JSON bytes"
    )
    parser.add_argument(
        "--max-depth",
        type=int,
        default=32,
        help="deepest nesting of lists/objects in message data, at publish and when read "
        "from the broker (1..256)",
    )
    parser.add_argument(
        "--max-message",
        type=int,
        default=16 << 20,
        help="largest socket.io message read (bytes); larger ones close the connection",
    )
    parser.add_argument(
        "--max-unfinished",
        type=int,
        default=64 << 20,
        metavar="BYTES",
        help="bytes held in unfinished WebSocket messages across all connections; a connection "
        "whose unfinished message would pass it is closed with 1013 (0: no limit)",
    )
    parser.add_argument(
        "--broker-pool",
        type=int,
        default=32,
        help="connections to the broker per replica; more requests wait for one",
    )
    parser.add_argument(
        "--broker-pool-wait",
        type=float,
        default=10.0,
        help="seconds a request waits for a broker connection before it fails (an error ack)",
    )
    parser.add_argument(
        "--check-interval",
        type=float,
        default=5.0,
        help="seconds between checks of each channel's position (0: off)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=1000,
        help="packets waiting for one client before it is disconnected as too slow",
    )
    parser.add_argument(
        "--max-handshakes",
        type=int,
        default=1000,
        metavar="N",
        help="connections in their handshake at once (until socket.io-connected); more are "
        "refused at once: 503 + Retry-After on polling, close 1013 on a WebSocket (0: no limit)",
    )
    parser.add_argument(
        "--admission-hold",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="longest a handshake holds its place when no socket.io connect follows it",
    )
    parser.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time a new connection has to send its first request head; then 408 and closed",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=50_000,
        metavar="N",
        help="allocations between young-generation collections (Python's default 700; 0: leave "
        "the collector as it is); start-up objects are frozen (docs/hub.md, 'Library internals')",
    )
    parser.add_argument(
        "--ws-compression",
        action="store_true",
        help="allow per-message deflate on websockets (off: less CPU per delivery)",
    )
    parser.add_argument(
        "--jwt-secret",
        default=os.environ.get("LIMPET_HUB_JWT_SECRET"),
        help="require HS256 JWTs signed with this secret (env LIMPET_HUB_JWT_SECRET)",
    )
    parser.add_argument(
        "--jwt-require-exp",
        action="store_true",
        help="refuse JWTs without an exp claim (otherwise such a token never expires)",
    )
    parser.add_argument(
        "--cors-origin", action="append", default=None, help="allowed origin (default: any)"
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file of hooks, limits and namespaces (docs/hub.md); flags override it",
    )
    hooks = parser.add_argument_group("hooks (the application decides; docs/hub.md)")
    hooks.add_argument(
        "--hook-url",
        default=None,
        metavar="URL",
        help="POST URL/connect, URL/subscribe, URL/publish and URL/rpc (JSON) to the application",
    )
    hooks.add_argument(
        "--hook-secret",
        default=os.environ.get("LIMPET_HUB_HOOK_SECRET"),
        help="sign every hook and event request with HMAC-SHA256 (env LIMPET_HUB_HOOK_SECRET)",
    )
    hooks.add_argument(
        "--hook-secret-file", default=None, metavar="FILE", help="read --hook-secret from FILE"
    )
    hooks.add_argument(
        "--hook-fail-open",
        action="store_true",
        default=None,
        help="allow when the application is unreachable or answers wrongly (default: refuse)",
    )
    hooks.add_argument(
        "--hook-timeout", type=float, default=None, help="seconds a hook call may take (default 2)"
    )
    hooks.add_argument(
        "--hook-concurrency",
        type=int,
        default=None,
        help="hook calls in flight per application (default 64); 1024 more may wait",
    )
    hooks.add_argument(
        "--hook-header",
        action="append",
        default=None,
        metavar="NAME",
        help="handshake header passed to the hooks (repeatable; default: cookie, authorization, "
        "user-agent, origin, x-forwarded-for)",
    )
    events = parser.add_argument_group("channel events (docs/hub.md)")
    events.add_argument(
        "--events-url",
        default=None,
        metavar="URL",
        help="POST occupied/vacated/join/leave/publish events here, at least once, in order; "
        "queued in the broker; signed with --hook-secret",
    )
    events.add_argument(
        "--events-queue",
        type=int,
        default=None,
        metavar="N",
        help="undelivered events the broker keeps at most (default 100000); past it new ones "
        "are dropped, counted in /healthz and logged",
    )
    events.add_argument(
        "--events-lease",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds the delivering replica's lease lasts: another replica takes over this long "
        "after it dies (default 5; a delivery may take half of it)",
    )
    limits = parser.add_argument_group("per-client limits (defaults every namespace overrides)")
    limits.add_argument(
        "--channels-per-client",
        type=int,
        default=None,
        help="channels one client may be subscribed to (default 128; 0: no limit)",
    )
    limits.add_argument(
        "--subscribes-per-second",
        type=float,
        default=None,
        metavar="RATE",
        help="subscribes per second per client, bursts of 2x (default 50; 0: no limit)",
    )
    limits.add_argument(
        "--publishes-per-second",
        type=float,
        default=None,
        metavar="RATE",
        help="publishes per second per client, bursts of 2x (default 1000; 0: no limit)",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from limpet.errors import UsageError
    from limpet.hub.brokers import open_broker, parse_broker_url
    from limpet.hub.brokers.base import BrokerOptions
    from limpet.hub.channels import HistoryPolicy, HistoryRules
    from limpet.hub.server import Hub, serve
    from limpet.hub.settings import HubSettings
    from limpet.runtime import parse_hostport, run_until_signal

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    host, port = parse_hostport(args.listen)
    if (
        min(
            args.max_payload,
            args.presence_ttl,
            args.idempotency_ttl,
            args.health_interval,
            args.max_queue,
            args.max_depth,
            args.max_message,
            args.broker_pool,
            args.broker_pool_wait,
        )
        <= 0
        or args.check_interval < 0
        or args.max_handshakes < 0
        or args.max_unfinished < 0
        or args.admission_hold <= 0
        or args.head_timeout <= 0
        or args.gc_threshold < 0
    ):
        raise UsageError(
            "--max-payload, --presence-ttl, --idempotency-ttl, --health-interval, --max-queue, "
            "--max-depth, --max-message, --broker-pool, --broker-pool-wait, --admission-hold and --head-timeout must be > 0, "
            "--check-interval, --max-handshakes, --max-unfinished and --gc-threshold >= 0"
        )
    from limpet.hub.channels.payload import MAX_DEPTH_LIMIT

    if args.max_depth > MAX_DEPTH_LIMIT:
        raise UsageError(f"--max-depth must be at most {MAX_DEPTH_LIMIT} (docs/hub.md#limits)")
    if args.nats_replicas is not None and not 1 <= args.nats_replicas <= 5:
        raise UsageError("--nats-replicas must be 1..5 (JetStream's limit)")
    if args.broker_ca is not None:
        if not parse_broker_url(args.broker).tls:
            raise UsageError(
                "--broker-ca is for a TLS broker URL (rediss://, rediss+cluster://, "
                f"rediss+sentinel://, tls://), not {args.broker.split('://', 1)[0]}://"
            )
        try:
            with open(args.broker_ca, "rb") as ca:
                if b"-----BEGIN CERTIFICATE-----" not in ca.read():
                    raise UsageError(f"--broker-ca {args.broker_ca}: no PEM certificate in it")
        except OSError as exc:
            raise UsageError(f"--broker-ca {args.broker_ca}: {exc.strerror}") from None
    flag_rules = HistoryRules.parse(
        HistoryPolicy(args.history_size, args.history_ttl), args.history_rule
    )
    policy, secret = build_policy(args, flag_rules.default)
    rules = policy.namespaces.history_rules(flag_rules.by_prefix)
    options = BrokerOptions(
        history=rules,
        idempotency_ttl=args.idempotency_ttl,
        presence_ttl=args.presence_ttl,
        health_interval=args.health_interval,
        pool_size=args.broker_pool,
        pool_wait=args.broker_pool_wait,
        tls_ca=args.broker_ca,
        max_depth=args.max_depth,
        max_payload=args.max_payload,
    )
    broker = open_broker(args.broker, options, nats_replicas=args.nats_replicas)
    settings = HubSettings(
        name=args.name or os.environ.get("HOSTNAME") or socket.gethostname(),
        max_payload=args.max_payload,
        history_limit=max(1, max([args.history_size, *[p.size for _, p in rules.by_prefix]])),
        presence_ttl=args.presence_ttl,
        jwt_secret=args.jwt_secret or None,
        cors_origins=args.cors_origin or "*",
        max_queue=args.max_queue,
        ws_compression=args.ws_compression,
        max_depth=args.max_depth,
        max_message=args.max_message,
        max_unfinished=args.max_unfinished,
        jwt_require_exp=args.jwt_require_exp,
        check_interval=args.check_interval,
        max_handshakes=args.max_handshakes,
        admission_hold=args.admission_hold,
        head_timeout=args.head_timeout,
    )
    events = build_events(args, broker, secret, settings.name)
    from limpet.hub import heap

    heap.tune(args.gc_threshold)  # start-up is over: freeze it (limpet/hub/heap.py)
    run_until_signal(lambda stop: serve(Hub(broker, settings, policy, events), host, port, stop))
    return 0


def build_events(args: argparse.Namespace, broker: Any, secret: bytes | None, name: str) -> Any:
    """--events-url -> the hub's Notifier (None: no channel events)."""
    if not args.events_url:
        return None
    from limpet.errors import BrokerError, UsageError
    from limpet.hub.notifier import Notifier, NotifierOptions

    if not args.events_url.startswith(("http://", "https://")):
        raise UsageError(
            f"--events-url must start with http:// or https://, got {args.events_url!r}"
        )
    limit = 100_000 if args.events_queue is None else args.events_queue
    if limit < 1 or args.events_lease <= 0:
        raise UsageError("--events-queue must be >= 1 and --events-lease > 0")
    try:
        queue = broker.event_queue()
    except BrokerError as exc:
        raise UsageError(f"--events-url: {exc}") from None
    lease = args.events_lease
    options = NotifierOptions(limit=limit, lease=lease, timeout=min(2.0, lease / 2))
    return Notifier(queue, args.events_url, secret, name, options)


def build_policy(args: argparse.Namespace, history: Any) -> tuple[Any, bytes | None]:
    """--config and the hook/limit flags -> the hub's Policy (flags win over the file), and
    the secret hook and event requests are signed with."""
    from dataclasses import replace

    from limpet.errors import UsageError
    from limpet.hub.caller import CallerOptions, HookCaller
    from limpet.hub.config import HubConfig, build_namespaces, load_hub_config
    from limpet.hub.policy import DEFAULT_HEADERS, Policy

    cfg = load_hub_config(args.config) if args.config else HubConfig()
    hooks = cfg.hooks
    url = args.hook_url or hooks.url
    fail_open = hooks.fail_open if args.hook_fail_open is None else True
    timeout = args.hook_timeout if args.hook_timeout is not None else hooks.timeout
    concurrency = args.hook_concurrency if args.hook_concurrency is not None else hooks.concurrency
    if timeout <= 0 or concurrency < 1:
        raise UsageError("--hook-timeout must be > 0 and --hook-concurrency >= 1")
    secret_file = args.hook_secret_file or hooks.secret_file
    secret: str | None = args.hook_secret or None
    if secret_file is not None:
        try:
            with open(secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--hook-secret-file {secret_file}: {exc}") from None
        if not secret:
            raise UsageError(f"--hook-secret-file {secret_file}: the file is empty")
    overrides = {
        "channels_per_client": args.channels_per_client,
        "subscribes_per_second": args.subscribes_per_second,
        "publishes_per_second": args.publishes_per_second,
    }
    try:
        limits = replace(cfg.limits, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    namespaces = build_namespaces(cfg, history, limits, url, fail_open)
    urls = {ns.hooks.url for ns in (namespaces.default, *namespaces.by_prefix) if ns.hooks.url}
    for each in urls:
        if not each.startswith(("http://", "https://")):
            raise UsageError(f"hook URL must start with http:// or https://, got {each!r}")
    options = CallerOptions(timeout=timeout, concurrency=concurrency, queue=hooks.queue)
    key = secret.encode() if secret else None
    callers = {each: HookCaller(each, key, options) for each in urls}
    policy = Policy(
        namespaces,
        connect=callers.get(url) if url else None,
        connect_fail_open=fail_open,
        callers=callers,
        forward_headers=args.hook_header or DEFAULT_HEADERS,
    )
    return policy, key
