"""A chat application behind `limpet hub`: cookie-session login, the hub's hooks for
authorization, its channel events for a "who's online" list.

    python examples/chat/app.py --listen 127.0.0.1:8090 --hub-url http://127.0.0.1:9001 \
        --hook-secret-file secret.txt
    limpet hub --listen 127.0.0.1:9001 --hook-url http://127.0.0.1:8090/hooks \
        --events-url http://127.0.0.1:8090/events --hook-secret-file secret.txt \
        --config examples/chat/hub.yaml

`limpet up --example chat` starts it all behind the proxy (the page, /login and the hooks go to
this app; /socket.io/ and /static/ to the hubs), one origin, so the session cookie reaches the
hub's handshake and the hub passes it to the connect hook.

Channels (see hub.yaml): ``room:NAME`` anyone signed in; ``dm:A:B`` only A and B; ``online``
written by this app only (the hub refuses client publishes there), read by anyone signed in.
A visitor without a session connects as an anonymous client, which those namespaces refuse.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp import web

from limpet.hub.hooks.signing import SignatureError, verify

log = logging.getLogger("chat")
COOKIE = "chat_session"
MAX_TEXT = 500


class Chat:
    def __init__(self, hub_url: str, hook_secret: bytes, session_secret: bytes) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.hook_secret = hook_secret
        self.session_secret = session_secret
        #: user -> subscriptions of room:lobby (a user with two tabs is online until both leave)
        self.online: dict[str, int] = {}
        #: event ids already applied (delivery is at least once), the newest 10 000
        self.applied: OrderedDict[str, None] = OrderedDict()
        self.http: aiohttp.ClientSession | None = None

    # --- sessions: "<user>.<hmac>" in an HttpOnly cookie ---------------------------------

    def session_value(self, user: str) -> str:
        mac = hmac.new(self.session_secret, user.encode(), hashlib.sha256).hexdigest()
        return f"{user}.{mac}"

    def user_of(self, value: str | None) -> str | None:
        if not value or "." not in value:
            return None
        user, _, _mac = value.rpartition(".")
        return user if hmac.compare_digest(self.session_value(user), value) else None

    # --- pages -----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        user = self.user_of(request.cookies.get(COOKIE))
        if user is None:
            return web.Response(text=LOGIN, content_type="text/html")
        page = PAGE.replace("{{user}}", html.escape(user)).replace(
            "{{user_json}}", json.dumps(user)
        )
        return web.Response(text=page, content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", "")).strip()
        if not name.isalnum() or not 0 < len(name) <= 32:
            return web.Response(status=400, text="a name of 1..32 letters or digits, please")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, self.session_value(name), httponly=True, samesite="Lax")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE)
        raise response

    async def who(self, request: web.Request) -> web.Response:
        return web.json_response(sorted(self.online))

    # --- the hub's hooks -------------------------------------------------------------------

    async def signed(self, request: web.Request) -> Any:
        body = await request.read()
        try:
            verify(self.hook_secret, body, request.headers, time.time())
        except SignatureError as exc:
            log.warning("refused %s: %s", request.path, exc)
            raise web.HTTPUnauthorized(text=str(exc)) from None
        return json.loads(body)

    async def hook(self, request: web.Request) -> web.Response:
        doc = await self.signed(request)
        name = request.match_info["hook"]
        if name == "connect":
            cookie = doc.get("cookies", {}).get(COOKIE)
            if cookie is None:  # a visitor: connected, but anonymous (hub.yaml keeps them out)
                return allow({})
            user = self.user_of(cookie)
            if user is None:
                return deny(4401, "bad session: sign in again")
            return allow({"user": user, "info": {"name": user}})
        user, channel = doc.get("user"), doc.get("channel", "")
        if name == "subscribe":
            if channel.startswith("dm:") and user not in channel.split(":")[1:]:
                return deny(4403, f"{channel} is between two other people")
            return allow({})
        if name == "publish":
            data = doc.get("data")
            text = data.get("text") if isinstance(data, dict) else None
            if not isinstance(text, str) or not text.strip():
                return deny(4400, "a message needs some text")
            return allow({"data": {"text": text.strip()[:MAX_TEXT], "from": user,
                                   "at": int(time.time() * 1000)}})  # fmt: skip
        if name == "rpc" and doc.get("method") == "online":
            return allow({"data": sorted(self.online)})
        return deny(4404, f"no {name} here")

    # --- the hub's channel events: who's online ---------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        doc = await self.signed(request)
        changed = False
        for event in doc.get("events", []):
            if event["id"] in self.applied:
                continue  # a repeat: at least once
            self.applied[event["id"]] = None
            if len(self.applied) > 10_000:
                self.applied.popitem(last=False)
            if event["channel"] != "room:lobby" or event["type"] not in ("join", "leave"):
                continue
            user = event.get("user") or "?"
            count = self.online.get(user, 0) + (1 if event["type"] == "join" else -1)
            if count > 0:
                self.online[user] = count
            else:
                self.online.pop(user, None)
            changed = True
        if changed:
            await self.announce()
        return web.json_response({})

    async def announce(self) -> None:
        """Publish the list to ``online`` (over the hub's HTTP API: clients may not)."""
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self.http.post(
                f"{self.hub_url}/api/channels/online/messages",
                json={"data": {"online": sorted(self.online)}},
            ) as resp:
                if resp.status != 201:
                    log.warning("publishing the online list: HTTP %d", resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("publishing the online list failed: %s", exc)

    async def close(self, app: web.Application) -> None:
        if self.http is not None:
            await self.http.close()


def allow(result: dict[str, Any]) -> web.Response:
    return web.json_response({"result": result})


def deny(code: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}})


