"""A plain python-socketio app, the kind a user runs behind limpet without the hub: rooms through
python-socketio's own Redis manager, and per-connection state in the process (``save_session``).

    python tests/support/plain_sio_app.py PORT REDIS_URL NAME

Events: "whoami" -> NAME; "count" -> how many times this connection asked (state in the process);
"join" ROOM; "say" {room, n} -> "message" {n} to the room on every replica.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import socketio
from aiohttp import web


def build(redis_url: str, name: str) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=socketio.AsyncRedisManager(redis_url)
    )

    @sio.on("whoami")
    async def whoami(sid: str, _: Any = None) -> str:
        return name

    @sio.on("count")
    async def count(sid: str, _: Any = None) -> int:
        async with sio.session(sid) as session:
            session["count"] = session.get("count", 0) + 1
            return int(session["count"])

    @sio.on("join")
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    @sio.on("say")
    async def say(sid: str, msg: dict[str, Any]) -> bool:
        await sio.emit("message", {"n": msg["n"]}, room=msg["room"])
        return True

    app = web.Application()
    sio.attach(app)
    return app


async def main(port: int, redis_url: str, name: str) -> None:
    runner = web.AppRunner(build(redis_url, name), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
