"""A hostile HTTP/2 client for the attack tests, built on the h2 project's own libraries
(hyperframe for frames, hpack for header blocks): it sends frames no polite client would
(floods, endless CONTINUATIONs, resets by the hundred) and reads back what the server sends.
Everything else in the suite speaks HTTP/2 through real clients (curl, nghttp, Chromium).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7


@dataclass
class Seen:
    """What the server sent, as read so far."""

    settings: dict[int, int] = field(default_factory=dict)
    goaway: GoAwayFrame | None = None
    eof: bool = False
    pings: int = 0
    resets: dict[int, int] = field(default_factory=dict)  # stream -> error code
    status: dict[int, int] = field(default_factory=dict)  # stream -> :status
    body: dict[int, int] = field(default_factory=dict)  # stream -> DATA bytes
    data: dict[int, bytes] = field(default_factory=dict)  # stream -> the first 4 KB of DATA
    ended: set[int] = field(default_factory=set)


class Hostile:
    """One raw HTTP/2 connection; ``read_until`` waits on what the server sends."""

    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.encoder = Encoder()
        self.seen = Seen()
        self.buf = b""
        self.decoder_hpack = None
        self.auto_window = True
        first = SettingsFrame(0)
        first.settings = settings or {}
        self.sock.sendall(PREFACE + first.serialize())
        self.read_until(lambda s: bool(s.settings))
        self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------------
    def send(self, *frames: Frame | bytes) -> None:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        try:
            self.sock.sendall(data)
        except OSError:
            self.seen.eof = True  # the server closed while we were still flooding

    def block(
        self, path: str = "/", method: str = "GET", extra: list[tuple[str, str]] | None = None
    ) -> bytes:
        fields = [
            (":method", method),
            (":scheme", "http"),
            (":authority", "h2.test"),
            (":path", path),
        ]
        return self.encoder.encode(fields + (extra or []))

    def headers(
        self, sid: int, block: bytes, *, end_stream: bool = True, end_headers: bool = True
    ) -> HeadersFrame:
        flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
        frame = HeadersFrame(sid, flags=flags)
        frame.data = block
        return frame

    def websocket(self, sid: int, path: str = "/ws") -> HeadersFrame:
        """An extended CONNECT (RFC 8441 §4) for a WebSocket on stream ``sid``."""
        fields = [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":authority", "h2.test"), (":path", path), ("sec-websocket-version", "13"),
        ]  # fmt: skip
        return self.headers(sid, self.encoder.encode(fields), end_stream=False)

    @staticmethod
    def ws_text(text: str) -> bytes:
        """A masked WebSocket text frame (RFC 6455 §5.2), as a client sends it."""
        payload, key = text.encode(), b"\x01\x02\x03\x04"
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return bytes([0x81, 0x80 | len(payload)]) + key + masked

    def request(self, sid: int, path: str = "/", **kw: object) -> HeadersFrame:
        return self.headers(sid, self.block(path, **kw))  # type: ignore[arg-type]

    @staticmethod
    def continuation(sid: int, data: bytes, *, end: bool = False) -> ContinuationFrame:
        frame = ContinuationFrame(sid, flags=["END_HEADERS"] if end else [])
        frame.data = data
        return frame

    @staticmethod
    def data(sid: int, data: bytes = b"", *, end: bool = False) -> DataFrame:
        frame = DataFrame(sid, flags=["END_STREAM"] if end else [])
        frame.data = data
        return frame

    @staticmethod
    def rst(sid: int, code: int = 0x8) -> RstStreamFrame:
        frame = RstStreamFrame(sid)
        frame.error_code = code
        return frame

    @staticmethod
    def ping(opaque: bytes = b"12345678") -> PingFrame:
        frame = PingFrame(0)
        frame.opaque_data = opaque
        return frame

    @staticmethod
    def settings(values: dict[int, int] | None = None) -> SettingsFrame:
        frame = SettingsFrame(0)
        frame.settings = values or {}
        return frame

    @staticmethod
    def window_update(sid: int, increment: int) -> WindowUpdateFrame:
        frame = WindowUpdateFrame(sid)
        frame.window_increment = increment
        return frame

    # -- reading --------------------------------------------------------------------------------
    def read_until(self, done: object, timeout: float = 10.0) -> Seen:
        """Read frames until ``done(seen)`` holds, the server ends the connection, or timeout."""
        from hpack import Decoder

        if self.decoder_hpack is None:
            self.decoder_hpack = Decoder()
            self.decoder_hpack.max_header_list_size = 1 << 24
        deadline = time.monotonic() + timeout
        seen = self.seen
        while not done(seen) and not seen.eof:  # type: ignore[operator]
            while len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buf[9 : 9 + length]))
                self.buf = self.buf[9 + length :]
                self.note(frame)
            if done(seen):  # type: ignore[operator]
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                seen.eof = True
                break
            self.buf += chunk
        return seen

    def note(self, frame: Frame) -> None:
        seen = self.seen
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            seen.settings.update(frame.settings)
        elif isinstance(frame, GoAwayFrame):
            seen.goaway = frame
        elif isinstance(frame, PingFrame) and "ACK" in frame.flags:
            seen.pings += 1
        elif isinstance(frame, RstStreamFrame):
            seen.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, HeadersFrame):
            assert self.decoder_hpack is not None
            fields = dict(self.decoder_hpack.decode(frame.data, raw=True))
            if b":status" in fields:
                seen.status[frame.stream_id] = int(fields[b":status"])
            if "END_STREAM" in frame.flags:
                seen.ended.add(frame.stream_id)
        elif isinstance(frame, DataFrame):
            seen.body[frame.stream_id] = seen.body.get(frame.stream_id, 0) + len(frame.data)
            kept = seen.data.get(frame.stream_id, b"")
            if len(kept) < 4096:
                seen.data[frame.stream_id] = kept + frame.data[: 4096 - len(kept)]
            if "END_STREAM" in frame.flags:
                seen.ended.add(frame.stream_id)
            if frame.data and self.auto_window:
                # read everything we are sent (tests of a shut window send no updates)
                self.send(
                    self.window_update(0, len(frame.data)),
                    self.window_update(frame.stream_id, len(frame.data)),
                )

    def alive(self) -> bool:
        """A PING answered: the connection still serves."""
        before = self.seen.pings
        self.send(self.ping(b"alive?!!"))
        seen = self.read_until(lambda s: s.pings > before or s.goaway is not None)
        return seen.pings > before and seen.goaway is None

    def ended_with(self) -> int | None:
        """Wait for the server's GOAWAY; its error code (None: none came)."""
        seen = self.read_until(lambda s: s.goaway is not None)
        return seen.goaway.error_code if seen.goaway is not None else None
