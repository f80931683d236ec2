"""`limpet check URL`: is this endpoint really sticky?

N clients, each with its own cookie jar like N browsers, make M requests (or WebSocket
connections, or socket.io round trips) and note which backend answered each. The conclusion and
the report come from ``limpet.tools.verdict`` (sans-IO); this module only does the I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from limpet.errors import LimpetError, UsageError

if TYPE_CHECKING:
    import aiohttp

    from limpet.tools.verdict import Attempt, ClientRun

TRANSPORTS = ("http", "websocket", "socketio")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="http(s):// (or ws(s):// for websocket) URL")
    parser.add_argument("--clients", type=int, default=10, metavar="N", help="independent clients")
    parser.add_argument(
        "--requests",
        type=int,
        default=10,
        metavar="M",
        help="requests (http), connections (websocket) or round trips (socketio) per client",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="http",
        help="what each client does: http requests, websocket connections, or socket.io "
        "round trips (Engine.IO long-polling, which needs stickiness most)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    parser.add_argument(
        "--concurrency", type=int, default=10, metavar="K", help="clients running at once"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="limit for each request"
    )
    parser.add_argument(
        "--identify",
        default="auto",
        metavar="auto|body|header:NAME|json:FIELD",
        help="how to tell the backend from an HTTP answer: auto = the X-Backend header, else the "
        "first line of a text/plain body (what `limpet whoami` sends); json:FIELD = a field of a "
        "JSON body (e.g. json:name for the hub's /healthz)",
    )
    parser.add_argument(
        "--path",
        default=None,
        help="WebSocket path (default /ws) or socket.io path (default /socket.io/) when the URL "
        "has no path of its own",
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="reuse each client's connection between requests (default: a new connection each "
        "time, so a layer-4 balancer cannot hide a missing affinity)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header, e.g. Host:app.example.com (repeatable)",
    )
    parser.add_argument(
        "--page-first",
        action="store_true",
        help="websocket/socketio: each client first GETs the URL, as a browser loads the page "
        "(and its affinity cookie) before it opens a socket",
    )
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the URL to answer without a 5xx (servers still "
        "starting, backends not yet healthy), then check (default: 0, check at once)",
    )


@dataclass(frozen=True)
class Target:
    """The validated command line: where to go, how, and how to recognise a backend."""

    url: str  # the http(s) URL for plain requests
    transport: str
    endpoint: str  # what the transport talks to: http URL, ws URL, or socket.io base URL
    clients: int
    requests: int
    concurrency: int
    timeout: float
    identify: str  # "auto" | "body" | "header:NAME" | "json:FIELD"
    keep_alive: bool
    insecure: bool
    page_first: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    wait: float = 0.0  # seconds to wait for a first answer that is not a 5xx


def target_from_args(args: argparse.Namespace) -> Target:
    """Validate the flags into a Target, or raise UsageError saying what is wrong."""
    from yarl import URL

    text = args.url.strip()
    if "://" not in text:
        raise UsageError(f"URL {text!r} has no scheme; expected http://HOST[:PORT]/...")
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"URL {text!r} is not valid: {exc}") from None
    scheme = url.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss"):
        raise UsageError(f"URL {text!r}: scheme must be http, https, ws or wss")
    if not url.host:
        raise UsageError(f"URL {text!r} has no host")
    try:
        url.port  # noqa: B018 - yarl validates the port lazily
    except ValueError:
        raise UsageError(f"URL {text!r} has an invalid port") from None
    if scheme.startswith("ws") and args.transport != "websocket":
        raise UsageError(f"a {scheme}:// URL needs --transport websocket")
    http_url = url.with_scheme({"ws": "http", "wss": "https"}.get(scheme, scheme))
    for flag in ("clients", "requests", "concurrency"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be at least 1")
    if not args.timeout > 0:
        raise UsageError("--timeout must be positive")
    wait = getattr(args, "wait", 0.0)
    if not 0 <= wait <= 3600:
        raise UsageError("--wait must be 0..3600 seconds")
    identify = args.identify
    kind, _, key = identify.partition(":")
    if identify not in ("auto", "body") and not (kind in ("header", "json") and key):
        raise UsageError(f"--identify {identify!r}: expected auto, body, header:NAME or json:FIELD")
    headers: dict[str, str] = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {h!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()

    given_path = url.path not in ("", "/")
    endpoint = http_url
    if args.transport == "websocket":
        path = args.path or (url.path if given_path else "/ws")
        ws_scheme = "wss" if http_url.scheme == "https" else "ws"
        endpoint = http_url.with_scheme(ws_scheme).with_path(path).with_query(url.query)
    elif args.transport == "socketio":
        path = args.path or (url.path if given_path else "/socket.io/")
        if not path.endswith("/"):
            path += "/"
        endpoint = http_url.with_path(path).with_query(None)
    return Target(
        url=str(http_url),
        transport=args.transport,
        endpoint=str(endpoint),
        clients=args.clients,
        requests=args.requests,
        concurrency=args.concurrency,
        timeout=args.timeout,
        identify=identify,
        keep_alive=args.keep_alive,
        insecure=args.insecure,
        headers=headers,
        page_first=args.page_first,
        wait=wait,
    )


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from limpet.runtime import new_event_loop
    from limpet.tools import spread
    from limpet.tools import verdict as v

    target = target_from_args(args)
    loop = new_event_loop()
    try:
        runs = loop.run_until_complete(probe_all(target))
    finally:
        loop.close()
    result = v.judge(
        runs,
        transport=target.transport,  # type: ignore[arg-type]
        now=datetime.now(UTC),
        page_first=target.page_first,
    )
    sessions = spread.of_runs(runs)  # where the sessions were at the start and at the end
    if args.json:
        report = v.to_json(result, url=target.url, requests=target.requests)
        report["spread"] = spread.to_json(sessions)
        text = json.dumps(report, indent=2) + "\n"
    else:
        text = v.render_text(result, url=target.url, requests=target.requests)
        lines = spread.render(sessions)
        if lines:  # after the sticky/moved/failed line
            marker = "\n  sticky "
            at = text.find(marker)
            at = text.find("\n", at + 1) + 1 if at >= 0 else len(text)
            text = text[:at] + "\n".join(lines) + "\n" + text[at:]
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (
        BrokenPipeError
    ):  # `limpet check ... | head`: the reader left; the exit code still counts
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return result.exit_code


# -- I/O -----------------------------------------------------------------------------------------


async def probe_all(target: Target) -> list[ClientRun]:
    """Check the URL answers HTTP at all, then run every client (at most K at once)."""
    await preflight(target)
    limit = asyncio.Semaphore(target.concurrency)

    async def one(index: int) -> ClientRun:
        async with limit:
            return await run_client(target, index)

    return list(await asyncio.gather(*(one(i) for i in range(1, target.clients + 1))))


def _describe(exc: BaseException) -> str:
    """A one-line reason for a failed request, without a traceback."""
    import aiohttp

    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"WebSocket handshake refused: HTTP {exc.status}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad response: {_first_line(str(exc.message))}"
    return _first_line(str(exc)) or type(exc).__name__


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def _os_reason(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    return err.strerror or _first_line(str(err))


async def preflight(target: Target) -> None:
    """One plain GET: turn 'nothing there' and 'not HTTP' into a clear error before the run.

    With ``--wait`` it is retried (5 times a second) until the answer is not a 5xx or the time
    is up: a tour pasted as one block starts its servers and checks at once. A 5xx at the end is
    not an error here: the report then says every answer was one.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + target.wait
    while True:
        try:
            status = await _get_once(target)
        except LimpetError:
            if loop.time() >= deadline:
                raise
        else:
            if status < 500 or loop.time() >= deadline:
                return
        await asyncio.sleep(0.2)


