"""The proxy's Python work per request, without sockets: the real Downstream, Exchange,
UpstreamConnection, wire core (request and response parsers, head rewriting) and cookie policy,
with in-memory transports.

A sticky-cookie GET goes in, an nginx-like response comes back; the CPU time per request
(``time.process_time``, best of 8 rounds) measures what the hot-path code costs, which the
end-to-end bench on a shared machine cannot separate from scheduling noise.

    PYTHONPATH=src python bench/proxy/hotpath.py [-v]                          # compiled core
    LIMPET_NO_EXTENSIONS=1 PYTHONPATH=src python bench/proxy/hotpath.py [-v]   # pure Python
    LIMPET_NO_FASTPATH=1 PYTHONPATH=src python bench/proxy/hotpath.py [-v]     # no fast path
    PYTHONPATH=src python bench/proxy/hotpath.py --affinity none               # no affinity
"""

import argparse
import asyncio
import sys
import time

import uvloop

from limpet.proxy import cli
from limpet.proxy.builds import CORE, Downstream, upstream
from limpet.proxy.server import ProxyServer


class T:
    def __init__(self):
        self.out = []
        self.closed = False

    def write(self, d):
        self.out.append(d)

    def get_extra_info(self, k, default=None):
        return ("127.0.0.1", 5555) if k == "peername" else default

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass


RESP = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nb0\n"


async def main(n, affinity):
    p = argparse.ArgumentParser()
    cli.configure(p)
    args = p.parse_args(
        [
            "--backend",
            "b0=http://127.0.0.1:9",
            "--secret",
            "s",
            "--no-health",
            "--log-level",
            "warning",
            "--affinity",
            affinity,
        ]
    )
    cfg = cli.resolve(args)
    server = ProxyServer(cfg, b"s")
    pool = server.pools["default"].upstreams["b0"]
    conn = upstream.UpstreamConnection(pool)
    ut = T()
    conn.connection_made(ut)
    pool.put(conn)
    down = Downstream(server.context)
    dt = T()
    down.connection_made(dt)
    req0 = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    down.data_received(req0)
    conn.data_received(RESP)
    head = b"".join(dt.out)
    set_cookie = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"set-cookie:")]
    req = req0
    if set_cookie:
        cookie = set_cookie[0].split(b":", 1)[1].split(b";")[0].strip()
        req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nCookie: " + cookie + b"\r\n\r\n"
    best = 1e9
    for _round in range(8):
        t = time.process_time()
        for _ in range(n):
            dt.out.clear()
            ut.out.clear()
            down.data_received(req)
            conn.data_received(RESP)
        best = min(best, (time.process_time() - t) / n)
    assert b"b0\n" in b"".join(dt.out), dt.out
    path = "fast path" if type(down.fast).__name__ == "FastPath" else "reference Exchange"
    print(
        f"{best * 1e6:.1f} us/request (python only, best of 8 x {n}; protocol code: {CORE}; "
        f"{path}; --affinity {affinity})"
    )
    if "-v" in sys.argv:
        print(b"".join(ut.out).decode())
        print(b"".join(dt.out).decode())


uvloop.install()
asyncio.run(
    main(
        int(sys.argv[sys.argv.index("-n") + 1]) if "-n" in sys.argv else 10000,
        sys.argv[sys.argv.index("--affinity") + 1] if "--affinity" in sys.argv else "cookie",
    )
)
