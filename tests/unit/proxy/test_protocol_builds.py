"""Differential: the compiled protocol code (limpet.proxy._chttp1, _cupstream) against its
pure-Python reference (limpet.proxy.http1, upstream).

The same script of client bytes, backend bytes and connection events, cut at the same random
boundaries and with the same mutated bytes, drives a Rig of each build; after every step both
must have written the same bytes to the backend and to the client, be in the same states and
have raised the same exception, if any. The X-Request-Id a request gets is random, so its value
is masked before comparing.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given

from limpet.proxy import builds, http1, upstream
from tests.support.protocol import Rig, scripts, step

COMPILED_HTTP1 = builds.compiled_http1()
COMPILED_UPSTREAM = builds.compiled_upstream()
pytestmark = pytest.mark.skipif(
    COMPILED_HTTP1 is None or COMPILED_UPSTREAM is None,
    reason="the compiled protocol code is not built (run scripts/bootstrap)",
)


async def run(script: list[tuple[str, bytes]]) -> None:
    assert COMPILED_HTTP1 is not None and COMPILED_UPSTREAM is not None
    compiled = Rig(COMPILED_HTTP1.Downstream, COMPILED_UPSTREAM.UpstreamConnection)
    reference = Rig(http1.Downstream, upstream.UpstreamConnection)
    assert type(compiled.down) is not type(reference.down)
    for n, (kind, data) in enumerate(script):
        seen = step(compiled, kind, data)
        want = step(reference, kind, data)
        assert seen == want, f"step {n} ({kind} {data!r}) of {script!r}"
    compiled.down.connection_lost(None)
    reference.down.connection_lost(None)


@given(scripts())
def test_both_builds_forward_and_answer_the_same_bytes(script: list[tuple[str, bytes]]) -> None:
    # (a loop per example: the exchanges arm timers and may start a connect task, never run)
    asyncio.run(run(script))


def test_the_builds_are_two() -> None:
    """The twin really is compiled (else the differential compares the reference to itself)."""
    assert COMPILED_HTTP1 is not None and COMPILED_HTTP1.COMPILED and not http1.COMPILED
    assert COMPILED_UPSTREAM is not None and COMPILED_UPSTREAM.COMPILED
    assert not upstream.COMPILED
