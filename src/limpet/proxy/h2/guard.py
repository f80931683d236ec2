"""SANS-IO: frame-level attack counters over the raw bytes a client sends, before ``h2`` parses.

The ``h2`` library hides what these need: it answers PINGs and SETTINGS itself, joins
CONTINUATION frames into one event (buffering them until END_HEADERS), and says nothing of
empty frames. So the 9-byte frame headers (RFC 9113 §4.1) are read here, as the bytes arrive,
and only them: payloads are skipped by count, never held, so the guard's own memory is 9 bytes.

It counts, per connection: RST_STREAM (Rapid Reset, CVE-2023-44487), PING and SETTINGS
(CVE-2019-9512, -9515), PRIORITY (CVE-2019-9513), empty DATA/HEADERS/CONTINUATION frames
(CVE-2019-9518), and per header block: CONTINUATION frames and bytes (CVE-2024-27316, -27983
and the other CONTINUATION floods). ``feed`` returns why the connection must end, or None.
WINDOW_UPDATE is not counted: a client downloading fast sends one per DATA frame it reads, so
no fixed rate tells a flood from a fast link (the frames cost a dict update each).
"""

from __future__ import annotations

from limpet.proxy.h2.limits import H2Limits, Rate

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0, 1, 2, 3, 4
PING, CONTINUATION = 6, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


class FrameGuard:
    """Reads frame headers from the client's byte stream and counts what floods are made of."""

    __slots__ = (
        "block_bytes",
        "continuations",
        "empty",
        "head",
        "limits",
        "pings",
        "preface_left",
        "priority",
        "resets",
        "settings",
        "skip",
    )

    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        self.preface_left = len(PREFACE)  # the client preface is not a frame
        self.head = b""  # a frame header split across reads (at most 8 bytes)
        self.skip = 0  # payload bytes of the current frame still to pass over
        self.block_bytes = 0  # the open header block (HEADERS without END_HEADERS so far)
        self.continuations = 0
        w = limits.window
        self.resets = Rate(limits.max_resets, w)
        self.pings = Rate(limits.max_pings, w)
        self.settings = Rate(limits.max_settings, w)
        self.priority = Rate(limits.max_priority, w)
        self.empty = Rate(limits.max_empty_frames, w)

    def __repr__(self) -> str:
        return (
            f"FrameGuard(resets={self.resets.count}, pings={self.pings.count}, "
            f"settings={self.settings.count}, empty={self.empty.count})"
        )

    def feed(self, data: bytes, now: float) -> str | None:
        """Account for ``data``; the reason to end the connection, or None."""
        view = memoryview(data)
        pos, end = 0, len(data)
        if self.preface_left:
            used = min(self.preface_left, end)
            self.preface_left -= used
            pos = used
        while pos < end:
            if self.skip:
                used = min(self.skip, end - pos)
                self.skip -= used
                pos += used
                continue
            need = 9 - len(self.head)
            if end - pos < need:
                self.head += bytes(view[pos:end])
                return None
            header = self.head + bytes(view[pos : pos + need]) if self.head else data[pos : pos + 9]
            self.head = b""
            pos += need
            length = int.from_bytes(header[0:3], "big")
            self.skip = length
            why = self.frame(header[3], header[4], length, now)
            if why is not None:
                return why
        return None

    def frame(self, kind: int, flags: int, length: int, now: float) -> str | None:
        """One frame header: the counters it moves."""
        limits = self.limits
        if kind == HEADERS:
            self.block_bytes = length
            self.continuations = 0
            if length > limits.max_header_block:
                return f"a header block over {limits.max_header_block} bytes"
            if not length and not flags & END_HEADERS and self.empty.hit(now):
                return "too many empty frames"
        elif kind == CONTINUATION:
            self.continuations += 1
            self.block_bytes += length
            if self.continuations > limits.max_continuations:
                return f"more than {limits.max_continuations} CONTINUATION frames in a header block"
            if self.block_bytes > limits.max_header_block:
                return f"a header block over {limits.max_header_block} bytes"
            if not length and not flags & END_HEADERS and self.empty.hit(now):
                return "too many empty frames"
        elif kind == DATA:
            if not length and not flags & END_STREAM and self.empty.hit(now):
                return "too many empty frames"
        elif kind == RST_STREAM:
            if self.resets.hit(now):
                return f"more than {limits.max_resets} stream resets in {limits.window:g} s"
        elif kind == PING:
            if not flags & ACK and self.pings.hit(now):
                return f"more than {limits.max_pings} PINGs in {limits.window:g} s"
        elif kind == SETTINGS:
            if not flags & ACK and self.settings.hit(now):
                return f"more than {limits.max_settings} SETTINGS in {limits.window:g} s"
        elif kind == PRIORITY and self.priority.hit(now):
            return f"more than {limits.max_priority} PRIORITY frames in {limits.window:g} s"
        return None
