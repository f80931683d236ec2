"""The undocumented names of python-engineio, python-socketio, aiohttp and redis-py the hub relies on
(``limpet.hub.transport.PRIVATE_USES``) are all there in the installed releases; against a
release that lacks one, the check names it, says why the hub needs it and what to do."""

from __future__ import annotations

import asyncio
import importlib
import types
from typing import Any

import aiohttp.base_protocol
import aiohttp.web_protocol
import engineio
import pytest
import redis.asyncio
import socketio
from aiohttp import web
from engineio.async_socket import AsyncSocket

from limpet.hub.transport import PRIVATE_USES, missing_private_uses


def installed_owners() -> dict[str, Any]:
    """Each owner of PRIVATE_USES as installed: modules, and instances where the names are
    set per instance (in ``__init__``)."""
    server = socketio.AsyncServer(async_mode="aiohttp")
    manager = socketio.AsyncManager()
    manager.set_server(server)
    manager.initialize()
    loop = asyncio.new_event_loop()
    try:
        protocol = aiohttp.base_protocol.BaseProtocol(loop)
    finally:
        loop.close()
    return {
        "socketio.AsyncServer": server,
        "socketio.AsyncManager": manager,
        "engineio.json": importlib.import_module("engineio.json"),
        "engineio.AsyncServer": engineio.AsyncServer(async_mode="aiohttp"),
        "engineio.async_drivers.aiohttp": importlib.import_module("engineio.async_drivers.aiohttp"),
        "engineio.async_socket.AsyncSocket": AsyncSocket(server.eio, "sid"),
        "aiohttp.web.WebSocketResponse": web.WebSocketResponse(),
        "aiohttp.base_protocol.BaseProtocol": protocol,
        "aiohttp.web.AppRunner": web.AppRunner,
        "aiohttp.web.Server": server_of(web.Application()),
        "aiohttp.web_protocol.RequestHandler": aiohttp.web_protocol.RequestHandler,
        "aiohttp.http.WebSocketReader": aiohttp.http.WebSocketReader,
        "redis.asyncio.Connection": redis.asyncio.Connection(),  # (connects only when used)
    }


def server_of(app: web.Application) -> Any:
    """An aiohttp Server as AppRunner makes one (its options are per instance)."""
    loop = asyncio.new_event_loop()
    try:
        return app._make_handler(loop=loop)
    finally:
        loop.close()


def test_every_private_use_is_there_in_the_installed_releases() -> None:
    owners = installed_owners()
    assert {use.owner for use in PRIVATE_USES} <= set(owners), "a use whose owner the test lacks"
    assert missing_private_uses(owners) == []


@pytest.mark.parametrize("use", PRIVATE_USES, ids=str)
def test_twin_a_doctored_release_without_the_name_is_named(use: Any) -> None:
    """A stand-in for the owner with every name the hub uses of it but ``use.name``: the check
    fails naming that one, and only that one."""
    owners = installed_owners()
    real = owners[use.owner]
    kept = [u.name for u in PRIVATE_USES if u.owner == use.owner and u.name != use.name]
    doctored = types.SimpleNamespace(**{n: getattr(real, n) for n in kept})
    owners[use.owner] = doctored
    (message,) = missing_private_uses(owners)
    assert message.startswith(f"{use.owner}.{use.name} is gone from the installed release")
    assert use.why in message and use.where in message
