"""SANS-IO: the bounds of one HTTP/2 connection and the fixed-window rate counter they use.

The defaults follow what the peers chose after the 2019 and 2023-2024 rounds of HTTP/2 attacks
(nginx ``http2_max_concurrent_streams 128``, HAProxy ``tune.h2.max-concurrent-streams 100``,
Envoy's ``max_consecutive_inbound_frames_with_empty_payload``, the Rapid Reset mitigations):
bounded streams, bounded header blocks, and rate limits on the frames that cost the server work
and the attacker nothing (RST_STREAM, PING, SETTINGS, PRIORITY, empty frames). A connection
over any of them ends with GOAWAY ``ENHANCE_YOUR_CALM``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class H2Limits:
    #: SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2)
    max_concurrent_streams: int = 100
    #: SETTINGS_MAX_HEADER_LIST_SIZE: decoded fields of one header block (HPACK bombs end here)
    max_header_list_size: int = 64 * 1024
    #: SETTINGS_HEADER_TABLE_SIZE, ours, and the cap on the one a client asks of our encoder
    header_table_size: int = 4096
    #: bytes of one header block on the wire (HEADERS + CONTINUATION frames)
    max_header_block: int = 64 * 1024
    #: CONTINUATION frames of one header block (CVE-2024-27316 and relatives)
    max_continuations: int = 32
    #: SETTINGS_INITIAL_WINDOW_SIZE for request bodies: what a client may send unacknowledged
    initial_window: int = 65535
    #: response bytes held per stream while the client's window is shut; beyond this the
    #: backend is not read (its socket buffers the rest)
    send_buffer: int = 64 * 1024
    #: rate limits, events per ``window`` seconds
    window: float = 10.0
    max_resets: int = 200
    max_pings: int = 50
    max_settings: int = 50
    max_priority: int = 500
    max_empty_frames: int = 100


class Rate:
    """Events in the current fixed window of ``window`` seconds; ``hit`` says when over ``limit``.

    A fixed window lets through at most twice the limit across a boundary, which is enough for
    a flood detector and needs two numbers, not a deque of timestamps.
    """

    __slots__ = ("count", "limit", "start", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.start = 0.0
        self.count = 0

    def __repr__(self) -> str:
        return f"Rate({self.count}/{self.limit} per {self.window}s)"

    def hit(self, now: float) -> bool:
        """Count one event at ``now``; True when the window holds more than ``limit``."""
        if now - self.start >= self.window:
            self.start = now
            self.count = 0
        self.count += 1
        return self.count > self.limit
