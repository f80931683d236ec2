"""An application behind the hub's hooks, as a process (``python -m tests.support.hookapp``).

It decides as a real application would, from the session cookie the hub forwards:
- connect: ``session=<user>`` is that user; no cookie: anonymous; ``session=banned``: denied;
- subscribe: ``private:*`` only for ann; ``down:*`` answers 500 (an outage, for fail-closed/open),
  ``slow:*`` answers after 2 s (a timeout);
- publish: the data is replaced by ``{"text": ..., "by": user}``; ``down:*`` answers 500;
- rpc: echoes the data and the user.
It also takes channel events (``POST /events``, ``GET /_events`` lists them as received).
With ``--secret`` every request must be signed (``limpet.hub.hooks.signing``), else it answers
401. ``GET /_seen`` lists the hook calls it accepted: (hook, user, channel).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from aiohttp import web

from limpet.hub.hooks.signing import SignatureError, verify


def make_app(secret: bytes | None) -> web.Application:
    seen: list[list[Any]] = []
    refused: list[str] = []
    events: list[dict[str, Any]] = []

    def unsigned(request: web.Request, body: bytes) -> web.Response | None:
        """401 for a request that is not signed with the secret (when there is one)."""
        if secret is not None:
            try:
                verify(secret, body, request.headers, time.time())
            except SignatureError as exc:
                refused.append(str(exc))
                return web.json_response({"error": str(exc)}, status=401)
        return None

    async def take_events(request: web.Request) -> web.Response:
        body = await request.read()
        if (refusal := unsigned(request, body)) is not None:
            return refusal
        events.extend((await request.json())["events"])
        return web.json_response({})

    async def show_events(request: web.Request) -> web.Response:
        return web.json_response(events)

    async def hook(request: web.Request) -> web.Response:
        name = request.match_info["hook"]
        body = await request.read()
        if (refusal := unsigned(request, body)) is not None:
            return refusal
        doc = await request.json()
        channel = doc.get("channel") or ""
        user = doc.get("user")
        seen.append([name, user, channel])
        if channel.startswith("down:"):
            return web.Response(status=500, text="down")
        if channel.startswith("slow:"):  # past the hub's --hook-timeout
            await asyncio.sleep(2)
        if name == "connect":
            session = doc.get("cookies", {}).get("session")
            if session == "banned":
                return web.json_response({"error": {"code": 4401, "message": "banned"}})
            return web.json_response({"result": {"user": session, "info": {"name": session}}}
                                     if session else {"result": {}})  # fmt: skip
        if name == "subscribe":
            if channel.startswith("private:") and user != "ann":
                message = f"{user} is not a member of {channel}"
                return web.json_response({"error": {"code": 4403, "message": message}})
            return web.json_response({"result": {}})
        if name == "publish":
            data = doc.get("data")
            if channel.startswith("jitter:"):  # answers out of order
                await asyncio.sleep(random.random() / 20)
            text = data.get("text") if isinstance(data, dict) else data
            return web.json_response({"result": {"data": {"text": text, "by": user}}})
        if name == "rpc":
            return web.json_response({"result": {"data": {"echo": doc.get("data"), "user": user}}})
        return web.json_response({"error": {"code": 404, "message": f"no hook {name}"}})

    async def show(request: web.Request) -> web.Response:
        return web.json_response({"seen": seen, "refused": refused})

    app = web.Application()
    app.router.add_post("/hooks/{hook}", hook)
    app.router.add_get("/_seen", show)
    app.router.add_post("/events", take_events)
    app.router.add_get("/_events", show_events)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default=None)
    args = parser.parse_args()
    secret = args.secret.encode() if args.secret else None
    web.run_app(make_app(secret), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
