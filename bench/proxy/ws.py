"""Benchmark: WebSocket relay through limpet proxy vs HAProxy, on the same echo backend, in one run.

Two measurements, each proxy alone on ``--proxy-cpu`` (default core 0), the echo backend and this
script's client on ``--load-cpu`` (default core 1):

- **relay**: ``--connections`` WebSockets (default 20) each send ``--window`` binary messages of
  ``--size`` bytes, read their echoes, and repeat for ``--duration`` seconds. Reported: round
  trips/s (each message crosses the proxy twice), MB/s relayed (both directions) and the proxy's
  CPU µs per round trip (utime+stime from /proc). "direct" (no proxy) shows what the client and
  backend alone can do: a proxy cannot look faster than that.
- **idle**: ``--idle`` WebSockets (default 10 000) opened through a freshly started proxy, each
  echoing one message to prove its tunnel is up, then held with no traffic (no pings). Reported:
  the proxy's resident memory (RSS of its processes, /proc/PID/statm) per connection, measured
  before and after opening them. RLIMIT_NOFILE is raised for this script and its children.

The backend is this file run as ``ws.py --serve PORT``: a ``websockets`` echo server on uvloop.
Compression (permessage-deflate) is off on both ends, so the proxies relay plain frames. Loopback
only; every process is stopped at the end, on an error and on Ctrl-C.

    LIMPET_BENCH=1 scripts/bootstrap     # haproxy (Debian) and `websockets` (pip install -e '.[bench]')
    python bench/proxy/ws.py                                   # relay 5 s, 10 000 idle
    python bench/proxy/ws.py --duration 3 --idle 2000 --only limpet,haproxy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import (  # noqa: E402
    Procs,
    cpu_seconds,
    free_port,
    limpet_argv,
    limpet_env,
    loadavg,
    raise_nofile,
    rss_bytes,
)

WS_OPTS: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": 1 << 20}


# --- the echo backend (``ws.py --serve PORT``) --------------------------------------------------


async def serve(port: int) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    async def echo(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):  # a client that vanishes ends only its handler
            async for msg in ws:
                await ws.send(msg)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ws_serve(echo, "127.0.0.1", port, backlog=4096, **WS_OPTS):
        await stop.wait()


# --- the proxies ----------------------------------------------------------------------------------


def haproxy_config(port: int, backend: int, maxconn: int) -> str:
    return f"""global
  nbthread 1
  maxconn {maxconn}
