"""CPU time of the wire core's request parser alone, both builds, one sticky-cookie GET per call
(parse, validate, frame), with httptools and minimal callbacks alongside for scale.

    PYTHONPATH=src python bench/proxy/wirecore.py
"""

import time

import httptools

from limpet.proxy.wire import compiled_core
from limpet.proxy.wire import parser as python_core

REQ = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"Cookie: limpet=b0.1234567890abcdef.abcdefabcdef0123456789\r\n\r\n"
)
N = 100_000


def best(fn):
    out = 1e9
    for _ in range(5):
        t = time.process_time()
        fn()
        out = min(out, (time.process_time() - t) / N)
    return out * 1e6


def wire(core):
    p = core.RequestParser(65536, 100)

    def run():
        for _ in range(N):
            p.feed(REQ)
            p.answered()

    return run


class Callbacks:
    def __init__(self):
        self.headers = []

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))


def llhttp():
    cb = Callbacks()
    p = httptools.HttpRequestParser(cb)

    def run():
        for _ in range(N):
            cb.headers = []
            p.feed_data(REQ)

    return run


rows = [("python (reference)", wire(python_core))]
if compiled_core() is not None:
    rows.append(("compiled (Cython)", wire(compiled_core())))
rows.append(("httptools, bare callbacks", llhttp()))
for name, fn in rows:
    print(f"{name:28} {best(fn):5.2f} us/request (best of 5 x {N})")
