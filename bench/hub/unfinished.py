"""What unfinished WebSocket messages cost a hub replica, with and without ``--max-unfinished``:
N raw clients each start a message just under ``--max-message`` (fragments without FIN, sent
in 1 MiB pieces) and never finish it; the replica's RSS (from /proc) before and once every
client has sent all it could, and how many were closed with 1013. Then the CPU cost of the
meter on the read path: ``MessageMeter.feed`` beside aiohttp's own reader on the same bytes
(small socket.io publishes, one read of 1 000 frames).

    python bench/hub/unfinished.py [--clients 20] [--budgets 0,67108864]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE.parent))
from common import Procs, free_port, limpet_argv, limpet_env, loadavg, rss_bytes  # noqa: E402

from tests.support.wsframes import CONT, TEXT, client_frame, open_websocket  # noqa: E402

MIB = 1 << 20
WS = "/socket.io/?EIO=4&transport=websocket"


async def hold_one(url: str, total: int) -> bool:
    """Send ``total`` bytes of a message that never ends; False if the hub closed it first."""
    reader, writer = await open_websocket(url, WS)
    piece = b"x" * MIB
    try:
        writer.write(client_frame(TEXT, b"4" + piece[1:], fin=False))
        for _ in range(total // MIB - 1):
            await writer.drain()
            writer.write(client_frame(CONT, piece, fin=False))
        await writer.drain()
        # the hub answers a refusal with a close frame: give it a moment to come
        await asyncio.sleep(0.5)
        return not reader.at_eof() and b"\x88" not in (await _ready(reader))
    except (ConnectionError, OSError):
        return False
    finally:
        _HELD.append(writer)


async def _ready(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(65536), 0.1)
    except TimeoutError:
        return b""


_HELD: list[asyncio.StreamWriter] = []


async def one_run(budget: int, clients: int, logs: Path) -> dict[str, object]:
    procs = Procs(logs)
    port = free_port()
    try:
        hub = procs.start(
            f"hub-{budget}",
            limpet_argv(
                "hub", "--listen", f"127.0.0.1:{port}", "--broker", "memory",
                "--max-unfinished", str(budget),
            ),
            limpet_env(),
            port=port,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        before = rss_bytes(hub.pid)
        held = await asyncio.gather(*(hold_one(url, 15 * MIB) for _ in range(clients)))
        after = rss_bytes(hub.pid)
        for writer in _HELD:
            writer.close()
        _HELD.clear()
        return {
            "budget": budget,
            "rss_before_mb": round(before / MIB),
            "rss_held_mb": round(after / MIB),
            "held": sum(held),
            "closed": clients - sum(held),
        }
    finally:
        procs.close()


def meter_cost(rounds: int = 200) -> tuple[float, float]:
    """ns per frame: aiohttp's reader, MessageMeter (CPU time, same bytes)."""
    from unittest import mock

    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

    from limpet.hub.fragments import MessageMeter

    frame = client_frame(TEXT, b'42["publish",{"channel":"c","data":"hello"}]')
    read = frame * 1000
    loop = asyncio.new_event_loop()
    protocol = mock.Mock()
    reader_s = meter_s = 0.0
    for _ in range(rounds):
        parser = WebSocketReader(
            WebSocketDataQueue(protocol, 1 << 30, loop=loop), 16 * MIB, compress=False,
            decode_text=True,
        )  # fmt: skip
        t = time.process_time()
        parser.feed_data(read)
        reader_s += time.process_time() - t
        meter = MessageMeter()
        t = time.process_time()
        meter.feed(read)
        meter_s += time.process_time() - t
    loop.close()
    return reader_s / rounds / 1000 * 1e9, meter_s / rounds / 1000 * 1e9


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--budgets", default=f"0,{64 * MIB}")
    args = parser.parse_args()
    print(f"load average {loadavg()}")
    with tempfile.TemporaryDirectory() as logs:
        for budget in (int(b) for b in args.budgets.split(",")):
            print(await one_run(budget, args.clients, Path(logs)))
    reader_ns, meter_ns = meter_cost()
    print(
        f"CPU per frame: aiohttp reader {reader_ns:.0f} ns, MessageMeter {meter_ns:.0f} ns "
        f"(meter/reader {meter_ns / reader_ns:.2f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
