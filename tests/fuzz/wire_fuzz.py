"""Coverage-guided fuzzing of the wire core with atheris (libFuzzer for Python).

Every input is split into reads at the fuzzer's chosen boundaries and fed to both builds of
both parsers (as a request stream, and as a backend's response): the compiled core must not
crash, must keep its buffer within the head limit, and must decide exactly what the
pure-Python reference decides. Coverage comes from the reference's bytecode (atheris
instruments it); the compiled twin is the same source, so the paths it takes are the same ones.

    .venv/bin/python tests/fuzz/wire_fuzz.py -max_total_time=600          # a longer run
    .venv/bin/python tests/fuzz/wire_fuzz.py -runs=200000 corpus_dir/     # keep a corpus

The suite runs it for a few seconds (tests/unit/proxy/test_wire_fuzz.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

from limpet.proxy.wire import compiled_core, compiled_response
from limpet.proxy.wire import parser as python_core
from limpet.proxy.wire import response as python_response

# the reference's code is instrumented in place (an editable install imports through a finder
# that atheris' import hook does not see, so instrument_imports() would cover nothing)
for fn in (
    python_core.RequestParser.feed,
    python_core.RequestParser._head,
    python_response.ResponseParser.feed,
    python_response.ResponseParser._head,
):
    atheris.instrument_func(fn)

COMPILED = compiled_core()
COMPILED_RESPONSE = compiled_response()
LIMIT = 2048


def drive(core, pieces):  # type: ignore[no-untyped-def]
    p = core.RequestParser(LIMIT, 16, 4)
    out = []
    for piece in pieces:
        events = p.feed(piece)
        while p.stalled:
            for _ in range(p.pending):
                p.answered()
            events += p.feed(b"")
        for kind, value in events:
            out.append((kind, value.astuple() if kind == python_core.HEAD else value))
        # every buffer is bounded: a head (or a chunk line) is refused before it outgrows this
        assert p.buffered <= LIMIT + len(piece), (p.buffered, len(piece))
    return out


def drive_response(core, pieces):  # type: ignore[no-untyped-def]
    p = core.ResponseParser(LIMIT, 16)
    out = []
    for piece in pieces:
        for kind, value in p.feed(piece):
            out.append((kind, value.astuple() if kind == python_response.HEAD else value))
        if p.state != python_response._S_DONE:  # (after a response, the rest is only held)
            assert p.buffered <= LIMIT + len(piece), (p.buffered, len(piece))
    return out, p.buffered


def one_input(data: bytes) -> None:
    if not data:
        return
    # the first byte chooses the reads: 0 = the whole input at once, n = reads of n bytes
    size, stream = data[0], data[1:]
    pieces = [stream[i : i + size] for i in range(0, len(stream), size)] if size else [stream]
    expected = drive(python_core, pieces)
    if COMPILED is not None:
        got = drive(COMPILED, pieces)
        if got != expected:
            raise AssertionError(f"the cores differ on {pieces!r}:\n{got!r}\n{expected!r}")
    # the same bytes as a backend's response, after a status line's start
    pieces = [b"HTTP/1.1 ", *pieces]
    expected_response = drive_response(python_response, pieces)
    if COMPILED_RESPONSE is not None:
        got_response = drive_response(COMPILED_RESPONSE, pieces)
        if got_response != expected_response:
            raise AssertionError(
                f"the response cores differ on {pieces!r}:\n{got_response!r}\n{expected_response!r}"
            )


SEEDS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81",
    # (fed as responses too, after "HTTP/1.1 ")
    b"200 OK\r\nContent-Length: 3\r\n\r\nabc",
    b"200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"103 Early\r\nLink: x\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
    b"101 Switching\r\nUpgrade: websocket\r\n\r\n\x81",
]

if __name__ == "__main__":
    if COMPILED is None:
        print(
            "wire_fuzz: the compiled core is not built; fuzzing the reference alone",
            file=sys.stderr,
        )
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        # no corpus given: start from the seeds (real requests, whole and in 7-byte reads)
        corpus = tempfile.mkdtemp(prefix="wire-fuzz-")
        for i, seed in enumerate(SEEDS):
            for size in (0, 7):
                Path(corpus, f"seed-{i}-{size}").write_bytes(bytes([size]) + seed)
        args.append(corpus)
    atheris.Setup(args, one_input)
    atheris.Fuzz()
