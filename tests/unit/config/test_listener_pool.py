"""listeners[*].pool: a tcp listener names the pool it serves; errors name file, line and key."""

from __future__ import annotations

import pytest

from limpet.config.load import parse_config
from limpet.errors import ConfigError

POOLS = "pools:\n  web: {backends: [127.0.0.1:1]}\n  db: {backends: [127.0.0.1:2]}\n"


def test_a_tcp_listener_names_its_pool() -> None:
    cfg = parse_config("listeners:\n  - {address: '127.0.0.1:9', mode: tcp, pool: db}\n" + POOLS)
    assert cfg.tcp_pool(cfg.listeners[0]) == "db"


def test_without_a_pool_it_serves_the_first_routes() -> None:
    cfg = parse_config("listeners:\n  - {address: '127.0.0.1:9', mode: tcp}\n" + POOLS)
    assert cfg.tcp_pool(cfg.listeners[0]) == "web"


@pytest.mark.parametrize(
    ("listener", "message"),
    [
        ("{address: '127.0.0.1:9', mode: tcp, pool: nope}", "unknown pool 'nope'"),
        ("{address: '127.0.0.1:9', pool: db}", "pool applies to tcp listeners"),
    ],
)
def test_bad_pools_name_file_line_and_key(listener: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"listeners:\n  - 127.0.0.1:8\n  - {listener}\n" + POOLS, "p.yaml")
    assert str(err.value).startswith("p.yaml:3: listeners[1].pool: ") and message in str(err.value)
