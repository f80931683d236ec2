"""What one subscribed WebSocket connection holds in a hub replica, by library: a hub (memory
broker) in this process, N raw socket.io clients (aiohttp, in a process of their own) connected over
websocket and subscribed to one channel, and tracemalloc's difference between before and after, grouped by
package. RSS per connection of a whole replica is connect_storm.py's column; this says where it is.

    python bench/hub/conn_memory.py [--clients 500] [--lines 30]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))
sys.path.insert(0, str(HERE.parent))
from common import free_port  # noqa: E402


def package_of(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            rest = parts[parts.index(anchor) + 1 :]
            if rest[0] == "limpet" and len(rest) > 2:
                return "/".join(rest[:2])
            return rest[0]
    return "python:" + Path(filename).stem


async def clients_process(url: str, clients: int) -> None:
    """The client side, in a process of its own (its objects must not count): connect and
    subscribe ``clients`` raw socket.io websockets, say "ready", hold them until stdin closes."""
    import aiohttp

    sockets = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def connect() -> None:
            ws = await http.ws_connect(url, compress=0)
            await ws.receive_str()  # Engine.IO open
            await ws.send_str("40")
            await ws.receive_str()  # socket.io connect
            await ws.send_str('421["subscribe", {"channel": "mem"}]')
            while not (await ws.receive_str()).startswith("431"):
                pass
            sockets.append(ws)

        for start in range(0, clients, 100):
            await asyncio.gather(*(connect() for _ in range(min(100, clients - start))))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for ws in sockets:
            await ws.close()


async def main(clients: int, lines: int = 0) -> None:
    from aiohttp import web

    from limpet.hub.brokers.base import BrokerOptions
    from limpet.hub.brokers.memory import MemoryBroker
    from limpet.hub.server import Hub
    from limpet.hub.settings import HubSettings

    hub = Hub(MemoryBroker(BrokerOptions()), HubSettings(name="m", max_handshakes=0))
    runner = web.AppRunner(hub.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"

    async def run_clients(n: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", url, "--clients", str(n),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        return proc

    warm = await run_clients(20)  # warm caches and pools
    await asyncio.sleep(0.5)
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    measured = await run_clients(clients)
    await asyncio.sleep(1.0)
    after = tracemalloc.take_snapshot()
    by_package: collections.Counter[str] = collections.Counter()
    for stat in after.compare_to(before, "filename"):
        by_package[package_of(stat.traceback[0].filename)] += stat.size_diff
    total = sum(by_package.values())
    print(f"{clients} subscribed websocket connections: {total / clients / 1024:.1f} KB each "
          "(the hub's Python heap, tracemalloc)")  # fmt: skip
    for package, size in by_package.most_common(12):
        print(f"  {package:40s} {size / clients:8.0f} B")
    if lines:
        print("by line:")
        for stat in after.compare_to(before, "lineno")[:lines]:
            frame = stat.traceback[0]
            where = f"{package_of(frame.filename)} {Path(frame.filename).name}:{frame.lineno}"
            print(f"  {where:60s} {stat.size_diff / clients:8.0f} B")
    for proc in (measured, warm):
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--lines", type=int, default=0, help="also the top N source lines")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(clients_process(args.client, args.clients))
    else:
        asyncio.run(main(args.clients, args.lines))
