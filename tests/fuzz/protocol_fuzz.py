"""Coverage-guided fuzzing of the fast path (limpet.proxy.fast) against the reference Exchange.

Each input is a script: client bytes, backend bytes (a sample request or response, or raw
bytes from the input, cut where the input says) and connection events. It drives a Downstream
that offers every read to the fast path and one that sends every request through the reference
Exchange, on in-memory transports (tests.support.protocol); after every step both must have
written the same bytes to both sides and be in the same states (tests.support.protocol.compare).
Both builds when the compiled one is built: the pure-Python fast path with the pure-Python
reference, the compiled with the compiled.

    .venv/bin/python tests/fuzz/protocol_fuzz.py -max_total_time=600

The suite runs it for a few seconds (tests/unit/proxy/test_fast_path.py).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # (tests.support)

from limpet.proxy import fast
from tests.support.protocol import (
    BUILDS,
    EVENTS,
    REQUESTS,
    RESPONSES,
    compare,
)

# the fast path's decisions are instrumented in place (as wire_fuzz.py does for the parsers)
for fn in (
    fast.FastPath.offer,
    fast.FastPath.response_head,
    fast.FastPath.response_complete,
    fast.FastPath.hand_over,
):
    atheris.instrument_func(fn)

MAX_STEPS = 24


def script_of(data: bytes) -> list[tuple[str, bytes]]:
    fdp = atheris.FuzzedDataProvider(data)
    script: list[tuple[str, bytes]] = []
    while fdp.remaining_bytes() and len(script) < MAX_STEPS:
        op = fdp.ConsumeIntInRange(0, 5)
        if op < 4:
            side = "client" if op < 2 else "backend"
            samples = REQUESTS if side == "client" else RESPONSES
            if op % 2 == 0:
                whole = samples[fdp.ConsumeIntInRange(0, len(samples) - 1)]
            else:
                whole = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 200))
            cut = fdp.ConsumeIntInRange(0, len(whole))
            script += [(side, piece) for piece in (whole[:cut], whole[cut:]) if piece]
        else:
            script.append((EVENTS[fdp.ConsumeIntInRange(0, len(EVENTS) - 1)], b""))
    return script


def one_input(data: bytes) -> None:
    script = script_of(data)
    if script:
        for build in BUILDS:
            asyncio.run(compare(script, build))


if __name__ == "__main__":
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        # no corpus given: start from a few scripts (a request, its response, again)
        corpus = tempfile.mkdtemp(prefix="protocol-fuzz-")
        for i in range(len(REQUESTS)):
            seed = bytes([0, i, 0, 2, 0, 0, 0, i, 0, 2, 0, 0])
            Path(corpus, f"seed-{i}").write_bytes(seed)
        args.append(corpus)
    atheris.Setup(args, one_input)
    atheris.Fuzz()
