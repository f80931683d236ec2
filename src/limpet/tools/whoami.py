"""`limpet whoami`: a demo backend that says who it is (HTTP, WebSocket echo, socket.io).

The first line of every HTTP answer is the backend's name, so any client (curl, `limpet check`,
a test) can tell which replica served it, like Kubernetes' ``serve_hostname``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from typing import Any

from limpet.runtime import parse_hostport, run_until_signal, serve_aiohttp


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to serve on")
    parser.add_argument("--name", default=None, help="name to report (default: the host name)")
    parser.add_argument(
        "--socketio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve a socket.io endpoint at /socket.io/ that reports the name",
    )
    parser.add_argument(
        "--socketio-path", default="socket.io", help="path of the socket.io endpoint (no slashes)"
    )
    parser.add_argument(
        "--fail-header",
        metavar="NAME",
        help="answer 500 to any request carrying this header (to exercise passive health)",
    )


def build_app(
    name: str,
    *,
    socketio: bool = True,
    socketio_path: str = "socket.io",
    fail_header: str | None = None,
) -> Any:
    """The aiohttp application: GET anything -> name; /ws echoes; optional socket.io server."""
    from aiohttp import WSMsgType, web

    async def hello(request: web.Request) -> web.StreamResponse:
        if request.can_read_body:
            body = await request.read()
        else:
            body = b""
        lines = [
            name,
            f"{request.method} {request.path_qs} HTTP/{request.version.major}.{request.version.minor}",
            f"peer: {request.remote}",
            f"body-bytes: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in request.headers.items()]
        # field values that are not UTF-8 (a Cookie with byte 0xE9) arrive as surrogate escapes:
        # echo them as \xNN instead of failing to encode the answer (a 500)
        raw = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        body = raw.decode("utf-8", "backslashreplace").encode()
        status = 500 if fail_header and fail_header in request.headers else 200
        return web.Response(
            body=body,
            status=status,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Backend": name},
        )

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{name}: {msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    app = web.Application(client_max_size=1 << 30)
    if socketio:
        import socketio as sio_lib

        sio = sio_lib.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
        sio.attach(app, socketio_path=socketio_path)

        @sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            await sio.emit("whoami", {"name": name, "sid": sid}, to=sid)

        @sio.on("whoami")
        async def on_whoami(sid: str, data: Any = None) -> dict[str, str]:
            return {"name": name, "sid": sid}

        @sio.on("echo")
        async def on_echo(sid: str, data: Any = None) -> dict[str, Any]:
            return {"name": name, "data": data}

        async def _shutdown(app: web.Application) -> None:
            await sio.shutdown()

        app.on_shutdown.append(_shutdown)
        app["sio"] = sio
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def serve(host: str, port: int, name: str, stop: asyncio.Event, **kw: Any) -> None:
    banner = f"limpet whoami {name!r} listening on http://{host}:{port}/"
    await serve_aiohttp(build_app(name, **kw), host, port, stop, banner=banner)


def run(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.listen)
    name = args.name or os.environ.get("HOSTNAME") or socket.gethostname()
    run_until_signal(
        lambda stop: serve(
            host,
            port,
            name,
            stop,
            socketio=args.socketio,
            socketio_path=args.socketio_path,
            fail_header=args.fail_header,
        )
    )
    return 0
