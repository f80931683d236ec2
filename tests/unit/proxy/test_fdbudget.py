"""max-connections fitted under the open-files limit, leaving a reserve clients cannot take."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from limpet.config.model import LimitsConfig
from limpet.proxy.fdbudget import FLOOR, IDLE_PER_BACKEND, RESERVE, fit


def test_a_small_limit_lowers_max_connections_and_says_why() -> None:
    limits, note = fit(LimitsConfig(), nofile=1024, backends=2)
    reserve = RESERVE + LimitsConfig().admin_connections + 2 * IDLE_PER_BACKEND
    assert limits.max_connections == (1024 - reserve) // 2
    assert note is not None and "1024" in note and "ulimit -n" in note


def test_twin_a_large_limit_keeps_the_configured_value() -> None:
    limits, note = fit(LimitsConfig(max_connections=300), nofile=65536, backends=3)
    assert limits.max_connections == 300 and note is None


@given(
    st.integers(1, 100_000),
    st.integers(64, 1 << 20),
    st.integers(0, 200),
    st.integers(1, 1000),
)
def test_the_budget_always_leaves_the_reserve(
    max_connections: int, nofile: int, backends: int, admin: int
) -> None:
    limits = LimitsConfig(max_connections=max_connections, admin_connections=admin)
    fitted, _ = fit(limits, nofile, backends)
    assert fitted.max_connections <= max_connections
    reserve = RESERVE + admin + IDLE_PER_BACKEND * backends
    if fitted.max_connections > FLOOR:
        assert 2 * fitted.max_connections + reserve <= nofile
