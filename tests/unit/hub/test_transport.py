"""The hub's transport adapter: packets and WebSocket frames built once, in the wire formats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from limpet.hub.fragments import UnfinishedBudget
from limpet.hub.transport import (
    BAD_PACKET_EVENT,
    UNFINISHED_REASON,
    _MeteredReader,
    _Silence,
    close_frame,
    event_packet,
    packet_class,
    shared_frame,
    text_frame,
)
from tests.support.wsframes import CONT, TEXT, client_frame

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=20), json_values)
def test_event_packet_is_what_python_socketio_decodes(event: str, payload: object) -> None:
    packet = event_packet(event, {"data": payload})
    assert packet.packet_type == 4  # Engine.IO MESSAGE
    decoded = sio_packet.Packet(encoded_packet=packet.data)
    assert decoded.packet_type == sio_packet.EVENT and decoded.id is None
    assert decoded.data == [event, {"data": payload}]
    reference = sio_packet.Packet(sio_packet.EVENT, data=[event, {"data": payload}]).encode()
    assert json.loads(packet.data[1:]) == json.loads(reference[1:])


def test_event_packet_refuses_what_json_cannot_carry() -> None:
    with pytest.raises((ValueError, TypeError)):
        event_packet("message", {1j})


def deep_publish(depth: int, ack_id: int = 7) -> str:
    """The socket.io text of a publish whose data nests ``depth`` deep, with an ack id."""
    return f'2{ack_id}["publish",{{"channel":"c","data":' + "[" * depth + "]" * depth + "}]"


@pytest.mark.parametrize("depth", [33, 5000])
def test_a_packet_past_the_depth_limit_gets_the_same_answer_on_every_python(depth: int) -> None:
    """Refused before the json module sees it: 33 deep (which it reads) and 5 000 deep (which
    it reads on 3.13 and not on 3.11 or 3.12) give the same bad-packet event, ack id kept."""
    pkt = packet_class(32)(encoded_packet=deep_publish(depth))
    assert pkt.packet_type == sio_packet.EVENT and pkt.id == 7
    assert pkt.data == [BAD_PACKET_EVENT, "data nested deeper than 32 levels"]


def test_a_packet_within_the_depth_limit_is_parsed() -> None:
    pkt = packet_class(32)(encoded_packet=deep_publish(32))
    assert pkt.data[0] == "publish" and pkt.id == 7
    assert json.dumps(pkt.data[1]["data"]) == "[" * 32 + "]" * 32


def test_without_the_rule_the_answer_depends_on_the_python() -> None:
    """The twin: the packet class without the rule lets the json module decide; 5 000 deep
    parses on 3.13 (and would reach check_shape) but not on 3.11 and 3.12."""
    text = deep_publish(5000)
    if sys.version_info >= (3, 13):
        assert sio_packet.Packet(encoded_packet=text).data[0] == "publish"
    else:
        with pytest.raises(RecursionError):
            sio_packet.Packet(encoded_packet=text)


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (5, b"\x81\x05"),  # RFC 6455 section 5.7: a single-frame unmasked text message
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e" + struct.pack("!H", 126)),
        (65535, b"\x81\x7e" + struct.pack("!H", 65535)),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
    ],
)
def test_text_frame_lengths(size: int, header: bytes) -> None:
    payload = b"x" * size
    assert text_frame(payload) == header + payload


def test_rfc_example_and_the_shared_frame_is_one_object() -> None:
    assert text_frame(b"Hello") == bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    text = "4" + "é" * 10  # utf-8 on the wire
    assert shared_frame(text) is shared_frame(text)
    assert shared_frame(text)[2:].decode() == text


def test_the_frame_cache_is_bounded_in_bytes() -> None:
    from limpet.hub import transport

    big = "4" + "x" * (2 << 20)  # larger than an eighth of the cache: framed, not kept
    assert shared_frame(big) == text_frame(big.encode())
    assert big not in transport._FRAMES
    for n in range(2000):
        shared_frame(f"4{n}" + "y" * 20_000)
        assert len(transport._FRAMES) <= transport._FRAMES_MAX
        assert transport._frames_bytes <= transport._FRAMES_BYTES


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31), json_values)
def test_ack_packet_is_what_python_socketio_decodes(ack_id: int, answer: object) -> None:
    from limpet.hub.transport import ack_packet

    packet = ack_packet(ack_id, {"answer": answer})
    assert packet.packet_type == 4  # Engine.IO MESSAGE
    decoded = sio_packet.Packet(encoded_packet=packet.data)
    assert decoded.packet_type == sio_packet.ACK and decoded.id == ack_id
    assert decoded.data == [{"answer": answer}]


class _Socket:
    """The Engine.IO socket attributes ``enqueue`` reads (python-engineio's AsyncSocket)."""

    def __init__(self, ws: object | None) -> None:
        import asyncio

        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.upgraded = True
        self.upgrading = False
        if ws is not None:
            self._hub_ws = ws


class _Ws:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.open = True

    def can_take(self) -> bool:
        return self.open

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)


