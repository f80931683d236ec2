"""The protocol classes without sockets: a real Downstream, Exchange and UpstreamConnection with
in-memory transports, fed bytes the way the loop would feed them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from limpet.proxy import builds, goaway
from limpet.proxy.http1 import MAX_PIPELINE
from limpet.proxy.states import ExState
from limpet.proxy.tcp import TcpDownstream
from limpet.proxy.tunnel import Tunnel
from limpet.proxy.upstream import UpstreamConnection
from tests.support.protocol import Rig, Transport


@pytest.fixture(params=["compiled", "python"])
async def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """Every test runs on both builds of the protocol code (limpet.proxy.builds)."""
    if request.param == "compiled":
        module, side = builds.compiled_http1(), builds.compiled_upstream()
        if module is None or side is None:
            pytest.skip("the compiled protocol code is not built (run scripts/bootstrap)")
        r = Rig(module.Downstream, side.UpstreamConnection)
    else:
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
    assert rig.down.active is not None and rig.down.active.state is not ExState.WAITING
    rig.down.data_received(b"def")
    assert rig.down.active.state is ExState.WAITING


# -- the exchange's states, stepped by real protocol events --------------------------------------


def connect_in_memory(rig: Rig) -> list[Transport]:
    """Make the pool's connect() open in-memory upstream connections; returns their transports."""
    made: list[Transport] = []

    async def connect(timeout: float) -> UpstreamConnection:
        conn = rig.connection(rig.pool)
        made.append(Transport())
        conn.connection_made(made[-1])  # type: ignore[arg-type]
        return conn

    rig.pool.connect = connect  # type: ignore[method-assign]
    return made


async def connect_task() -> asyncio.Task[object]:
    (task,) = asyncio.all_tasks() - {asyncio.current_task()}
    return task


async def test_exchange_states_follow_a_plain_get(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    ex = rig.down.active
    assert ex is not None and ex.state is ExState.WAITING
    rig.conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no")
    assert ex.state is ExState.RESPONDING
    rig.conn.data_received(b"k")
    assert ex.state is ExState.DONE and rig.down.active is None


async def test_an_upload_is_sending_until_its_last_byte(rig: Rig) -> None:
    rig.down.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    ex = rig.down.active
    assert ex is not None and ex.state is ExState.SENDING
    rig.conn.data_received(b"HTTP/1.1 103 Early Hints\r\n\r\n")
    assert ex.state is ExState.SENDING  # a 1xx does not end the upload
    rig.down.data_received(b"cd")
    assert ex.state is ExState.WAITING


async def test_an_interim_response_after_the_request_stops_the_response_timeout(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    assert rig.down.active is not None
    rig.conn.data_received(b"HTTP/1.1 103 Early Hints\r\n\r\n")
    # (read again: a fast-path exchange hands a 1xx over to the reference Exchange)
    ex = rig.down.active
    assert ex is not None and ex.state is ExState.INTERIM
    rig.conn.data_received(OK)
    assert ex.state is ExState.DONE


async def test_a_response_timeout_is_a_local_504(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    ex = rig.down.active
    assert ex is not None
    ex.response_timeout()  # what the armed timer calls
    assert rig.down.active is None and rig.backend.closed
    assert rig.client.take().startswith(b"HTTP/1.1 504 ")


async def test_a_backend_answering_before_the_upload_ended_closes_after_the_answer(
    rig: Rig,
) -> None:
    rig.down.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    ex = rig.down.active
    assert ex is not None
    rig.conn.data_received(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert ex.state is ExState.DONE and rig.client.closed


async def test_a_stale_pooled_connection_is_retried_once_on_a_fresh_one(rig: Rig) -> None:
    made = connect_in_memory(rig)
    rig.down.data_received(GET % 1)
    assert rig.down.active is not None and rig.conn.reused
    rig.conn.connection_lost(None)  # the backend had closed it while it was idle
    ex = rig.down.active  # (read again: the fast path hands a lost connection over)
    assert ex is not None and ex.state is ExState.CONNECTING and ex.retried_stale
    await (await connect_task())
    assert ex.state is ExState.WAITING and made[0].take().startswith(b"GET /1 ")
    assert rig.client.take() == b""  # nothing was answered yet


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",  # a body
    ],
)
async def test_a_written_request_that_is_not_replayable_is_never_sent_again(
    rig: Rig, request_bytes: bytes
) -> None:
    made = connect_in_memory(rig)
    rig.down.data_received(request_bytes)
    assert rig.conn.reused and rig.backend.take()  # written on the pooled connection
    rig.conn.connection_lost(None)  # the backend read it, then closed: it may have acted
    assert rig.client.take().startswith(b"HTTP/1.1 502 ")
    assert not made and not asyncio.all_tasks() - {asyncio.current_task()}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n",
    ],
)
async def test_twin_a_replayable_request_is_sent_again_on_a_fresh_connection(
    rig: Rig, request_bytes: bytes
) -> None:
    made = connect_in_memory(rig)
    rig.down.data_received(request_bytes)
    rig.conn.connection_lost(None)
    await (await connect_task())
    assert made[0].take().startswith(request_bytes.split(b" ", 1)[0])
    assert rig.client.take() == b""