def make_app(chat: Chat) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/", chat.index)
    app.router.add_post("/login", chat.login)
    app.router.add_post("/logout", chat.logout)
    app.router.add_get("/online", chat.who)
    app.router.add_post("/hooks/{hook}", chat.hook)
    app.router.add_post("/events", chat.events)
    app.on_cleanup.append(chat.close)
    return app


LOGIN = """<!doctype html><meta charset="utf-8"><title>limpet chat</title>
<h1>limpet chat</h1><form method="post" action="/login">
<label>Your name <input name="name" autofocus pattern="[A-Za-z0-9]{1,32}" required></label>
<button>Sign in</button></form>"""

PAGE = """<!doctype html><meta charset="utf-8"><title>limpet chat</title>
<style>body{font:15px system-ui;margin:2em}#log{height:50vh;overflow:auto;border:1px solid #ccc;padding:.5em}</style>
<h1>limpet chat <small>as {{user}}</small></h1>
<form method="post" action="/logout"><button>Sign out</button></form>
<p>Online: <span id="online">…</span></p>
<div id="log"></div>
<form id="say"><input id="text" size="60" autofocus><button>Send</button></form>
<script type="module">
import { io } from "/static/socket.io.esm.min.js";
const me = {{user_json}};
const log = (line) => { const p = document.createElement("p"); p.textContent = line;
  document.getElementById("log").append(p); };
const socket = io({ transports: ["websocket"] });
socket.on("connect_error", (e) => log(`not connected: ${e.message}`));
socket.on("message", (m) => {
  if (m.channel === "online") document.getElementById("online").textContent = m.data.online.join(", ");
  else log(`${m.data.from}: ${m.data.text}`);
});
socket.on("connect", async () => {
  await socket.emitWithAck("subscribe", { channel: "online" });
  const ack = await socket.emitWithAck("subscribe", { channel: "room:lobby" });
  if (ack.error) log(`room:lobby: ${ack.error}`);
  const online = await socket.emitWithAck("rpc", { method: "online" });
  if (online.data) document.getElementById("online").textContent = online.data.join(", ");
});
document.getElementById("say").onsubmit = async (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  const ack = await socket.emitWithAck("publish", { channel: "room:lobby", data: { text: input.value } });
  if (ack.error) log(`not sent: ${ack.error}`); else input.value = "";
};
</script>"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8090", metavar="HOST:PORT")
    parser.add_argument(
        "--hub-url", required=True, help="a hub replica (or the proxy), for HTTP publishes"
    )
    parser.add_argument("--hook-secret-file", required=True, metavar="FILE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chat %(levelname)s %(message)s")
    with open(args.hook_secret_file, encoding="utf-8") as f:
        hook_secret = f.read().strip().encode()
    session_secret = os.environ.get("CHAT_SESSION_SECRET", "").encode() or secrets.token_bytes(32)
    host, _, port = args.listen.rpartition(":")
    web.run_app(make_app(Chat(args.hub_url, hook_secret, session_secret)), host=host,
                port=int(port), print=lambda *_: print(f"chat app listening on http://{args.listen}/",
                                                        flush=True), access_log=None)  # fmt: skip


if __name__ == "__main__":
    main()
