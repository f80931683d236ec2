"""HTTP/2 at the front door: h2 over TLS (ALPN) and h2c (prior knowledge) to HTTP/1.1 backends.

SANS-IO: ``limits`` (the bounds and rate limits), ``guard`` (frame-level attack counters over
the raw byte stream), ``core`` (the connection: the ``h2`` library's state machine, the
settings, send-side flow control with bounded per-stream buffers), ``messages`` (a stream's
request fields to an HTTP/1.1 head, a response head to HTTP/2 fields).
I/O: ``protocol`` (the asyncio protocol around the core) and ``stream`` (one stream as the
downstream side of the same ``Exchange`` that carries an HTTP/1.1 request).
"""