def test_enqueue_writes_directly_only_when_nothing_waits_before_the_packet() -> None:
    from limpet.hub.transport import enqueue, packet_frame

    ws = _Ws()
    socket = _Socket(ws)
    first, second, third = (event_packet("message", n) for n in range(3))
    enqueue(socket, first)  # idle websocket: straight to its buffer, framed once
    assert ws.frames == [packet_frame(first)] and socket.queue.empty()
    assert packet_frame(first) is packet_frame(first)
    ws.open = False  # back-pressure (or the writer holds packets): the queue, in order
    enqueue(socket, second)
    ws.open = True
    enqueue(socket, third)  # something waits in the queue: it must not be overtaken
    assert [socket.queue.get_nowait(), socket.queue.get_nowait()] == [second, third]
    assert ws.frames == [packet_frame(first)]


@pytest.mark.parametrize("case", ["polling", "upgrading"])
def test_enqueue_queues_for_polling_and_upgrading_clients(case: str) -> None:
    from limpet.hub.transport import enqueue

    ws = _Ws()
    socket = _Socket(None if case == "polling" else ws)
    if case == "upgrading":
        socket.upgraded, socket.upgrading = False, True
    packet = event_packet("message", 1)
    enqueue(socket, packet)
    assert socket.queue.get_nowait() is packet and ws.frames == []


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1000) | st.none(), json_values)
def test_hub_packet_decodes_events_as_python_socketio_does(
    ack_id: int | None, payload: object
) -> None:
    from limpet.hub.transport import HubPacket

    encoded = sio_packet.Packet(sio_packet.EVENT, data=["publish", payload], id=ack_id).encode()
    ours, theirs = HubPacket(encoded_packet=encoded), sio_packet.Packet(encoded_packet=encoded)
    assert (ours.packet_type, ours.id, ours.data) == (theirs.packet_type, theirs.id, theirs.data)


def test_hub_packet_refuses_huge_integers_with_a_reason() -> None:
    from limpet.hub.transport import BAD_PACKET_EVENT, HubPacket

    packet = HubPacket(encoded_packet='27["publish",' + "9" * 101 + "]")
    assert packet.id == 7 and packet.data[0] == BAD_PACKET_EVENT
    assert HubPacket(encoded_packet='2["publish",' + "9" * 100 + "]").data[1] == int("9" * 100)


async def test_silence_ends_a_read_that_gets_nothing() -> None:
    """The websocket reader's one timer per connection cancels a read left without frames,
    as python-engineio's wait_for per frame did."""

    async def read() -> str:
        silence = _Silence(0.05)
        try:
            await asyncio.Event().wait()  # a client that sends nothing
        except asyncio.CancelledError:
            assert silence.expired
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()
            return "expired"
        finally:
            silence.stop()
        return "not reached"

    assert await asyncio.wait_for(read(), 10) == "expired"


