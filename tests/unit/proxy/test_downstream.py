"""The protocol classes without sockets: a real Downstream, Exchange and UpstreamConnection with
in-memory transports, fed bytes the way the loop would feed them."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from limpet.proxy import cli
from limpet.proxy.http1 import MAX_PIPELINE, Downstream
from limpet.proxy.server import ProxyServer
from limpet.proxy.upstream import UpstreamConnection


class Transport:
    """What a protocol class uses of an asyncio transport; records what was written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data

    def get_extra_info(self, key: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if key == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Rig:
    """One downstream connection and one idle upstream connection to backend b0."""

    def __init__(self) -> None:
        parser = argparse.ArgumentParser()
        cli.configure(parser)
        args = parser.parse_args(
            [
                "--backend",
                "b0=http://127.0.0.1:9",
                "--secret",
                "s",
                "--no-health",
                "--affinity",
                "none",
            ]
        )
        self.server = ProxyServer(cli.resolve(args), b"s", admin=False)
        self.pool = self.server.pools["default"].upstreams["b0"]
        self.down = Downstream(self.server.context)
        self.client = Transport()
        self.down.connection_made(self.client)  # type: ignore[arg-type]
        self.conn, self.backend = self.upstream()

    def upstream(self) -> tuple[UpstreamConnection, Transport]:
        conn = UpstreamConnection(self.pool)
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        self.pool.put(conn)
        return conn, transport


@pytest.fixture
async def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.down.connection_lost(None)


GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_pipelined_requests_go_upstream_one_at_a_time_in_order(rig: Rig) -> None:
    rig.down.data_received(GET % 1 + GET % 2 + GET % 3)
    assert rig.backend.take().startswith(b"GET /1 ")  # only the first
    for n in (2, 3):
        rig.conn.data_received(OK)
        assert rig.backend.take().startswith(b"GET /%d " % n)
    rig.conn.data_received(OK)
    assert rig.client.take().count(b"HTTP/1.1 200 OK") == 3


async def test_a_pipelining_client_is_not_read_beyond_the_bound(rig: Rig) -> None:
    rig.down.data_received((GET % 0) * 50)
    assert rig.down.parser.pending == MAX_PIPELINE and not rig.client.reading
    assert rig.down.parser.buffered == (50 - MAX_PIPELINE) * len(GET % 0)
    rig.conn.data_received(OK)  # one answered: one more parsed, still not read
    assert rig.down.parser.pending == MAX_PIPELINE and not rig.client.reading


async def test_no_new_response_while_the_client_is_not_reading(rig: Rig) -> None:
    rig.down.data_received(GET % 1 + GET % 2)
    rig.backend.take()
    rig.down.pause_writing()  # the client's socket buffer is full
    rig.conn.data_received(OK)
    assert rig.backend.take() == b"", "the next request went upstream while the client was full"
    rig.down.resume_writing()
    assert rig.backend.take().startswith(b"GET /2 ")


async def test_head_response_ends_at_its_head(rig: Rig) -> None:
    rig.down.data_received(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    rig.conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    answer = rig.client.take()
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\n")
    assert rig.down.active is None  # ready for the next request


async def test_interim_responses_are_relayed_before_the_final_one(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    rig.conn.data_received(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
    answer = rig.client.take()
    assert answer.index(b"103 Early Hints") < answer.index(b"200 OK") and answer.endswith(b"ok")


async def test_close_delimited_body_is_rechunked_and_ends_with_the_close(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    rig.conn.data_received(b"HTTP/1.1 200 OK\r\n\r\nuntil-")
    rig.conn.data_received(b"close")
    rig.conn.connection_lost(None)
    answer = rig.client.take()
    assert b"Transfer-Encoding: chunked" in answer
    assert answer.endswith(b"6\r\nuntil-\r\n5\r\nclose\r\n0\r\n\r\n") and not rig.client.closed


async def test_bad_chunk_line_in_the_read_of_its_head_sends_nothing_upstream(rig: Rig) -> None:
    rig.down.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    assert rig.backend.take() == b""
    assert rig.client.take().startswith(b"HTTP/1.1 400 ")


async def test_chunked_head_waits_for_its_first_chunk_line(rig: Rig) -> None:
    rig.down.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert rig.backend.take() == b""
    rig.down.data_received(b"3\r\nabc\r\n0\r\n\r\n")
    sent = rig.backend.take()
    assert sent.startswith(b"POST / ") and sent.endswith(b"3\r\nabc\r\n0\r\n\r\n")


async def test_post_whose_upstream_closes_unanswered_is_502_not_retried(rig: Rig) -> None:
    rig.down.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    rig.backend.take()
    rig.conn.reused = False  # a fresh connection: no stale-connection retry applies
    rig.conn.connection_lost(ConnectionResetError())
    assert rig.client.take().startswith(b"HTTP/1.1 502 ")


async def test_response_timeout_is_armed_only_once_the_request_was_sent(rig: Rig) -> None:
    rig.down.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    assert rig.backend.take().endswith(b"abc")
    assert rig.down.active is not None and not rig.down.active.timer
    rig.down.data_received(b"def")
    assert rig.down.active.timer


async def test_stopping_an_idle_keep_alive_connection_answers_its_next_request_then_closes(
    rig: Rig,
) -> None:
    rig.down.data_received(GET % 1)
    rig.conn.data_received(OK)
    rig.backend.take()
    assert b"Connection: close" not in rig.client.take()  # kept alive, now idle
    rig.server.context.stopping = True
    rig.down.drain()
    assert not rig.client.closed  # a request may be on its way: not reset
    rig.down.data_received(GET % 2)  # it was
    assert rig.backend.take().startswith(b"GET /2 ")
    rig.conn.data_received(OK)
    answer = rig.client.take()
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close\r\n" in answer
    assert rig.client.closed


async def test_stopping_a_half_closed_connection_closes_it_at_once(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    rig.down.eof_received()
    rig.server.context.stopping = True
    rig.down.drain()
    assert rig.client.closed