defaults
  mode http
  maxconn {maxconn}
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server b0 127.0.0.1:{backend}
"""


def start_proxy(name: str, procs: Procs, backend: int, args: argparse.Namespace) -> tuple[int, int]:
    """Start one proxy pinned to its core; return (port, pid)."""
    port = free_port()
    pin = ["taskset", "-c", args.proxy_cpu]
    if name == "haproxy":
        cfg = procs.logdir / "haproxy.cfg"
        # HAProxy wants 2 x maxconn + a few descriptors and will not start without them
        cfg.write_text(haproxy_config(port, backend, max(args.idle, args.connections) + 8))
        proc = procs.start("haproxy", [*pin, "haproxy", "-f", str(cfg), "-db"], port=port)
    else:
        cfg = procs.logdir / "limpet.yaml"
        cfg.write_text(f"limits:\n  max-connections: {max(args.idle, args.connections) + 64}\n")
        argv = limpet_argv(
            "proxy",
            "--config",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
            "--backend",
            f"b0=http://127.0.0.1:{backend}",
            "--secret",
            "bench",
            "--no-health",
            "--log-level",
            "warning",
        )
        proc = procs.start("limpet", [*pin, *argv], limpet_env(), port=port)
    return port, proc.pid


# --- the client -----------------------------------------------------------------------------------


async def relay(uri: str, args: argparse.Namespace) -> tuple[int, float]:
    """All connections pump until the deadline; return (round trips, seconds)."""
    from websockets.asyncio.client import connect

    payload = os.urandom(args.size)
    conns = [await connect(uri, **WS_OPTS) for _ in range(args.connections)]
    start = time.monotonic()
    deadline = start + args.duration

    async def pump(ws: Any) -> int:
        n = 0
        while time.monotonic() < deadline:
            for _ in range(args.window):
                await ws.send(payload)
            for _ in range(args.window):
                await ws.recv()
            n += args.window
        return n

    counts = await asyncio.gather(*(pump(ws) for ws in conns))
    elapsed = time.monotonic() - start
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return sum(counts), elapsed


async def hold(uri: str, count: int, pid: int, concurrency: int) -> dict[str, Any]:
    """Open ``count`` idle WebSockets through the proxy; its RSS before and after."""
    from websockets.asyncio.client import connect

    sem = asyncio.Semaphore(concurrency)

    async def one() -> Any:
        async with sem:
            ws = await asyncio.wait_for(connect(uri, **WS_OPTS), 30)
            await ws.send(b"up")
            await asyncio.wait_for(ws.recv(), 30)
            return ws

    # warm the proxy up (first connection's imports, buffers) before the baseline
    await (await one()).close()
    before = rss_bytes(pid)
    t0 = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    opened = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    seconds = time.monotonic() - t0
    after = rss_bytes(pid)
    for ws in opened:  # abort, not a close handshake each: the proxy is stopped right after
        ws.transport.abort()
    return {
        "opened": len(opened),
        "errors": len(errors),
        "first_error": repr(errors[0])[:120] if errors else "",
        "open_seconds": round(seconds, 1),
        "rss_before_mb": round(before / 1e6, 1),
        "rss_after_mb": round(after / 1e6, 1),
        "kb_per_connection": round((after - before) / len(opened) / 1e3, 2) if opened else None,
    }


def run(args: argparse.Namespace) -> int:
    import uvloop

    # The proxy holds two sockets per idle WebSocket (client side, backend side) plus a few of
    # its own (listener, epoll, stdio, signal pipe): 48 spare is ample for both proxies.
    want_fds = 2 * args.idle + 48
    got = raise_nofile(want_fds)
    idle_note = ""
    if got < want_fds:
        idle_note = f" (lowered from {args.idle}: RLIMIT_NOFILE is {got} and cannot be raised)"
        args.idle = max(0, (got - 48) // 2)
        print(f"--idle{idle_note}", file=sys.stderr)
    os.sched_setaffinity(0, {int(args.load_cpu)})  # the client shares the backend's core
    procs = Procs(Path(tempfile.mkdtemp(prefix="limpet-bench-ws-")))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    before = loadavg()
    t_start = time.monotonic()
    out: dict[str, dict[str, Any]] = {}
    targets = [t for t in ("direct", "limpet", "haproxy") if t in args.only.split(",")]
    try:
        backend = free_port()
        procs.start(
            "backend",
            ["taskset", "-c", args.load_cpu, sys.executable, __file__, "--serve", str(backend)],
            port=backend,
        )
        for name in targets:
            res: dict[str, Any] = {}
            out[name] = res
            try:
                if name == "direct":
                    port, pid = backend, 0
                else:
                    port, pid = start_proxy(name, procs, backend, args)
                uri = f"ws://127.0.0.1:{port}/ws"
                cpu0 = cpu_seconds(pid) if pid else 0.0
                trips, seconds = uvloop.run(relay(uri, args))
                used = cpu_seconds(pid) - cpu0 if pid else None
                res.update(
                    round_trips_per_s=trips / seconds,
                    mb_per_s=2 * trips * args.size / seconds / 1e6,
                    cpu_us_per_round_trip=1e6 * used / trips if used is not None else None,
                )
                print(
                    f"{name}: relay {res['round_trips_per_s']:,.0f} round trips/s", file=sys.stderr
                )
                if pid and args.idle:
                    procs.stop([p for p in procs.procs if p.pid == pid])  # fresh for idle
                    port, pid = start_proxy(name, procs, backend, args)
                    uri = f"ws://127.0.0.1:{port}/ws"
                    res.update(uvloop.run(hold(uri, args.idle, pid, args.concurrency)))
                    print(
                        f"{name}: idle {res['opened']} open, {res['kb_per_connection']} KB each",
                        file=sys.stderr,
                    )
                if pid:
                    procs.stop([p for p in procs.procs if p.pid == pid])
            except Exception as exc:  # one target's failure is reported, not fatal
                tail = procs.tail(name)
                res["error"] = f"{type(exc).__name__}: {exc}"[:160] + (f" ({tail})" if tail else "")
                print(f"{name}: {res['error']}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; stopping every process", file=sys.stderr)
        return 130
    finally:
        procs.close()
        shutil.rmtree(procs.logdir, ignore_errors=True)
    print(
        f"{args.connections} WebSockets x window {args.window} x {args.size} B binary messages, "
        f"{args.duration:g} s per target; idle: {args.idle} WebSockets{idle_note}; proxies alone on CPU "
        f"{args.proxy_cpu}, backend and client on CPU {args.load_cpu}; load average {before} -> "
        f"{loadavg()}; {time.monotonic() - t_start:.0f} s"
    )
    print(table(out))
    return 0


def table(out: dict[str, dict[str, Any]]) -> str:
    def f(x: Any, spec: str) -> str:
        return format(x, spec) if isinstance(x, int | float) else "-"

    base = out.get("haproxy", {})

    def ratio(r: dict[str, Any], k: str) -> str:
        a, b = r.get(k), base.get(k)
        return (
            f"{a / b:.2f}"
            if isinstance(a, int | float) and isinstance(b, int | float) and b
            else "-"
        )

    lines = [
        "| target | round trips/s | MB/s | CPU µs/round trip | idle WebSockets open | RSS before → after MB | KB per idle WebSocket | round trips ÷ HAProxy | CPU ÷ HAProxy | KB ÷ HAProxy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in out.items():
        if "error" in r and "round_trips_per_s" not in r:
            lines.append(f"| {name} | error: {r['error']} |" + " |" * 9)
            continue
        idle = f"{r['opened']:,} ({r['errors']} failed)" if "opened" in r else "-"
        rss = f"{r['rss_before_mb']} → {r['rss_after_mb']}" if "opened" in r else "-"
        lines.append(
            f"| {name} | {f(r.get('round_trips_per_s'), ',.0f')} | {f(r.get('mb_per_s'), '.1f')} "
            f"| {f(r.get('cpu_us_per_round_trip'), '.1f')} | {idle} | {rss} "
            f"| {f(r.get('kb_per_connection'), '.1f')} | {ratio(r, 'round_trips_per_s')} "
            f"| {ratio(r, 'cpu_us_per_round_trip')} | {ratio(r, 'kb_per_connection')} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=5, help="relay seconds per target")
    ap.add_argument("--connections", type=int, default=20, help="relay WebSockets")
    ap.add_argument("--window", type=int, default=16, help="messages in flight per WebSocket")
    ap.add_argument("--size", type=int, default=128, help="bytes per message")
    ap.add_argument("--idle", type=int, default=10_000, help="idle WebSockets (0: skip)")
    ap.add_argument("--concurrency", type=int, default=100, help="idle WebSockets opening at once")
    ap.add_argument("--proxy-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument("--only", default="direct,limpet,haproxy", help="direct,limpet,haproxy")
    args = ap.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve))
        return 0
    if not 0 < args.duration <= 600 or not 1 <= args.connections <= 1000:
        ap.error("--duration must be in (0, 600] and --connections in 1..1000")
    if not 0 <= args.idle <= 50_000 or not 1 <= args.size <= 1 << 19:
        ap.error("--idle must be 0..50000 and --size 1..524288")
    if not 1 <= args.window <= 1000 or not 1 <= args.concurrency <= 1000:
        ap.error("--window and --concurrency must be 1..1000")
    return run(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
