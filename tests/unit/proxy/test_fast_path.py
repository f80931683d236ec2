"""The fast path (limpet.proxy.fast) against the reference Exchange it stands in for.

Differential: the same script of client bytes, backend bytes and connection events, cut at the
same random places, drives a Rig whose Downstream offers every read to the fast path and a Rig
whose Downstream sends every request through the reference Exchange; after every step both must
have written the same bytes to the backend and to the client, be in the same states, hold the
same idle pooled connections and count the same open exchanges and responses. Both builds: the
pure-Python fast path with the pure-Python reference, the compiled one with the compiled one.
The twin shows the comparison fails for a fast path that differs by one thing.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from hypothesis import given, settings

from limpet.proxy import fast, http1
from limpet.proxy.states import ExState
from tests.support.fuzz import fuzz_for_a_few_seconds, needs_atheris
from tests.support.protocol import BUILDS, Rig, classes, compare, scripts, without_fast_path

GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("affinity", ["none", "cookie"])
@settings(max_examples=60, deadline=None)
@given(script=scripts())
def test_the_fast_path_sends_and_answers_what_the_reference_does(
    build: str, affinity: str, script: list[tuple[str, bytes]]
) -> None:
    # (a loop per example: the exchanges arm timers and may start a connect task, never run)
    # (cookie: each request's invalid token is replaced by a new one, in a Set-Cookie)
    asyncio.run(compare(script, build, affinity=affinity))


COMMON = [
    ("client", GET % 1),
    ("backend", OK),
    ("client", b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
    ("backend", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    ("client", GET % 3),
    ("backend", b"HTTP/1.1 103 Early Hints\r\n\r\n" + OK),  # handed over: a 1xx
    ("client", GET % 4),
    ("upstream-lost", b""),  # handed over: retried on a new connection
]


@pytest.mark.parametrize("build", BUILDS)
async def test_the_common_exchanges_take_the_fast_path(build: str) -> None:
    assert (
        await compare(COMMON, build) == 4
    )  # (its four requests; a 1xx and a lost connection are handed over later)


class _DropsABody(fast.FastPath):
    """A fast path that differs from the reference by one thing: it loses response bodies."""

    def response_body(self, data: bytes) -> None:
        pass


class _Broken(http1.Downstream):
    def __init__(self, ctx: object) -> None:
        super().__init__(ctx)  # type: ignore[arg-type]
        self.fast = _DropsABody(self)


async def test_twin_a_fast_path_that_differs_is_caught() -> None:
    with pytest.raises(AssertionError, match="step 1"):
        await compare(COMMON, "python", _Broken)


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize(
    ("request_bytes", "path"),
    [
        (GET % 1, "FastPath"),
        (b"DELETE /d HTTP/1.1\r\nHost: x\r\n\r\n", "FastPath"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", "FastPath"),
        # the rare ones take the reference Exchange from the start
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "Exchange"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n", "Exchange"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Exchange"),
        (
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            "Exchange",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab", "Exchange"),  # body cut
        (GET % 1 + GET % 2, "Exchange"),  # pipelined
        (b"GET / HTTP/1.1\r\nHost: x\r\n", "none"),  # not a whole head
    ],
)
async def test_which_requests_take_the_fast_path(
    build: str, request_bytes: bytes, path: str
) -> None:
    downstream, connection = classes(build)
    rig = Rig(downstream, connection)
    rig.down.data_received(request_bytes)
    active = rig.down.active
    assert (type(active).__name__ if active is not None else "none") == path
    reference = Rig(without_fast_path(downstream), connection)
    reference.down.data_received(request_bytes)
    assert type(reference.down.active).__name__ == ("none" if path == "none" else "Exchange") or (
        path == "none" and reference.down.active is None
    )


@pytest.mark.parametrize("build", BUILDS)
async def test_a_request_without_an_idle_connection_takes_the_reference(build: str) -> None:
    downstream, connection = classes(build)
    rig = Rig(downstream, connection)
    rig.pool.idle.clear()  # (the pool will connect: the reference Exchange does that)
    rig.down.data_received(GET % 1)
    active = rig.down.active
    assert type(active).__name__ == "Exchange" and active.state is ExState.CONNECTING
    rig.down.connection_lost(None)


@needs_atheris
def test_fuzz_the_fast_path_for_a_few_seconds() -> None:
    """A bounded run of tests/fuzz/protocol_fuzz.py: the two paths agree, nothing crashes."""
    fuzz_for_a_few_seconds("protocol_fuzz.py", rss_limit_mb=768)


def test_each_build_runs_its_own_fast_path() -> None:
    """The reference http1 runs the pure-Python fast path, the compiled _chttp1 the compiled
    _cfast: a build never mixes the two (else the differential would compare one with itself)."""
    assert http1.fast is fast and not fast.COMPILED
    if "compiled" in BUILDS:
        compiled = classes("compiled")[0]
        module = sys.modules[compiled.__module__]
        assert module.fast.COMPILED and module.fast.__name__ == "limpet.proxy._cfast"
