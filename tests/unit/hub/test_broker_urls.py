"""Every --broker URL form parses to what it says; every mistake is one UsageError naming the form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.errors import UsageError
from limpet.hub.brokers.urls import parse_broker_url

GOOD = [
    ("memory", "memory", (), ""),
    ("memory://x", "memory", (), ""),
    ("redis://127.0.0.1:6379/2", "redis", (), ""),
    ("redis+cluster://a:7000,b:7001", "redis-cluster", (("a", 7000), ("b", 7001)), ""),
    ("redis+cluster://a", "redis-cluster", (("a", 6379),), ""),
    (
        "redis+sentinel://a:26379,b/mymaster",
        "redis-sentinel",
        (("a", 26379), ("b", 26379)),
        "mymaster",
    ),
    ("nats://[::1]:4222,10.0.0.2", "nats", (("::1", 4222), ("10.0.0.2", 4222)), ""),
]


@pytest.mark.parametrize(("url", "kind", "nodes", "master"), GOOD)
def test_good_urls(url: str, kind: str, nodes: tuple[tuple[str, int], ...], master: str) -> None:
    spec = parse_broker_url(url)
    assert (spec.kind, spec.nodes, spec.master) == (kind, nodes, master)


def test_credentials_tls_and_db() -> None:
    spec = parse_broker_url("rediss+sentinel://u:p%40ss@h:1/m/3")
    assert (spec.username, spec.password, spec.tls, spec.db, spec.master) == (
        "u",
        "p@ss",
        True,
        3,
        "m",
    )
    assert "p@ss" not in repr(spec)


BAD = [
    ("kafka://h:1", "unknown broker"),
    ("redis://a:1,b:2", "redis+cluster"),
    ("redis+sentinel://a:1", "MASTER_NAME"),
    ("redis+sentinel://a:1/m/x", "MASTER_NAME[/DB]"),
    ("redis+cluster://a:1/0", "no databases"),
    ("redis+cluster://", "no HOST:PORT"),
    ("nats://a:1,,b:2", "empty host"),
    ("nats://a:x", "not a number"),
    ("nats://a:70000", "out of range"),
    ("nats://::1:4222", "brackets"),
    ("nats://[::1", "bad IPv6"),
    ("nats://a:1/path", "nats://HOST:PORT"),
]


@pytest.mark.parametrize(("url", "says"), BAD)
def test_bad_urls_say_what_is_expected(url: str, says: str) -> None:
    with pytest.raises(UsageError, match=None) as info:
        parse_broker_url(url)
    assert says in str(info.value)


hosts = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)
ports = st.integers(1, 65535)


@given(st.lists(st.tuples(hosts, ports), min_size=1, max_size=5, unique=True))
def test_a_node_list_round_trips(nodes: list[tuple[str, int]]) -> None:
    text = ",".join(f"{h}:{p}" for h, p in nodes)
    for scheme, kind in (("redis+cluster", "redis-cluster"), ("nats", "nats")):
        spec = parse_broker_url(f"{scheme}://{text}")
        assert spec.kind == kind and list(spec.nodes) == nodes
        assert spec.server_urls("x") == [f"x://{h}:{p}" for h, p in nodes]
