"""BackendView.weight in every balancer and in the Maglev table."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.affinity.hashing import Maglev, MaglevCache
from limpet.balancing import build_balancer
from limpet.config.load import parse_config
from limpet.errors import ConfigError
from limpet.pool.model import BackendView, PoolSnapshot


def snap(weights: dict[str, int], loads: dict[str, int] | None = None) -> PoolSnapshot:
    views = tuple(
        BackendView(i, f"127.0.0.1:{n}", weight=w) for n, (i, w) in enumerate(weights.items())
    )
    return PoolSnapshot("web", views, loads=loads or {})


@given(st.lists(st.integers(1, 6), min_size=1, max_size=5))
def test_round_robin_gives_each_its_weight_in_every_cycle(weights: list[int]) -> None:
    pool = snap({f"b{i}": w for i, w in enumerate(weights)})
    rr = build_balancer("round-robin")
    cycle = sum(weights)
    for _ in range(3):
        picks = Counter(rr.choose(pool.eligible(), pool).id for _ in range(cycle))  # type: ignore[union-attr]
        assert picks == {f"b{i}": w for i, w in enumerate(weights)}


def test_smooth_round_robin_interleaves() -> None:
    pool = snap({"a": 3, "b": 1})
    rr = build_balancer("round-robin")
    order = "".join(rr.choose(pool.eligible(), pool).id for _ in range(8))  # type: ignore[union-attr]
    assert order == "aabaaaba"  # never three a in a row: b is spread through the cycle


def test_equal_weights_are_plain_round_robin() -> None:
    pool = snap({"a": 1, "b": 1, "c": 1})
    rr = build_balancer("round-robin")
    assert [rr.choose(pool.eligible(), pool).id for _ in range(6)] == list("abcabc")  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["least-connections", "power-of-two"])
def test_load_per_unit_of_weight(name: str) -> None:
    # a: 3 open on weight 4 (0.75 each) beats b: 1 open on weight 1
    pool = snap({"a": 4, "b": 1}, loads={"a": 3, "b": 1})
    balancer = build_balancer(name, rand=lambda n: 0)
    assert {balancer.choose(pool.eligible(), pool).id for _ in range(4)} == {"a"}  # type: ignore[union-attr]
    # twin: unweighted, b (1 open) wins
    flat = snap({"a": 1, "b": 1}, loads={"a": 3, "b": 1})
    assert {balancer.choose(flat.eligible(), flat).id for _ in range(4)} == {"b"}  # type: ignore[union-attr]


def test_maglev_shares_follow_weights() -> None:
    table = Maglev(["a", "b"], weights={"a": 3, "b": 1})
    share = Counter(table.table)[table.ids.index("a")] / table.size
    assert abs(share - 0.75) < 0.01
    assert Maglev(["a", "b"], weights={"a": 1, "b": 1}).table == Maglev(["a", "b"]).table


def test_the_cache_builds_a_new_table_when_a_weight_changes() -> None:
    cache = MaglevCache()
    one = cache.get(snap({"a": 1, "b": 1}).eligible())
    two = cache.get(snap({"a": 2, "b": 1}).eligible())
    assert one is not two and one.table != two.table


def test_config_weight() -> None:
    cfg = parse_config(
        "pools:\n  web:\n    backends:\n      - {id: a, url: '127.0.0.1:1', weight: 3}\n"
    )
    assert cfg.pools[0].backends[0].weight == 3
    with pytest.raises(
        ConfigError, match=r"pools.web.backends\[0\].weight: weight must be 1 to 1000"
    ):
        parse_config(
            "pools:\n  web:\n    backends:\n      - {id: a, url: '127.0.0.1:1', weight: 0}\n"
        )
