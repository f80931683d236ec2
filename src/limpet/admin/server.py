"""I/O: the admin listener (aiohttp): /metrics, /healthz, /readyz, /status, drain/undrain and
the live dashboard (``GET /``, fed by server-sent events on ``/events``).

Not on the request path, so a regular web framework is the right tool here. Who may call what
is decided by ``limpet.admin.guard`` (reads open, mutations need the bearer token, cross-origin
browser requests refused); what is shown comes from a view (``limpet.admin.views``): this
process, or every worker.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limpet.admin import guard
from limpet.admin.gate import AdminGate, Gates
from limpet.admin.views import LocalView, WorkersView
from limpet.errors import UsageError
from limpet.runtime import parse_hostport

if TYPE_CHECKING:
    from limpet.proxy.server import ProxyServer

log = logging.getLogger("limpet.admin")

STATIC = Path(__file__).parent / "static"
HISTORY_SECONDS = 300  # the dashboard's chart: the last five minutes, one point a second
TOKEN_ENV = "LIMPET_ADMIN_TOKEN"
MAX_WATCHERS = 32  # open dashboards (SSE streams) at once; more get 503
HUB_EVERY = 5  # seconds between asking the backends whether they are hub replicas
MAX_HUBS = 256  # backends asked at most
IDLE = 60.0  # seconds an idle keep-alive admin connection is kept (aiohttp's keepalive_timeout)


def admin_token(token_file: str | None) -> str | None:
    """The bearer token: ``--admin-token-file`` (first line) or env LIMPET_ADMIN_TOKEN."""
    if token_file:
        try:
            text = Path(token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--admin-token-file {token_file}: {exc.strerror or exc}") from None
        if not text:
            raise UsageError(f"--admin-token-file {token_file}: the file is empty")
        return text.splitlines()[0].strip()
    return os.environ.get(TOKEN_ENV) or None


def admin_bind(address: str) -> tuple[str, int]:
    """``:9100`` binds loopback, not every interface: exposing the admin must be explicit."""
    host, port = parse_hostport(address)
    if address.rpartition(":")[0] in ("", "[]"):
        host = "127.0.0.1"
    return host, port


class History:
    """Requests/s and error share over the last minutes, sampled once a second; and, while a
    dashboard is open, which backends are hub replicas (their ``/healthz`` says so)."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.watchers = 0  # open dashboards; hub replicas are asked only while one is
        self.hubs: dict[str, dict[str, Any]] = {}
        self._ticks = 0
        self.points: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=HISTORY_SECONDS
        )
        self.latest: dict[str, Any] = {}
        self._last: tuple[float, int, int] | None = None
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                status = await self.view.status()
            except Exception as exc:  # a view error is shown, never ends the sampler
                status = {"error": str(exc)}
            now = time.time()
            t = status.get("totals") or {}
            requests, errors = int(t.get("requests", 0)), int(t.get("errors", 0))
            if self._last is not None:
                dt = max(now - self._last[0], 1e-3)
                n = requests - self._last[1]
                e = errors - self._last[2]
                self.points.append((round(now, 1), round(n / dt, 2), round(e / n, 4) if n else 0.0))
            self._last = (now, requests, errors)
            self.latest = status
            self._ticks += 1
            if self.watchers and self._ticks % HUB_EVERY == 1:
                await self.ask_hubs(status)
            self.changed.set()
            self.changed = asyncio.Event()
            await asyncio.sleep(1.0)

    async def ask_hubs(self, status: dict[str, Any]) -> None:
        """``GET /healthz`` of each backend: a limpet hub answers its name, clients, channels."""
        import aiohttp

        backends = [b for pool in status.get("pools", []) for b in pool.get("backends", [])]
        timeout = aiohttp.ClientTimeout(total=1.0)

        async def ask(session: Any, backend: dict[str, Any]) -> tuple[str, Any]:
            try:
                async with session.get(f"http://{backend['address']}/healthz") as resp:
                    body = await resp.json(content_type=None)
            except Exception:  # not a hub, or down: nothing to show
                return backend["id"], None
            if isinstance(body, dict) and {"name", "clients", "channels"} <= set(body):
                hub = {k: body[k] for k in ("name", "clients", "channels")}
                if isinstance(body.get("admission"), dict):  # handshakes in flight, refusals
                    hub["admission"] = {
                        k: v for k, v in body["admission"].items() if isinstance(v, int)
                    }
                return backend["id"], hub
            return backend["id"], None

        async with aiohttp.ClientSession(timeout=timeout) as session:
            answers = await asyncio.gather(*(ask(session, b) for b in backends[:MAX_HUBS]))
        self.hubs = {bid: hub for bid, hub in answers if hub is not None}

    def frame(self) -> str:
        return json.dumps({"status": self.latest, "history": list(self.points), "hubs": self.hubs})


