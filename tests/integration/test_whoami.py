"""`limpet whoami` as DESIGN.md specifies it: the name on the first line, and a WebSocket echo."""

from __future__ import annotations

import urllib.request

import pytest

from tests.support.procs import Procs


def test_get_any_path_answers_name_first(procs: Procs) -> None:
    url = procs.whoami("alpha")
    for path in ("/", "/some/path?x=1"):
        with urllib.request.urlopen(url + path, timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert resp.read().decode().splitlines()[0] == "alpha"


async def test_websocket_echo_prefixes_name(procs: Procs) -> None:
    websockets = pytest.importorskip("websockets")
    url = procs.whoami("beta").replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as ws:
        await ws.send("hello")
        assert await ws.recv() == "beta: hello"


def test_a_field_value_that_is_not_utf8_is_echoed_not_a_500(procs: Procs) -> None:
    """A Cookie with byte 0xE9 (latin-1 'é') used to make whoami answer 500."""
    from tests.support.rawhttp import recv_head

    url = procs.whoami("gamma")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    import socket

    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=\xe9\r\nConnection: close\r\n\r\n")
        head, rest = recv_head(s)
        body = rest
        while chunk := s.recv(4096):
            body += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body.splitlines()[0] == b"gamma"
    assert b"Cookie: a=\\xe9" in body


def test_fail_header_makes_it_answer_500(procs: Procs) -> None:
    """The twin of a healthy backend, for passive-health tests: 500 only with the header."""
    import urllib.error

    url = procs.whoami("delta", "127.0.0.1", None, "--fail-header", "X-Fail")
    req = urllib.request.Request(url + "/", headers={"X-Fail": "1"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 500 and err.value.read().decode().splitlines()[0] == "delta"
    with urllib.request.urlopen(url + "/", timeout=5) as resp:
        assert resp.status == 200
