"""The sans-IO connection core against the h2 library's client, in memory (no sockets)."""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes

from limpet.proxy.h2.core import BODY, CLOSED, END, REQUEST, RESET, TRAILERS, WRITABLE, H2Core
from limpet.proxy.h2.limits import H2Limits

REQ = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]


def pair(limits: H2Limits | None = None, **client_settings: int) -> tuple[H2Core, H2Connection]:
    core = H2Core(limits or H2Limits())
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    if client_settings:
        client.update_settings({getattr(SettingCodes, k): v for k, v in client_settings.items()})
    to_core = client.data_to_send()
    client.receive_data(core.data_to_send())
    events = core.receive(to_core, 0.0)
    client.receive_data(core.data_to_send())
    core.receive(client.data_to_send(), 0.0)
    assert all(kind != CLOSED for kind, _, _ in events)
    return core, client


def step(core: H2Core, client: H2Connection, now: float = 0.0) -> tuple[list, list]:
    """Client bytes to the core and back: (core events, client events)."""
    events = core.receive(client.data_to_send(), now)
    return events, client.receive_data(core.data_to_send())


def answering(body: bytes, **client_settings: int) -> tuple[H2Core, H2Connection]:
    """A GET on stream 1, answered 200 with ``body`` queued (sent as far as the window goes)."""
    core, client = pair(**client_settings)
    client.send_headers(1, REQ, end_stream=True)
    step(core, client)
    core.respond(1, [(b":status", b"200")], end=False)
    core.send(1, body)
    return core, client


def test_a_request_with_end_stream_is_one_event() -> None:
    core, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    events, _ = step(core, client)
    assert [(k, sid) for k, sid, _ in events] == [(REQUEST, 1)]
    fields, ended = events[0][2]
    assert ended and (b":path", b"/") in fields


def test_body_events_and_acknowledgement_reopen_the_window() -> None:
    core, client = pair()
    client.send_headers(1, [(":method", "POST"), *REQ[1:]])
    for _ in range(4):
        client.send_data(1, b"x" * 15000)
    events, _ = step(core, client)
    assert [k for k, _, _ in events] == [REQUEST, BODY, BODY, BODY, BODY]
    assert client.local_flow_control_window(1) == 65535 - 60000  # not acknowledged yet
    core.ack(1, 60000)
    client.receive_data(core.data_to_send())
    assert client.local_flow_control_window(1) == 65535  # twin of the line above
    client.end_stream(1)
    events, _ = step(core, client)
    assert [k for k, _, _ in events] == [END]


def test_responses_wait_for_the_window_and_report_writable() -> None:
    core, client = pair(INITIAL_WINDOW_SIZE=1000)
    client.send_headers(1, REQ, end_stream=True)
    step(core, client)
    core.respond(1, [(b":status", b"200")], end=False)
    core.send(1, b"y" * 5000, end=True)
    got = client.receive_data(core.data_to_send())
    assert sum(len(e.data) for e in got if isinstance(e, DataReceived)) == 1000
    assert core.pending(1) == 4000  # held, bounded by what the caller gave
    client.increment_flow_control_window(4000, stream_id=1)
    client.increment_flow_control_window(4000)
    events, got = step(core, client)
    assert (WRITABLE, 1, None) in events
    assert sum(len(e.data) for e in got if isinstance(e, DataReceived)) == 4000
    assert any(isinstance(e, StreamEnded) for e in got) and core.pending(1) == 0


def test_client_reset_is_an_event_and_forgets_held_bytes() -> None:
    core, client = answering(b"z" * 100, INITIAL_WINDOW_SIZE=0)
    assert core.pending(1) == 100
    client.reset_stream(1, error_code=8)
    events, _ = step(core, client)
    assert (RESET, 1, 8) in events and core.pending(1) == 0


def test_a_malformed_request_is_reset_as_a_stream_error_not_the_connection() -> None:
    core, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    step(core, client)
    core.reset(1, 1)
    _, got = step(core, client)
    assert any(isinstance(e, StreamReset) and e.error_code == 1 for e in got)
    client.send_headers(3, REQ, end_stream=True)
    events, _ = step(core, client)
    assert events[0][0] == REQUEST  # the connection serves on


def test_a_flood_ends_with_goaway_enhance_your_calm() -> None:
    core, client = pair(H2Limits(max_pings=2))
    for _ in range(3):
        client.ping(b"12345678")
    events, got = step(core, client)
    assert events[-1][0] == CLOSED and "PING" in str(events[-1][2])
    goaway = [e for e in got if isinstance(e, ConnectionTerminated)]
    assert goaway and goaway[0].error_code == 11


def test_graceful_goaway_lets_open_streams_finish() -> None:
    core, client = pair()
    client.send_headers(1, [(":method", "POST"), *REQ[1:]])
    step(core, client)
    core.goaway(final=False)
    got = client.receive_data(core.data_to_send())
    assert isinstance(got[0], ConnectionTerminated) and got[0].last_stream_id == 1
    # the library's client refuses to send after a GOAWAY; a real client finishes its stream:
    # build the frames by hand from a second client state (same stream, same bytes on the wire)
    from hyperframe.frame import DataFrame

    frame = DataFrame(1, flags=["END_STREAM"])
    frame.data = b"done"
    events = core.receive(frame.serialize(), 0.0)
    assert [k for k, _, _ in events] == [BODY, END]
    core.respond(1, [(b":status", b"200")], end=True)
    assert core.data_to_send()  # the answer still goes out