async def test_a_request_refused_while_its_backend_connects_never_reaches_it(rig: Rig) -> None:
    rig.pool.idle.clear()
    made = connect_in_memory(rig)
    rig.down.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    ex = rig.down.active
    assert ex is not None and ex.state is ExState.CONNECTING
    rig.down.data_received(b"zz\r\n")  # a bad chunk-size line: the request is refused
    assert ex.state is ExState.ABORTED
    assert rig.client.take().startswith(b"HTTP/1.1 400 ")
    await (await connect_task())
    assert made[0].take() == b"" and ex.state is ExState.ABORTED


async def test_an_upgrade_answered_101_becomes_a_tunnel(rig: Rig) -> None:
    rig.down.data_received(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    ex = rig.down.active
    assert ex is not None and ex.state is ExState.WAITING  # its head was the whole request
    rig.conn.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhi"
    )
    assert ex.state is ExState.TUNNEL and rig.client.take().endswith(b"\r\n\r\nhi")
    rig.down.data_received(b"there")
    assert rig.backend.take().endswith(b"there")


# -- the tunnel: one class for HTTP upgrades and --mode tcp ---------------------------------------

UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def upgraded(rig: Rig) -> Tunnel:
    rig.down.data_received(UPGRADE)
    rig.conn.data_received(SWITCHED)
    rig.backend.take()
    rig.client.take()
    assert rig.down.tunnel is not None
    return rig.down.tunnel


async def tcp_tunnel(rig: Rig, *early: bytes, eof: bool = False) -> tuple[TcpDownstream, Transport]:
    """A --mode tcp connection to an in-memory backend, with what the client sent before it."""
    made = connect_in_memory(rig)
    down = TcpDownstream(rig.server.context, rig.server.pools["default"])
    client = Transport()
    down.connection_made(client)  # type: ignore[arg-type]
    for data in early:
        down.data_received(data)
    if eof:
        assert down.eof_received() is True
    await (await connect_task())
    assert down.tunnel is not None
    return down, made[0]


async def test_a_client_fin_in_an_upgrade_is_passed_on_and_the_backend_may_still_answer(
    rig: Rig,
) -> None:
    tunnel = upgraded(rig)
    assert rig.down.eof_received() is True  # the client's side stays open for the answer
    assert rig.backend.eof and not rig.backend.closed and not rig.client.closed
    rig.conn.data_received(b"last words")
    assert rig.client.take() == b"last words"
    rig.conn.eof_received()  # both directions ended: the tunnel ends
    assert rig.client.closed and rig.backend.closed and tunnel.ended


async def test_a_backend_fin_in_an_upgrade_is_passed_on_and_the_client_may_still_send(
    rig: Rig,
) -> None:
    tunnel = upgraded(rig)
    rig.conn.eof_received()
    assert rig.client.eof and not rig.client.closed
    rig.down.data_received(b"more")
    assert rig.backend.take() == b"more"
    assert rig.down.eof_received() is False
    assert rig.client.closed and rig.backend.closed and tunnel.ended


async def test_a_side_that_cannot_half_close_ends_the_tunnel_at_the_first_fin(rig: Rig) -> None:
    tunnel = upgraded(rig)
    rig.backend.can_eof = False  # a TLS transport has no half-close
    assert rig.down.eof_received() is False
    assert rig.client.closed and rig.backend.closed and tunnel.ended


async def test_losing_either_connection_ends_the_tunnel_once(rig: Rig) -> None:
    tunnel = upgraded(rig)
    runtime = rig.server.pools["default"]
    assert runtime.open["b0"] == 1  # the upgraded exchange's backend is open while it lasts
    rig.conn.connection_lost(None)
    assert rig.client.closed and tunnel.ended and runtime.open["b0"] == 0
    rig.down.connection_lost(None)
    assert runtime.open["b0"] == 0


