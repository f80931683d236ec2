"""The upstream pool's choice of an idle connection: expiry before the backends' keep-alive
timeout, and ``http-reuse safe`` for requests that must not be sent twice. Time is a parameter."""

from __future__ import annotations

from types import ModuleType

import pytest

from limpet.proxy import builds
from limpet.proxy import upstream as reference
from limpet.proxy.upstream import IDLE_CLOSE, SAFE_REUSE, UpstreamConnection, UpstreamPool
from tests.support.protocol import Transport

T = 1000.0  # when the connections went back to the pool


@pytest.fixture(params=["compiled", "python"])
def build(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "compiled":
        side = builds.compiled_upstream()
        if side is None:
            pytest.skip("the compiled protocol code is not built (run scripts/bootstrap)")
        return side
    return reference


def pool_of(build: ModuleType, n: int) -> tuple[UpstreamPool, list[UpstreamConnection]]:
    """A pool with ``n`` idle connections, the last one put back at T (the others earlier)."""
    pool: UpstreamPool = build.UpstreamPool("b0", "127.0.0.1:9")
    conns = []
    for i in range(n):
        conn: UpstreamConnection = build.UpstreamConnection(pool)
        conn.connection_made(Transport())  # type: ignore[arg-type]
        pool.put(conn, T - (n - 1 - i) * IDLE_CLOSE / 3)
        conns.append(conn)
    return pool, conns


def test_a_request_that_must_not_be_resent_takes_only_a_connection_that_just_answered(
    build: ModuleType,
) -> None:
    pool, (conn,) = pool_of(build, 1)
    assert pool.take_idle(replayable=False, now=T + SAFE_REUSE + 0.1) is None  # a new one
    assert pool.idle == [conn]  # kept for a request that may be sent again
    assert pool.take_idle(replayable=False, now=T + SAFE_REUSE / 2) is conn


def test_twin_a_replayable_request_takes_the_older_connection(build: ModuleType) -> None:
    pool, (conn,) = pool_of(build, 1)
    assert pool.take_idle(replayable=True, now=T + SAFE_REUSE + 0.1) is conn
    assert conn.reused


def test_connections_idle_past_the_limit_are_closed_not_reused(build: ModuleType) -> None:
    pool, (oldest, older, newest) = pool_of(build, 3)  # put back at T - IDLE_CLOSE, ..., T
    now = T + IDLE_CLOSE / 2  # the oldest is past the limit, the others are not
    assert pool.take_idle(now=now) is newest
    assert oldest.closed and pool.idle == [older]
    assert pool.take_idle(now=T + IDLE_CLOSE) is None  # older expired too
    assert older.closed and pool.idle == []


def test_twin_connections_within_the_limit_stay_open(build: ModuleType) -> None:
    pool, (oldest, older, newest) = pool_of(build, 3)
    assert pool.take_idle(now=T + IDLE_CLOSE / 4) is newest
    assert not oldest.closed and pool.idle == [oldest, older]
