"""`limpet hub`: flags -> settings; the server and brokers are imported only when run."""

from __future__ import annotations

import argparse
import os
import socket


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
    ):
        raise UsageError(
            "--max-payload, --presence-ttl, --idempotency-ttl, --health-interval, --max-queue, "
            "--max-depth, --max-message, --broker-pool and --broker-pool-wait must be > 0, --check-interval >= 0"
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
    rules = HistoryRules.parse(
        HistoryPolicy(args.history_size, args.history_ttl), args.history_rule
    )
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
        jwt_require_exp=args.jwt_require_exp,
        check_interval=args.check_interval,
    )
    run_until_signal(lambda stop: serve(Hub(broker, settings), host, port, stop))
    return 0
