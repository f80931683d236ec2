"""SANS-IO: one HTTP/2 server connection: bytes in, events out; calls in, bytes to send.

The protocol state machine, HPACK and framing are the ``h2`` library's (python-hyper, the
reference pure-Python implementation); this class sets it up as limpet's front door and adds
what a proxy needs around it:

- settings (RFC 9113 §6.5.2): MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, HEADER_TABLE_SIZE,
  INITIAL_WINDOW_SIZE from ``H2Limits``, and ENABLE_CONNECT_PROTOCOL (RFC 8441 §3) so browsers
  carry WebSockets on streams; a client's HEADER_TABLE_SIZE for our encoder is capped;
- the attack counters of ``FrameGuard`` ahead of the parser: over a bound, GOAWAY
  ENHANCE_YOUR_CALM and the connection ends;
- send-side flow control: response bytes go out as the client's windows allow; the rest waits
  in a per-stream buffer whose size ``pending`` reports, so the I/O side stops reading the
  backend past ``H2Limits.send_buffer`` (no unbounded buffering for a client that holds its
  window at zero);
- receive-side flow control left to the caller: request bytes are acknowledged (``ack``) only
  once passed on upstream, so a slow backend shuts the client's window.

``receive`` returns ``(kind, stream_id, value)`` events: REQUEST (the decoded fields, and whether END_STREAM came with them), BODY
(bytes), END (the client's half of the stream ended), TRAILERS (fields), RESET (the client
reset the stream, or the stream died), WRITABLE (its window opened: more may be sent), and
CLOSED (value: the reason; the connection is over, the GOAWAY is in ``data_to_send``).
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from limpet.proxy.h2.guard import FrameGuard
from limpet.proxy.h2.limits import H2Limits

REQUEST, BODY, END, TRAILERS, RESET, WRITABLE, CLOSED = 1, 2, 3, 4, 5, 6, 7
Event = tuple[int, int, object]

NO_ERROR = ErrorCodes.NO_ERROR
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
CANCEL = ErrorCodes.CANCEL
ENHANCE_YOUR_CALM = ErrorCodes.ENHANCE_YOUR_CALM
INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM


class H2Core:
    """The server side of one HTTP/2 connection; see the module docstring."""

    __slots__ = (
        "closed",
        "conn",
        "ending",
        "guard",
        "limits",
        "now",
        "outbox",
        "queued",
        "reason",
    )

    def __init__(self, limits: H2Limits, *, connect_protocol: bool = True) -> None:
        self.limits = limits
        self.guard = FrameGuard(limits)
        config = H2Configuration(
            client_side=False,
            header_encoding=None,  # fields stay bytes, as the wire core's are
            # messages.request validates (a malformed request is a stream error, RFC 9113
            # §8.1.1; the library would end the whole connection)
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            # what we send is built here (messages.response_fields: lower-case names, no
            # connection-specific fields): checking it again cost a third of a response
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = self.conn = H2Connection(config=config)
        initial = {
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            SettingCodes.HEADER_TABLE_SIZE: limits.header_table_size,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window,
        }
        if connect_protocol:
            initial[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        conn.local_settings = Settings(client=False, initial_values=initial)
        # HPACK bombs: a header list decoded past this raises before it is built
        conn.decoder.max_header_list_size = limits.max_header_list_size
        conn.decoder.max_allowed_table_size = limits.header_table_size
        conn.initiate_connection()  # (our SETTINGS frame, with the values above, is written)
        # The library ends the whole connection (PROTOCOL_ERROR) for a stream over its own
        # MAX_CONCURRENT_STREAMS; RFC 9113 §5.1.2 makes it a stream error, and a client that
        # raced our SETTINGS should lose one stream, not all of them. So the library's copy
        # is lifted once ours is on the wire, and ``receive`` refuses the stream itself.
        conn.local_settings = Settings(
            client=False, initial_values={**initial, SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1}
        )
        self.outbox: dict[int, bytearray] = {}  # response bytes waiting for window
        #: streams to end once their outbox is sent: with their trailer fields, or None
        self.ending: dict[int, list[tuple[bytes, bytes]] | None] = {}
        self.closed = False
        self.reason = ""
        self.queued = b""  # frames written here, ahead of the library's next bytes
        self.now = 0.0  # the time of the last read (the rate counters' clock)

    def __repr__(self) -> str:
        return (
            f"H2Core(streams={self.conn.open_inbound_streams}, "
            f"held={sum(map(len, self.outbox.values()))}, closed={self.closed})"
        )

    # -- bytes in ---------------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Event]:
        """Parse ``data`` from the client; the events, in order."""
        if self.closed:
            return []
        self.now = now
        why = self.guard.feed(data, now)
        if why is not None:
            return [self.terminate(ENHANCE_YOUR_CALM, why)]
        try:
            h2_events = self.conn.receive_data(data)
        except ProtocolError as exc:
            # the library queued its GOAWAY (with the error code the RFC names)
            self.closed = True
            self.reason = f"protocol error: {exc}"
            return [(CLOSED, 0, self.reason)]
        out: list[Event] = []
        skip_end: set[int] = set()
        refused: set[int] = set()
        opened = self.conn.open_inbound_streams - sum(
            isinstance(ev, RequestReceived) for ev in h2_events
        )
        for ev in h2_events:
            if refused and getattr(ev, "stream_id", 0) in refused:
                if isinstance(ev, DataReceived):
                    self.ack(ev.stream_id, ev.flow_controlled_length)
                continue
            if isinstance(ev, DataReceived):
                sid = ev.stream_id
                padding = ev.flow_controlled_length - len(ev.data)
                if padding:
                    self.ack(sid, padding)
                if ev.data:
                    out.append((BODY, sid, ev.data))
            elif isinstance(ev, RequestReceived):
                # the library counts after the whole read; the streams this read opened are
                # taken in order, the first ones up to the limit
                opened += 1
                if opened > self.limits.max_concurrent_streams:
                    opened -= 1
                    self.reset(ev.stream_id, REFUSED_STREAM)  # (safe to retry: not processed)
                    refused.add(ev.stream_id)
                    continue
                # (fields, ended): END_STREAM on the HEADERS frame says no body follows
                ended = ev.stream_ended is not None
                out.append((REQUEST, ev.stream_id, (ev.headers, ended)))
                if ended:
                    skip_end.add(ev.stream_id)
            elif isinstance(ev, StreamEnded):
                if ev.stream_id in skip_end:
                    skip_end.discard(ev.stream_id)
                else:
                    out.append((END, ev.stream_id, None))
            elif isinstance(ev, TrailersReceived):
                out.append((TRAILERS, ev.stream_id, ev.headers))
            elif isinstance(ev, StreamReset):
                self.forget(ev.stream_id)
                out.append((RESET, ev.stream_id, ev.error_code))
            elif isinstance(ev, WindowUpdated):
                out += self.window_opened(ev.stream_id)
            elif isinstance(ev, RemoteSettingsChanged):
                self.settings_changed(ev)
                out += self.window_opened(0)
            elif isinstance(ev, ConnectionTerminated):
                self.closed = True
                self.reason = f"the client sent GOAWAY ({_name(ev.error_code)})"
                out.append((CLOSED, 0, self.reason))
                break
        return out

    def settings_changed(self, ev: RemoteSettingsChanged) -> None:
        table = ev.changed_settings.get(SettingCodes.HEADER_TABLE_SIZE)
        if table is not None and table.new_value > self.limits.header_table_size:
            # the client may offer our encoder a huge dynamic table; HPACK state per
            # connection stays at our bound (RFC 7541 §4.2 lets the encoder use less)
            self.conn.encoder.header_table_size = self.limits.header_table_size

    def window_opened(self, stream_id: int) -> list[Event]:
        """Send what waited for window; WRITABLE for each stream that sent something."""
        sids = list(self.outbox) if stream_id == 0 else [stream_id]
        out: list[Event] = []
        for sid in sids:
            if sid in self.outbox and self.push(sid):
                out.append((WRITABLE, sid, None))
        return out

    # -- calls out --------------------------------------------------------------------------------
    def respond(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        """A response's HEADERS (an informational one, 1xx, any number of times before the
        final one: RFC 9113 §8.1)."""
        try:
            self.conn.send_headers(stream_id, fields, end_stream=end)
        except (StreamClosedError, ProtocolError):
            self.forget(stream_id)

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Queue response body bytes; as much as the windows allow goes out now."""
        box = self.outbox.get(stream_id)
        if box is None:
            box = self.outbox[stream_id] = bytearray()
        box += data
        if end:
            self.ending[stream_id] = None
        self.push(stream_id)

    def end(self, stream_id: int) -> None:
        """End our half of the stream once its queued bytes are sent."""
        if stream_id in self.outbox:
            self.ending[stream_id] = None
            self.push(stream_id)
            return
        try:
            self.conn.end_stream(stream_id)
        except (StreamClosedError, ProtocolError):
            pass

    def trailers(self, stream_id: int, fields: list[tuple[bytes, bytes]]) -> None:
        """Send trailer fields: a HEADERS frame with END_STREAM (RFC 9113 §8.1), after the
        queued body (they wait with it for the client's window: HEADERS are not flow
        controlled, but nothing may follow them)."""
        if stream_id in self.outbox:
            self.ending[stream_id] = fields
            self.push(stream_id)
            return
        self.respond(stream_id, fields, end=True)

    def push(self, stream_id: int) -> bool:
        """Send queued bytes within the windows; True when any went out."""
        box = self.outbox.get(stream_id)
        if box is None:
            return False
        conn = self.conn
        sent = 0
        try:
            window = conn.local_flow_control_window(stream_id)
            frame = conn.max_outbound_frame_size
            while box and window > 0:
                n = min(len(box), window, frame)
                conn.send_data(stream_id, bytes(box[:n]))
                del box[:n]
                window -= n
                sent += n
            if not box:
                del self.outbox[stream_id]
                if stream_id in self.ending:
                    tail = self.ending.pop(stream_id)
                    if tail:
                        conn.send_headers(stream_id, tail, end_stream=True)
                    else:
                        conn.end_stream(stream_id)
        except (StreamClosedError, ProtocolError):
            self.forget(stream_id)
        return sent > 0

    def pending(self, stream_id: int) -> int:
        """Response bytes of ``stream_id`` waiting for the client's window."""
        box = self.outbox.get(stream_id)
        return len(box) if box is not None else 0

    def ack(self, stream_id: int, size: int) -> None:
        """``size`` request bytes were passed on: the client may send as many again."""
        try:
            self.conn.acknowledge_received_data(size, stream_id)
        except (StreamClosedError, ProtocolError):
            pass

    def reset(self, stream_id: int, code: ErrorCodes = CANCEL) -> None:
        if code == PROTOCOL_ERROR and not self.closed and self.guard.resets.hit(self.now):
            # resets the client provokes (malformed requests) count with the ones it sends:
            # the "MadeYouReset" variant of Rapid Reset (CVE-2025-8671)
            self.terminate(ENHANCE_YOUR_CALM, "too many stream resets (malformed requests)")
            return
        self.forget(stream_id)
        try:
            self.conn.reset_stream(stream_id, error_code=code)
        except (StreamClosedError, ProtocolError):
            pass

    def forget(self, stream_id: int) -> None:
        self.outbox.pop(stream_id, None)
        self.ending.pop(stream_id, None)

    def goaway(self, code: ErrorCodes = NO_ERROR, reason: str = "", *, final: bool = True) -> None:
        """GOAWAY with the last stream id we took (RFC 9113 §6.8): streams above it were not
        processed and may be retried elsewhere; those below it finish.

        ``final``: the connection ends now (the library's state machine closes). A graceful
        one (drain) is written as a frame of its own, because the library accepts no frame
        after its own GOAWAY, and the streams below the last id must still get their DATA and
        WINDOW_UPDATEs; new streams are then refused by the caller.
        """
        data = reason.encode()[:256]
        last = self.conn.highest_inbound_stream_id
        if final:
            self.conn.close_connection(
                error_code=code, additional_data=data or None, last_stream_id=last
            )
            return
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = code
        frame.additional_data = data
        self.queued += self.conn.data_to_send() + frame.serialize()

    def terminate(self, code: ErrorCodes, reason: str) -> Event:
        """End the connection: GOAWAY with ``code``; the CLOSED event to return."""
        self.goaway(code, reason)
        self.closed = True
        self.reason = reason
        self.outbox.clear()
        return (CLOSED, 0, reason)

    def data_to_send(self) -> bytes:
        queued = self.queued
        if queued:
            self.queued = b""
            return queued + self.conn.data_to_send()
        return self.conn.data_to_send()

    @property
    def last_stream_id(self) -> int:
        return self.conn.highest_inbound_stream_id


def _name(code: object) -> str:
    """An error code's name (RFC 9113 §7), or its number when the RFC has none."""
    try:
        return ErrorCodes(code).name  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return str(code)
