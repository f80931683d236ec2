"""The Redis broker's EVALSHA packing: byte for byte what redis-py writes (no server needed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Connection

from limpet.hub.brokers.redis import pack_evalsha

args = st.lists(st.text() | st.binary() | st.integers(-(2**63), 2**63), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1), min_size=1, max_size=4), args)
def test_pack_evalsha_is_what_redis_py_packs(keys: list[str], values: list[object]) -> None:
    sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff831"
    reference = b"".join(Connection().pack_command("EVALSHA", sha, len(keys), *keys, *values))
    assert pack_evalsha(sha.encode(), keys, values) == reference


def test_a_large_argument_is_packed_whole() -> None:
    big = b"x" * 100_000  # redis-py sends it as a chunk of its own: the same bytes
    reference = b"".join(Connection().pack_command("EVALSHA", "s", 1, "k", big))
    assert pack_evalsha(b"s", ["k"], [big]) == reference


@pytest.mark.parametrize("bad", [True, 1.5, None, [1]])
def test_other_types_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        pack_evalsha(b"s", ["k"], [bad])