async def _get_once(target: Target) -> int:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=target.timeout)
    try:
        async with (
            aiohttp.ClientSession(
                timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), headers=target.headers
            ) as session,
            session.get(target.url, ssl=not target.insecure, allow_redirects=False) as resp,
        ):
            await resp.read()
            return resp.status
    except TimeoutError:
        raise LimpetError(f"no answer from {target.url} within {target.timeout:g} s") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise LimpetError(
            f"TLS certificate of {target.url} not trusted ({exc.certificate_error}); "
            "--insecure skips the check"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise LimpetError(f"cannot reach {target.url}: {_os_reason(exc.os_error)}") from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as exc:
        raise LimpetError(f"{target.url} did not answer HTTP: {_describe(exc)}") from None
    except aiohttp.ClientError as exc:
        raise LimpetError(f"{target.url}: {_describe(exc)}") from None


def _new_session(target: Target, set_cookies: list[str]) -> aiohttp.ClientSession:
    """A session with its own cookie jar (like one browser) that records every Set-Cookie."""
    import aiohttp

    async def on_end(_s: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        set_cookies.extend(params.response.headers.getall("Set-Cookie", []))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    return aiohttp.ClientSession(
        # unsafe=True: keep cookies set by an IP-address host such as 127.0.0.1 (RFC 6265 allows
        # it; aiohttp refuses them by default)
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(force_close=not target.keep_alive, limit=4),
        timeout=aiohttp.ClientTimeout(total=target.timeout),
        trace_configs=[trace],
        headers=target.headers,
    )


async def run_client(target: Target, index: int) -> ClientRun:
    from limpet.tools.verdict import Attempt, ClientRun

    set_cookies: list[str] = []
    async with _new_session(target, set_cookies) as session:
        if target.page_first and target.transport != "http":
            try:
                async with session.get(target.url, ssl=not target.insecure) as resp:
                    await resp.read()
            except Exception as exc:
                failed = Attempt(error=f"loading the page: {_describe(exc)}")
                return ClientRun(client=index, attempts=(failed,), set_cookies=tuple(set_cookies))
        if target.transport == "http":
            attempts = await _http_client(session, target)
        elif target.transport == "websocket":
            attempts = await _ws_client(session, target, index)
        else:
            attempts = await SocketIOClient(session, target, index).run()
    return ClientRun(client=index, attempts=tuple(attempts), set_cookies=tuple(set_cookies))


def identify_response(identify: str, status: int, headers: Any, body: bytes) -> Attempt:
    """Which backend answered, by the --identify rule; an error Attempt when it cannot tell."""
    from limpet.tools.verdict import Attempt

    if status >= 400:
        return Attempt(error=f"HTTP {status}")
    if identify.startswith("header:"):
        name = headers.get(identify[len("header:") :])
        if not name:
            return Attempt(error=f"no {identify[len('header:') :]} header")
        return Attempt(backend=name.strip())
    if identify.startswith("json:"):
        key = identify[len("json:") :]
        try:
            value = json.loads(body).get(key)
        except (ValueError, AttributeError):
            return Attempt(error="the body is not a JSON object")
        if value is None or isinstance(value, dict | list):
            return Attempt(error=f"no {key!r} in the JSON body")
        return Attempt(backend=str(value))
    if identify == "auto":
        name = headers.get("X-Backend")
        if name:
            return Attempt(backend=name.strip())
        if not headers.get("Content-Type", "").startswith("text/plain"):
            return Attempt(
                error="cannot tell the backend: no X-Backend header and the body is not "
                "text/plain (see --identify)"
            )
    first = body.split(b"\n", 1)[0].strip()[:200].decode("utf-8", "replace")
    if not first:
        return Attempt(error="empty first line")
    return Attempt(backend=first)


async def _http_client(session: aiohttp.ClientSession, target: Target) -> list[Attempt]:
    from limpet.tools.verdict import Attempt

    attempts: list[Attempt] = []
    for _ in range(target.requests):
        try:
            async with session.get(
                target.endpoint, ssl=not target.insecure, allow_redirects=False
            ) as resp:
                body = await resp.content.read(4096)
                attempts.append(identify_response(target.identify, resp.status, resp.headers, body))
        except Exception as exc:  # one failed request is a finding, not a crash
            attempts.append(Attempt(error=_describe(exc)))
    return attempts


async def _ws_client(session: aiohttp.ClientSession, target: Target, index: int) -> list[Attempt]:
    """M WebSocket connections in a row; the echo's ``NAME: `` prefix names the backend."""
    import aiohttp

    from limpet.tools.verdict import Attempt

    attempts: list[Attempt] = []
    for n in range(target.requests):
        token = f"limpet-check {index}.{n}"
        try:
            async with session.ws_connect(
                target.endpoint,
                ssl=not target.insecure,
                timeout=aiohttp.ClientWSTimeout(ws_close=target.timeout),
                receive_timeout=target.timeout,
                autoping=True,
            ) as ws:
                await ws.send_str(token)
                msg = await ws.receive(timeout=target.timeout)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    attempts.append(Attempt(error=f"no text echo ({msg.type.name})"))
                    continue
                text = str(msg.data)
                name, sep, rest = text.partition(": ")
                if not sep or rest != token:
                    attempts.append(Attempt(error="echo without a 'NAME: ' prefix"))
                else:
                    attempts.append(Attempt(backend=name))
        except Exception as exc:
            attempts.append(Attempt(error=_describe(exc)))
    return attempts


class SocketIOClient:
    """One socket.io client over Engine.IO v4 long-polling, written out by hand.

    Hand-written because the python-socketio client hides what `check` must see: the status of
    every HTTP request (a ``400 Session ID unknown`` is the very failure stickiness prevents) and
    it reconnects on its own. Engine.IO v4 polling: packets joined by U+001E; ``0`` open,
    ``2``/``3`` ping/pong, ``4`` message, whose socket.io payload is ``0`` connect, ``2`` event,
    ``3`` ack, ``4`` connect error.
    """

    SEP = "\x1e"

    def __init__(self, session: aiohttp.ClientSession, target: Target, index: int) -> None:
        self.session, self.target, self.index = session, target, index
        self.sid = ""
        self.name: str | None = None
        self.replica: str | None = None  # the X-Backend header of the last answer (the hub's)
        self.connected = False
        self.acks: dict[int, Any] = {}
        self.polls = 0

    class Failure(Exception):
        """This client's session broke; the message is the finding."""

    async def run(self) -> list[Attempt]:
        from limpet.tools.verdict import UNNAMED, Attempt

        attempts: list[Attempt] = []
        try:
            await self._handshake()
            attempts.append(Attempt(backend=self.name or self.replica or UNNAMED))
            for n in range(1, self.target.requests):
                attempts.append(Attempt(backend=await self._echo(n)))
            await self._close()
        except self.Failure as exc:
            attempts.append(Attempt(error=str(exc)))
        except Exception as exc:
            attempts.append(Attempt(error=_describe(exc)))
        return attempts

    def _params(self) -> dict[str, str]:
        params = {"EIO": "4", "transport": "polling"}
        if self.sid:
            params["sid"] = self.sid
        return params

    async def _request(self, method: str, body: str | None = None) -> str:
        async with self.session.request(
            method,
            self.target.endpoint,
            params=self._params(),
            data=body.encode() if body is not None else None,
            headers={"Content-Type": "text/plain;charset=UTF-8"} if body is not None else None,
            ssl=not self.target.insecure,
        ) as resp:
            text = await resp.text(errors="replace")
            self.replica = resp.headers.get("X-Backend") or self.replica
            if resp.status != 200:
                raise self.Failure(f"HTTP {resp.status} {self._reason(resp.status, text)}".strip())
            return text

    @staticmethod
    def _reason(status: int, body: str) -> str:
        """One wording per failure, so the report can count them: Node's engine.io answers
        ``{"code":1,"message":"Session ID unknown"}``, python-engineio ``"Invalid session SID"``.
        """
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = body
        if isinstance(decoded, dict):
            decoded = decoded.get("message", body)
        message = str(decoded).strip()
        lowered = message.lower()
        if status == 400 and ("session id unknown" in lowered or "invalid session" in lowered):
            return "Session ID unknown"
        return message[:80]

    async def _handshake(self) -> None:
        body = await self._request("GET")
        first = body.split(self.SEP, 1)[0]
        if not first.startswith("0"):
            raise self.Failure(f"not an Engine.IO open packet: {first[:60]!r}")
        try:
            self.sid = str(json.loads(first[1:])["sid"])
        except (ValueError, KeyError, TypeError):
            raise self.Failure("Engine.IO open packet without a sid") from None
        await self._request("POST", "40")
        # python-socketio runs the connect handler (where `limpet whoami` emits "whoami") before
        # it queues the "40" answer, so once "40" is here the name is too, if the server says it
        while not self.connected:
            await self._poll()

    async def _echo(self, n: int) -> str:
        await self._request("POST", f"42{n}" + json.dumps(["echo", {"client": self.index, "n": n}]))
        while n not in self.acks:
            await self._poll()
        from limpet.tools.verdict import UNNAMED

        ack = self.acks.pop(n)
        if isinstance(ack, list) and ack and isinstance(ack[0], dict) and "name" in ack[0]:
            return str(ack[0]["name"])
        # any ack proves the session lives on; a server that is not `limpet whoami` (the hub
        # acks unknown events with an error) names itself in a header, if at all
        return self.replica or self.name or UNNAMED

    async def _poll(self) -> None:
        self.polls += 1
        if self.polls > 4 * self.target.requests + 8:
            raise self.Failure("the server sends nothing we asked for")
        for packet in (await self._request("GET")).split(self.SEP):
            await self._on_packet(packet)

    async def _on_packet(self, packet: str) -> None:
        if packet == "2":
            await self._request("POST", "3")
        elif packet == "1":
            raise self.Failure("server closed the session")
        elif packet.startswith("40"):
            self.connected = True
        elif packet.startswith("44"):
            raise self.Failure(f"socket.io connect refused: {packet[2:80]}")
        elif packet.startswith("42"):
            try:
                event = json.loads(packet[2:])
            except ValueError:
                return
            if event and event[0] == "whoami" and len(event) > 1 and isinstance(event[1], dict):
                self.name = str(event[1].get("name"))
        elif packet.startswith("43"):
            digits = packet[2:].split("[", 1)[0]
            try:
                self.acks[int(digits)] = json.loads(packet[2 + len(digits) :])
            except ValueError:
                return

    async def _close(self) -> None:
        try:
            await self._request("POST", "41" + self.SEP + "1")
        except Exception:
            pass  # leaving is best effort; the result is already known
