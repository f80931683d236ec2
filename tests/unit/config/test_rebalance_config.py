"""Config: pools.NAME.rebalance (on/off or settings), canary groups, --rebalance; errors name
the key and the line."""

from __future__ import annotations

import argparse

import pytest

from limpet.config.load import parse_config
from limpet.errors import ConfigError
from limpet.pool.rebalance import RebalanceRules


def pool(extra: str, backends: str = "[a:1, b:2]") -> str:
    return f"pools:\n  web:\n    backends: {backends}\n{extra}"


def test_rebalance_is_off_by_default_and_on_or_settings_turn_it_on() -> None:
    assert parse_config(pool("")).pools[0].rebalance == RebalanceRules()
    assert parse_config(pool("    rebalance: on\n")).pools[0].rebalance.enabled
    assert not parse_config(pool("    rebalance: off\n")).pools[0].rebalance.enabled
    rules = parse_config(pool("    rebalance: {rate: 5, bound: 1.5, max-moving: 0.2}\n"))
    assert rules.pools[0].rebalance == RebalanceRules(
        enabled=True, rate=5.0, bound=1.5, max_moving=0.2
    )


@pytest.mark.parametrize(
    ("extra", "key", "line"),
    [
        ("    rebalance: {bound: 0.5}\n", "pools.web.rebalance", 4),
        ("    rebalance: {speed: 3}\n", "pools.web.rebalance.speed", 4),
        ("    rebalance: sometimes\n", "pools.web.rebalance", 4),
        ("    canary: 10\n", "pools.web", 3),
        ("    canary: 120\n", "pools.web.canary", 4),
    ],
)
def test_bad_settings_name_key_and_line(extra: str, key: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(pool(extra), "p.yaml")
    assert info.value.key == key and info.value.line == line, info.value


def test_canary_groups() -> None:
    backends = "[{url: 'a:1'}, {url: 'c:1', group: canary}]"
    cfg = parse_config(pool("    canary: 10\n", backends)).pools[0]
    assert cfg.canary == 10 and [b.group for b in cfg.backends] == [None, "canary"]
    with pytest.raises(ConfigError, match="need the pool's canary"):
        parse_config(pool("", backends))
    with pytest.raises(ConfigError, match="stable or canary"):
        parse_config(pool("", "[{url: 'a:1', group: beta}]"))
    with pytest.raises(ConfigError, match="none, cookie or engineio"):
        parse_config(pool("    canary: 10\n    affinity: {mode: client-ip}\n", backends))


def test_the_rebalance_flag_turns_it_on_in_every_pool() -> None:
    from limpet.proxy.cli import configure, resolve

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--backend", "http://127.0.0.1:1", "--rebalance"])
    assert isinstance(args, argparse.Namespace)
    assert resolve(args).pools[0].rebalance.enabled
    plain = parser.parse_args(["--backend", "http://127.0.0.1:1"])
    assert not resolve(plain).pools[0].rebalance.enabled