async def test_back_pressure_is_coupled_both_ways_in_a_tunnel(rig: Rig) -> None:
    upgraded(rig)
    rig.down.pause_writing()  # the client reads slowly: stop reading the backend
    assert not rig.backend.reading
    rig.down.resume_writing()
    assert rig.backend.reading
    rig.conn.pause_writing()  # the backend reads slowly: stop reading the client
    assert not rig.client.reading
    rig.conn.resume_writing()
    assert rig.client.reading


async def test_an_idle_tunnel_ends_at_the_idle_timeout(rig: Rig) -> None:
    tunnel = upgraded(rig)
    tunnel._on_timer()  # fired early (bytes went by): re-armed, nothing closes
    assert not tunnel.ended
    tunnel.last_activity -= rig.server.context.timeouts.tunnel_idle
    tunnel._on_timer()
    assert tunnel.ended and rig.client.closed and rig.backend.closed


async def test_at_the_drain_deadline_an_upgrade_gets_1001_and_a_tcp_tunnel_is_aborted(
    rig: Rig,
) -> None:
    upgraded(rig)
    rig.down.go_away()
    assert rig.client.take() == goaway.TO_CLIENT and rig.client.closed
    sent = rig.backend.take()
    assert sent[:2] == b"\x88\x82" and len(sent) == 8 and rig.backend.closed
    down, backend = await tcp_tunnel(rig)
    down.go_away()
    assert down.transport is not None and down.transport.closed  # type: ignore[attr-defined]
    assert backend.take() == b""


async def test_tcp_mode_passes_early_bytes_and_an_early_fin_once_connected(rig: Rig) -> None:
    down, backend = await tcp_tunnel(rig, b"hel", b"lo", eof=True)
    assert backend.take() == b"hello" and backend.eof and not backend.closed
    assert down.tunnel is not None
    down.tunnel.conn.data_received(b"answer")
    assert down.transport is not None
    assert down.transport.take() == b"answer"  # type: ignore[attr-defined]
    down.tunnel.conn.eof_received()
    assert backend.closed and down.transport.closed  # type: ignore[attr-defined]


async def test_tcp_mode_and_an_upgrade_half_close_alike(rig: Rig) -> None:
    down, backend = await tcp_tunnel(rig)
    assert down.tunnel is not None
    down.tunnel.conn.eof_received()
    client = down.transport
    assert client is not None and client.eof and not client.closed  # type: ignore[attr-defined]
    down.data_received(b"still")
    assert backend.take() == b"still"
    assert down.eof_received() is False and backend.closed


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


# -- the response side: the wire core's response parser -----------------------------------------


async def test_a_response_split_anywhere_reaches_the_client_whole_and_the_connection_is_reused(
    rig: Rig,
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    rig.down.data_received(GET % 1)
    rig.backend.take()
    for i in range(len(chunked)):
        rig.conn.data_received(chunked[i : i + 1])
    out = rig.client.take()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n")  # re-chunked as it came
    assert rig.pool.idle == [rig.conn] and not rig.backend.closed  # back in the pool


async def test_bytes_beyond_the_response_mean_the_connection_is_not_reused(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    rig.conn.data_received(OK + b"HTTP/1.1 200 OK\r\n")  # a second answer nobody asked for
    assert rig.client.take().endswith(b"\r\n\r\nok")
    assert rig.pool.idle == [] and rig.backend.closed


async def test_twin_a_response_alone_leaves_the_connection_reusable(rig: Rig) -> None:
    rig.down.data_received(GET % 1)
    rig.conn.data_received(OK)
    assert rig.pool.idle == [rig.conn] and not rig.backend.closed


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",  # to a request that asked for no upgrade
    ],
)
async def test_broken_http_from_the_backend_is_a_502(rig: Rig, answer: bytes) -> None:
    rig.down.data_received(GET % 1)
    rig.conn.data_received(answer)
    out = rig.client.take()
    assert rig.backend.closed and rig.pool.idle == []
    if answer.startswith(b"HTTP/1.1 101"):
        # its head went down before the missing upgrade showed: the client sees the end
        assert rig.client.closed
    else:
        assert out.startswith(b"HTTP/1.1 502 ") and b"invalid HTTP from the backend" in out
