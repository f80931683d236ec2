"""Baseline (c): python-socketio's AsyncServer with AsyncRedisManager, on aiohttp + uvloop.

It speaks the benchmark's subset of the hub protocol: "subscribe" {channel} joins the room,
"publish" {channel, data} emits "message" {channel, data} to the room on every replica (through
the manager's Redis pub/sub). Usage: pysio_server.py PORT REDIS_URL NAME
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import socketio
import uvloop
from aiohttp import web


def build(redis_url: str) -> tuple[socketio.AsyncServer, web.Application]:
    mgr = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=mgr, cors_allowed_origins="*")

    @sio.on("subscribe")
    async def subscribe(sid: str, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, dict) or not isinstance(msg.get("channel"), str):
            return {"error": "channel expected"}
        await sio.enter_room(sid, msg["channel"])
        return {"channel": msg["channel"]}

    @sio.on("publish")
    async def publish(sid: str, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, dict) or not isinstance(msg.get("channel"), str):
            return {"error": "channel expected"}
        await sio.emit(
            "message", {"channel": msg["channel"], "data": msg.get("data")}, room=msg["channel"]
        )
        return {}

    app = web.Application()
    sio.attach(app)
    return sio, app


async def main(port: int, redis_url: str, name: str) -> None:
    _, app = build(redis_url)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    print(f"python-socketio {name} listening on http://127.0.0.1:{port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
