"""I/O: the admin listener (aiohttp): /metrics, /healthz, /readyz, /status and drain/undrain.

Not on the request path, so a regular web framework is the right tool here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from limpet.runtime import parse_hostport

if TYPE_CHECKING:
    from limpet.proxy.server import ProxyServer


def build_admin_app(server: ProxyServer) -> Any:
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(server.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ready = not server.stopping and all(
            runtime.pool.snapshot().eligible() for runtime in server.pools.values()
        )
        if ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: a pool has no healthy backend\n")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(server.status())

    def drain_handler(drain: bool) -> Any:
        async def handler(request: web.Request) -> web.Response:
            backend_id = request.match_info["backend"]
            runtime = server.find_backend(backend_id)
            if runtime is None:
                return web.json_response({"error": f"no backend {backend_id!r}"}, status=404)
            runtime.set_drain(backend_id, drain)
            return web.json_response(
                {"backend": backend_id, "state": getattr(runtime.state(backend_id), "value", None)}
            )

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    for method in ("POST", "PUT"):
        app.router.add_route(method, "/backends/{backend}/drain", drain_handler(True))
        app.router.add_route(method, "/backends/{backend}/undrain", drain_handler(False))
    return app


async def start_admin(server: ProxyServer, address: str) -> Any:
    from aiohttp import web

    host, port = parse_hostport(address)
    runner = web.AppRunner(build_admin_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
