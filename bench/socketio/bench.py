"""socket.io through `limpet proxy --affinity engineio` vs. directly to one backend.

Measures, with raw Engine.IO v4 long-polling from an aiohttp client (so the client costs little
and is the same for both targets):

- handshakes/s: ``GET /socket.io/?EIO=4&transport=polling`` answered with the open packet (the
  proxy rewrites its sid into a signed token);
- polling round trips/s: on an open socket.io session, ``POST`` an "echo" event and ``GET`` its
  ack (the proxy verifies the token and restores the backend's sid on both).

The ratio proxy/direct is the proxy's overhead; a second proxy with ``--affinity none`` in front
of the same backend, in the same run, separates the cost of proxying from the cost of the sid
rewriting: "engineio ÷ none" is the figure to watch (target: round trips within 10 %). For each
proxy it also reports its CPU µs per handshake and per round trip (utime+stime of the proxy
process from /proc over the measurement, divided by the count). All run on one machine: on few
cores the proxy also takes CPU from the backend and the client.
Run from the checkout:

    PYTHONPATH=src .venv/bin/python bench/socketio/bench.py [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import cpu_seconds, free_port, limpet_argv, limpet_env, wait_port  # noqa: E402


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        limpet_argv(*args),
        env=limpet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def handshakes(base: str, seconds: float, concurrency: int) -> float:
    url = f"{base}/socket.io/?EIO=4&transport=polling"
    count = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal count
        while time.monotonic() < deadline:
            async with session.get(url) as resp:
                body = await resp.read()
                assert resp.status == 200 and body.startswith(b"0{"), body[:80]
            count += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start_at = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return count / (time.monotonic() - start_at)


async def round_trips(base: str, seconds: float, concurrency: int) -> float:
    count = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal count
        async with session.get(f"{base}/socket.io/?EIO=4&transport=polling") as resp:
            sid = json.loads((await resp.read())[1:].split(b"\x1e")[0])["sid"]
        url = f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with session.post(url, data=b"40") as resp:
            assert resp.status == 200
        # the namespace connect answer and the "whoami" event
        seen = b""
        while b'42["whoami"' not in seen:
            async with session.get(url) as resp:
                seen += await resp.read()
        i = 0
        while time.monotonic() < deadline:
            async with session.post(url, data=f'42{i}["echo",{i}]'.encode()) as resp:
                assert resp.status == 200
            async with session.get(url) as resp:
                body = await resp.read()
                assert body.startswith(f"43{i}[".encode()), body[:80]
            count += 1
            i += 1
        async with session.post(url, data=b"1") as resp:  # close the session
            await resp.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start_at = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return count / (time.monotonic() - start_at)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    backend_port, engineio_port, none_port = free_port(), free_port(), free_port()
    backend = f"bench=http://127.0.0.1:{backend_port}"
    common = ["--secret", "bench", "--no-health", "--backend", backend]
    procs = [
        start("whoami", "--listen", f"127.0.0.1:{backend_port}", "--name", "bench"),
        start("proxy", "--listen", f"127.0.0.1:{engineio_port}", "--affinity", "engineio", *common),
        start("proxy", "--listen", f"127.0.0.1:{none_port}", "--affinity", "none", *common),
    ]
    targets = (("direct", backend_port), ("proxy", engineio_port), ("proxy-none", none_port))
    try:
        for (_, port), proc in zip(targets, procs, strict=True):
            wait_port(port, proc)
        results: dict[str, dict[str, float]] = {}
        for (target, port), proc in zip(targets, procs, strict=True):
            base = f"http://127.0.0.1:{port}"
            res = results[target] = {}
            for key, run in (("handshakes", handshakes), ("round_trips", round_trips)):
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                rate = asyncio.run(run(base, args.seconds, args.concurrency))
                used, elapsed = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
                res[f"{key}_per_s"] = rate
                # CPU of the process serving this target (for "direct": the backend itself)
                res[f"cpu_us_per_{key.rstrip('s')}"] = 1e6 * used / (rate * elapsed) if rate else 0
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"socket.io polling, {args.concurrency} concurrent clients, {args.seconds:g} s each")
    print(
        f"{'':16}{'direct':>9}{'engineio':>10}{'ratio':>7}{'none':>9}{'ratio':>7}"
        f"{'engineio ÷ none':>17}"
    )
    for key, label in (
        ("handshakes_per_s", "handshakes/s"),
        ("round_trips_per_s", "round trips/s"),
    ):
        direct, eio, none = (results[t][key] for t in ("direct", "proxy", "proxy-none"))
        print(
            f"{label:16}{direct:9.0f}{eio:10.0f}{eio / direct:7.2f}{none:9.0f}{none / direct:7.2f}"
            f"{eio / none:17.2f}"
        )
    print("proxy CPU µs per handshake / round trip (backend's own for direct):")
    for t, label in (("direct", "direct"), ("proxy", "engineio"), ("proxy-none", "none")):
        r = results[t]
        print(f"  {label:10}{r['cpu_us_per_handshake']:8.1f} /{r['cpu_us_per_round_trip']:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
