"""The proxy's CPU per Engine.IO polling request, `--affinity engineio` vs `--affinity none`,
without sockets.

The real ``Downstream``, ``Exchange`` and ``UpstreamConnection`` of ``limpet proxy``, fed the
bytes the loop would feed them through in-memory transports (as tests/unit/proxy does): one
polling ``GET`` with a session's sid and its backend's ``200``, over and over on one keep-alive
connection. Reported: process CPU µs per request for each mode, and the difference, which is what
the engineio filter costs (sid extraction, token check, pinning, the rewritten target). No
network and no other process take part, so on a shared machine this is steadier than
``bench.py``'s round trips (which it complements, not replaces). Rounds alternate the two modes.

    PYTHONPATH=src .venv/bin/python bench/socketio/path.py [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from limpet.proxy import cli  # noqa: E402
from limpet.proxy.http1 import Downstream  # noqa: E402
from limpet.proxy.server import ProxyServer  # noqa: E402
from limpet.proxy.upstream import UpstreamConnection  # noqa: E402

OPEN = (
    b'0{"sid":"AbCdEfGhIjKlMnOpQrSt","upgrades":["websocket"],"pingInterval":25000,'
    b'"pingTimeout":20000,"maxPayload":1000000}'
)
HANDSHAKE = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 2\r\n\r\nok"
)


class Transport:
    """What the protocol classes use of a transport; what they write is dropped."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, key: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if key == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def per_request(affinity: str, requests: int) -> float:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    argv = ["--backend", "b0=http://127.0.0.1:9", "--secret", "s", "--no-health"]
    args = parser.parse_args([*argv, "--affinity", affinity, "--log-level", "warning"])
    server = ProxyServer(cli.resolve(args), b"s", admin=False)
    pool = server.pools["default"].upstreams["b0"]
    down, client = Downstream(server.context), Transport()
    down.connection_made(client)  # type: ignore[arg-type]
    conn, backend = UpstreamConnection(pool), Transport()
    conn.connection_made(backend)  # type: ignore[arg-type]
    pool.put(conn)
    # the session's handshake: its sid (a signed token with engineio) goes into every request
    down.data_received(HANDSHAKE)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(OPEN), OPEN)
    )
    sid = json.loads(b"".join(client.out).split(b"\r\n\r\n", 1)[1][1:])["sid"]
    request = (
        b"GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n"
        b"Accept: */*\r\nUser-Agent: bench\r\n\r\n" % sid.encode()
    )

    def one() -> None:
        down.data_received(request)
        backend.out.clear()
        conn.data_received(ANSWER)
        client.out.clear()

    for _ in range(requests // 10):  # warm up
        one()
    t0 = time.process_time()
    for _ in range(requests):
        one()
    return (time.process_time() - t0) / requests * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, list[float]] = {"engineio": [], "none": []}
    for _ in range(args.rounds):
        for affinity in results:
            results[affinity].append(asyncio.run(per_request(affinity, args.requests)))
    core = "python" if os.environ.get("LIMPET_NO_EXTENSIONS") == "1" else "default"
    print(f"{args.requests} polling requests x {args.rounds} rounds, wire core: {core}")
    for affinity, values in results.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {affinity:9} CPU µs/request: best {min(values):5.1f}  (rounds: {shown})")
    best = {k: min(v) for k, v in results.items()}
    print(
        f"  engineio - none: {best['engineio'] - best['none']:.1f} µs/request; "
        f"engineio ÷ none: {best['engineio'] / best['none']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