def build_admin_app(
    view: Any,
    *,
    token: str | None,
    front: bool = True,
    hosts: tuple[str, ...] = (),
    gates: Gates | None = None,
) -> Any:
    """The admin app over ``view``; ``front=False`` is a worker's internal one (no guard, no
    dashboard), reachable only through its Unix socket. ``hosts``: the Host names answered
    besides IP addresses and localhost (``admin-hosts`` and the admin's own bind name)."""
    from aiohttp import web

    closing = asyncio.Event()

    @web.middleware
    async def guarded(request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = guard.check(request.method, request.headers, token, hosts)
        if refusal is not None:
            headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else {}
            return web.json_response(
                {"error": refusal.reason}, status=refusal.status, headers=headers
            )
        try:
            response: web.StreamResponse = await handler(request)
        finally:
            if gates is not None:  # the next request head is on the clock from here
                gates.responded(request.transport)
        return response

    async def metrics(request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(
            body=await view.metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if await view.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: a pool has no healthy backend\n")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(await view.status())

    def drain_handler(drain: bool) -> Any:
        async def handler(request: web.Request) -> web.Response:
            backend_id = request.match_info["backend"]
            code, body = await view.drain(backend_id, drain)
            if code == 200:
                log.warning(
                    "admin: %s %s (from %s)",
                    "drain" if drain else "undrain",
                    backend_id,
                    request.remote,
                )
            return web.json_response(body, status=code)

        return handler

    async def reload(request: web.Request) -> web.Response:
        code, body = await view.reload()
        return web.json_response(body, status=code)

    async def canary(request: web.Request) -> web.Response:
        code, body = await view.canary(request.query.get("pool"), request.query.get("weight"))
        if code == 200:
            log.warning("admin: canary %s (from %s)", body.get("weights"), request.remote)
        return web.json_response(body, status=code)

    async def rebalance(request: web.Request) -> web.Response:
        code, body = await view.rebalance(request.query.get("pool"))
        if code == 200:
            log.warning("admin: rebalance (from %s)", request.remote)
        return web.json_response(body, status=code)

    middlewares = [guarded] if front else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_post("/reload", reload)
    app.router.add_post("/rebalance", rebalance)
    app.router.add_post("/canary", canary)
    for method in ("POST", "PUT"):
        app.router.add_route(method, "/backends/{backend}/drain", drain_handler(True))
        app.router.add_route(method, "/backends/{backend}/undrain", drain_handler(False))
    if not front:
        return app

    history = History(view)

    async def dashboard(request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "dashboard.html").read_bytes(),
            content_type="text/html",
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )

    watchers = [0]

    async def events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: the status and the chart's points, once a second."""
        if watchers[0] >= MAX_WATCHERS:
            return web.json_response(
                {"error": f"{MAX_WATCHERS} dashboards are open already"}, status=503
            )
        watchers[0] += 1
        history.watchers = watchers[0]
        try:
            return await stream(request)
        finally:
            watchers[0] -= 1
            history.watchers = watchers[0]

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        transport = request.transport
        while not closing.is_set():
            if transport is None or transport.is_closing():
                return response  # the dashboard was closed: the normal end of a stream
            if history.latest:
                try:
                    await response.write(f"data: {history.frame()}\n\n".encode())
                except ConnectionError:  # closed between the check and the write
                    return response
            waiter = asyncio.ensure_future(history.changed.wait())
            stopper = asyncio.ensure_future(closing.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
        return response

    async def start_history(app: web.Application) -> None:
        app["history_task"] = asyncio.ensure_future(history.run())

    async def stop_history(app: web.Application) -> None:
        closing.set()
        task = app.get("history_task")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    app.router.add_get("/", dashboard)
    app.router.add_get("/events", events)
    app.on_startup.append(start_history)
    app.on_shutdown.append(stop_history)
    return app


class AdminListener:
    """A gated admin listener: its aiohttp runner and the TCP server in front of it."""

    def __init__(self, runner: Any, server: asyncio.AbstractServer, gates: Gates) -> None:
        self.runner, self.server, self.gates = runner, server, gates

    async def cleanup(self) -> None:
        self.server.close()
        await self.runner.cleanup()  # closes the connections aiohttp holds


async def _serve(
    app: Any,
    *,
    host: str | None = None,
    port: int = 0,
    path: str = "",
    gates: Gates | None = None,
) -> Any:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, keepalive_timeout=IDLE)
    await runner.setup()
    try:
        if gates is not None:  # a TCP admin: every connection behind an AdminGate
            protocol = runner.server
            assert protocol is not None
            server = await asyncio.get_running_loop().create_server(
                lambda: AdminGate(protocol(), gates), host, port, reuse_address=True
            )
            return AdminListener(runner, server, gates)
        site: Any = (
            web.UnixSite(runner, path)
            if path
            else web.TCPSite(runner, host, port, reuse_address=True)
        )
        await site.start()
    except BaseException:
        # a busy port: the app's startup tasks (the dashboard's sampler) end with the runner,
        # not as "Task was destroyed but it is pending!" when the loop closes
        await runner.cleanup()
        raise
    return runner


def admin_gates(server: ProxyServer) -> Gates:
    """The front admin's connection limit and head timeout (``limits.admin-connections``,
    ``timeouts.header``, read from the running config: a reload changes the timeout)."""
    return Gates(server.config.limits.admin_connections, lambda: server.config.timeouts.header)


async def start_admin(server: ProxyServer, address: str) -> Any:
    """The admin of a single-process proxy."""
    host, port = admin_bind(address)
    token = admin_token(server.config.admin_token_file)
    if token is None:
        log.warning(
            "admin on %s: no LIMPET_ADMIN_TOKEN / --admin-token-file, so drain and undrain are "
            "refused (reading /status, /metrics and the dashboard works)",
            address,
        )
    gates = admin_gates(server)
    app = build_admin_app(
        LocalView(server), token=token, hosts=admin_hosts(server, host), gates=gates
    )
    return await _serve(app, host=host, port=port, gates=gates)


def admin_hosts(server: ProxyServer, bind_host: str) -> tuple[str, ...]:
    """The Host names the admin answers besides IP addresses and localhost."""
    return (*server.config.admin_hosts, bind_host.lower().rstrip("."))


async def start_worker_admin(
    server: ProxyServer, address: str | None, index: int, workers: int, socket_dir: str
) -> list[Any]:
    """``--workers N``: this worker's internal admin on its Unix socket; worker 0 also serves
    the front admin at ``address``, which asks every worker's socket."""
    sockets = [os.path.join(socket_dir, f"worker-{i}.sock") for i in range(workers)]
    runners = [
        await _serve(
            build_admin_app(LocalView(server), token=None, front=False), path=sockets[index]
        )
    ]
    if index == 0 and address:
        host, port = admin_bind(address)
        token = admin_token(server.config.admin_token_file)
        gates = admin_gates(server)
        hosts = admin_hosts(server, host)
        app = build_admin_app(WorkersView(sockets), token=token, hosts=hosts, gates=gates)
        runners.append(await _serve(app, host=host, port=port, gates=gates))
    return runners