def test_a_huge_encoder_table_asked_by_the_client_is_capped() -> None:
    core, client = pair(HEADER_TABLE_SIZE=1 << 30)
    assert core.conn.encoder.header_table_size <= 4096
    client.send_headers(1, REQ, end_stream=True)
    step(core, client)
    core.respond(1, [(b":status", b"200"), (b"x", b"y" * 3000)], end=True)
    got = client.receive_data(core.data_to_send())
    assert any(isinstance(e, ResponseReceived) for e in got)


def test_acknowledging_a_closed_streams_bytes_still_reopens_the_connection_window() -> None:
    """What H2Stream.give_back_window relies on: the library updates the connection's window
    for bytes of a stream that is already closed."""
    core, client = pair()
    client.send_headers(1, [(":method", "POST"), *REQ[1:]])
    for _ in range(3):
        client.send_data(1, b"x" * 15000)
    step(core, client)
    core.reset(1)
    client.receive_data(core.data_to_send())
    before = client.outbound_flow_control_window
    core.ack(1, 45000)  # (the library updates a window once half of it is used)
    client.receive_data(core.data_to_send())
    assert client.outbound_flow_control_window == before + 45000


def test_a_stream_over_the_limit_is_refused_alone() -> None:
    """RFC 9113 §5.1.2: a stream error (REFUSED_STREAM), not the library's connection error."""
    from hpack import Encoder
    from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

    core, _ = pair(H2Limits(max_concurrent_streams=2))
    encoder = Encoder()
    raw = b""
    for sid in (1, 3, 5):  # (the library's client would not send the third)
        frame = HeadersFrame(sid, flags=["END_HEADERS"])
        frame.data = encoder.encode([(":method", "POST"), *REQ[1:]])
        raw += frame.serialize()
    events = core.receive(raw, 0.0)
    assert [(k, sid) for k, sid, _ in events] == [(REQUEST, 1), (REQUEST, 3)]
    assert not core.closed
    out = core.data_to_send()
    frames = []
    while out:
        frame, length = Frame.parse_frame_header(memoryview(out[:9]))
        frame.parse_body(memoryview(out[9 : 9 + length]))
        frames.append(frame)
        out = out[9 + length :]
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(5, 7)]


def test_resets_the_client_provokes_count_like_the_ones_it_sends() -> None:
    """MadeYouReset (CVE-2025-8671): stream errors we send for malformed requests are counted."""
    core, client = pair(H2Limits(max_resets=3))
    for sid in (1, 3, 5, 7):
        client.send_headers(sid, REQ, end_stream=True)
        step(core, client)
        core.reset(sid, 1)  # PROTOCOL_ERROR: what a malformed request gets
    assert core.closed and "malformed" in core.reason
    twin, twin_client = pair(H2Limits(max_resets=3))
    for sid in (1, 3, 5, 7):
        twin_client.send_headers(sid, REQ, end_stream=True)
        step(twin, twin_client)
        twin.reset(sid)  # CANCEL: our own choice (a backend gone), not the client's doing
    assert not twin.closed


def test_trailers_wait_with_the_body_for_the_window_then_end_the_stream() -> None:
    core, client = answering(b"b" * 30, INITIAL_WINDOW_SIZE=10)
    core.trailers(1, [(b"grpc-status", b"0")])
    got = client.receive_data(core.data_to_send())
    assert not any(isinstance(e, TrailersReceived) for e in got)  # the body goes first
    client.increment_flow_control_window(100, stream_id=1)
    _, got = step(core, client)
    trailers = [e for e in got if isinstance(e, TrailersReceived)]
    assert trailers and trailers[0].headers == [(b"grpc-status", b"0")]
    assert any(isinstance(e, StreamEnded) for e in got) and core.pending(1) == 0


def test_twin_end_without_trailers_sends_none() -> None:
    core, client = answering(b"b" * 30)
    core.end(1)
    got = client.receive_data(core.data_to_send())
    assert not any(isinstance(e, TrailersReceived) for e in got)
    assert any(isinstance(e, StreamEnded) for e in got)


def test_informational_headers_precede_the_final_response() -> None:
    core, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    step(core, client)
    core.respond(1, [(b":status", b"103"), (b"link", b"</a.css>")], end=False)
    core.respond(1, [(b":status", b"200")], end=True)
    got = client.receive_data(core.data_to_send())
    kinds = [
        type(e) for e in got if isinstance(e, (InformationalResponseReceived, ResponseReceived))
    ]
    assert kinds == [InformationalResponseReceived, ResponseReceived]


def test_request_trailers_are_an_event_before_the_end() -> None:
    core, client = pair()
    client.send_headers(1, [(":method", "POST"), *REQ[1:]])
    client.send_data(1, b"abc")
    client.send_headers(1, [("grpc-timeout", "1S")], end_stream=True)
    events, _ = step(core, client)
    assert [k for k, _, _ in events] == [REQUEST, BODY, TRAILERS, END]
    assert events[2][2] == [(b"grpc-timeout", b"1S")]