async def test_silence_waits_while_frames_keep_arriving() -> None:
    """The twin: when the timer fires and a frame arrived within the limit, it is re-armed for
    what is left and nothing is cancelled; without one, the read is cancelled."""
    task = asyncio.create_task(asyncio.Event().wait())
    silence = _Silence(30)
    silence.task = task
    try:
        first = silence.handle
        silence.last = time.monotonic()  # a frame just arrived
        silence._check()
        assert not silence.expired and not task.cancelling()
        assert silence.handle is not first  # re-armed
        first.cancel()
        silence.last = time.monotonic() - 31  # nothing for longer than the limit
        silence._check()
        assert silence.expired and task.cancelling()
    finally:
        silence.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["connect", "enter", "leave", "disconnect"]),
            st.integers(0, 5),
            st.integers(0, 3),
        ),
        max_size=80,
    )
)
def test_hub_manager_keeps_the_same_rooms_as_python_socketios(
    ops: list[tuple[str, int, int]],
) -> None:
    """Differential: HubManager (rooms indexed per client) and python-socketio's own manager
    end every sequence of connects, room changes and disconnects with the same rooms."""
    import socketio

    from limpet.hub.transport import HubManager

    ours, theirs = HubManager(), socketio.AsyncManager()
    for manager in (ours, theirs):
        manager.set_server(socketio.AsyncServer())
    connected: dict[int, str] = {}
    for op, client, room in ops:
        for manager in (ours, theirs):
            sid = f"s{client}"
            if op == "connect" and client not in connected:
                manager.basic_enter_room(sid, "/", None, f"e{client}")
                manager.basic_enter_room(sid, "/", sid, f"e{client}")
            elif op == "enter" and client in connected:
                manager.basic_enter_room(sid, "/", f"r{room}")
            elif op == "leave" and client in connected:
                manager.basic_leave_room(sid, "/", f"r{room}")
            elif op == "disconnect" and client in connected:
                manager.pre_disconnect(sid, "/")
                manager.basic_disconnect(sid, "/")
        if op == "connect":
            connected.setdefault(client, f"s{client}")
        elif op == "disconnect":
            connected.pop(client, None)
        assert {ns: {r: dict(m) for r, m in rooms.items()} for ns, rooms in ours.rooms.items()} == {
            ns: {r: dict(m) for r, m in rooms.items()} for ns, rooms in theirs.rooms.items()
        }
        assert ours.pending_disconnect == theirs.pending_disconnect
    assert not [key for key in ours._joined if key[1] not in connected.values()]


class _Reader:
    """What ``_MeteredReader`` uses of aiohttp's WebSocketReader; records what reached it."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed.append(data)
        return False, b""

    def feed_eof(self) -> None:
        self.eof = True


class _Handler:
    def __init__(self) -> None:
        self.refusals = 0

    def unfinished_refused(self, budget: UnfinishedBudget) -> None:
        self.refusals += 1


def test_a_read_past_the_budget_never_reaches_aiohttp_and_fails_the_connection() -> None:
    budget = UnfinishedBudget(1000)
    readers = [_Reader(), _Reader()]
    handlers = [_Handler(), _Handler()]
    metered = [_MeteredReader(r, budget, h) for r, h in zip(readers, handlers, strict=True)]  # type: ignore[arg-type]
    first = client_frame(TEXT, b"a" * 600, fin=False)
    assert metered[0].feed_data(first) == (False, b"")
    assert metered[1].feed_data(first) == (True, b"")  # 1 200 > 1 000: refused
    assert readers[1].fed == [] and handlers[1].refusals == 1
    assert metered[1].feed_data(b"more") == (True, b"")  # the rest is dropped, refused once
    assert handlers[1].refusals == 1 and budget.refused == 1
    # complete messages still pass while the budget is taken
    assert metered[0].feed_data(client_frame(CONT, b"", fin=True)) == (False, b"")
    assert budget.total == 0
    metered[1].feed_eof()
    assert readers[1].eof


def test_twin_within_the_budget_every_read_reaches_aiohttp() -> None:
    budget = UnfinishedBudget(2000)
    reader, handler = _Reader(), _Handler()
    metered = _MeteredReader(reader, budget, handler)  # type: ignore[arg-type]
    frames = [client_frame(TEXT, b"a" * 600, fin=False), client_frame(CONT, b"b" * 600)]
    assert [metered.feed_data(f) for f in frames] == [(False, b""), (False, b"")]
    assert reader.fed == frames and handler.refusals == 0


def test_the_close_frame_is_rfc_6455s() -> None:
    frame = close_frame(1013, UNFINISHED_REASON)
    assert frame[0] == 0x88 and frame[1] == len(frame) - 2 <= 125
    assert struct.unpack("!H", frame[2:4]) == (1013,)
    assert frame[4:].decode() == UNFINISHED_REASON
    assert len(close_frame(1013, "x" * 500)) == 2 + 125
