"""The route memo (ProxyServer.route): the same answers as the route table read in order,
and a new table (a reload) is read afresh."""

from __future__ import annotations

from limpet.config.model import RouteConfig
from limpet.proxy import server as server_mod
from limpet.proxy.server import ProxyServer
from tests.support.protocol import Rig


def build() -> ProxyServer:
    return Rig().server


HOSTS = ["api.test", "API.test:8080", "www.test", "[::1]:80", "x.api.test", ""]
PATHS = ["/", "/v2/x", "/v2", "/static/a.css"]


async def test_the_memo_answers_as_the_table_and_forgets_it_on_a_new_table() -> None:
    server = build()
    runtime = server.pools["default"]
    server.routes = [
        (RouteConfig(pool="default", host="api.test", path="/v2"), runtime),
        (RouteConfig(pool="default", host="*.api.test"), runtime),
    ]
    for _ in range(2):  # the second round: every answer from the memo
        for host in HOSTS:
            for path in PATHS:
                assert server.route(host, path) is server.match_route(host, path), (host, path)
    assert server.route("api.test", "/v2/x") is runtime
    assert server.route("www.test", "/") is None
    server.routes = [(RouteConfig(pool="default"), runtime)]  # a reload: every request routes
    assert server.route("www.test", "/") is runtime
    assert server.route("api.test", "/v2/x") is runtime


async def test_the_memo_is_bounded() -> None:
    server = build()
    for i in range(server_mod.ROUTE_MEMO + 10):
        assert server.route("h.test", f"/{i}") is server.pools["default"]
    assert len(server._route_memo) <= server_mod.ROUTE_MEMO
