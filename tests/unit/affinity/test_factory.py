"""build_policy maps every mode of an AffinitySpec to its policy, and refuses bad specs clearly."""

from __future__ import annotations

import pytest

from limpet.affinity.base import PickReason, RequestFacts
from limpet.affinity.factory import build_policy
from limpet.affinity.spec import AffinitySpec
from limpet.errors import UsageError
from limpet.pool.model import BackendState, BackendView, PoolSnapshot

SNAPSHOT = PoolSnapshot(
    "web", tuple(BackendView(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(3))
)
EMPTY = PoolSnapshot("web", (BackendView("b0", "127.0.0.1:9000", BackendState.EJECTED),))


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        ("none", "none"),
        ("cookie", "cookie"),
        ("client-ip", "client-ip"),
        ("hash:header:X-User", "hash"),
        ("hash:cookie:sid", "hash"),
        ("hash:query:room", "hash"),
    ],
)
def test_every_mode_builds_and_picks(flag: str, name: str) -> None:
    policy = build_policy(AffinitySpec.from_flag(flag), secret=b"k" * 32, pool_name="web")
    assert policy.name == name
    pick = policy.pick(RequestFacts("127.0.0.1"), SNAPSHOT)
    assert pick.backend is not None and pick.backend in SNAPSHOT.backends
    assert policy.pick(RequestFacts("127.0.0.1"), EMPTY).reason is PickReason.NO_BACKEND


@pytest.mark.parametrize("balance", ["round-robin", "least-connections", "power-of-two"])
def test_every_balance_builds(balance: str) -> None:
    spec = AffinitySpec(mode="none", balance=balance)  # type: ignore[arg-type]
    policy = build_policy(spec, secret=b"", pool_name="web")
    assert policy.pick(RequestFacts("127.0.0.1"), SNAPSHOT).backend is not None


@pytest.mark.parametrize(
    "spec",
    [
        AffinitySpec(mode="cookie"),  # with an empty secret, below
        AffinitySpec(mode="none", balance="random"),  # type: ignore[arg-type]
        AffinitySpec(mode="cookie", cookie_name="bad name"),
        AffinitySpec(mode="cookie", cookie_ttl=-1),
        AffinitySpec(mode="cookie", cookie_samesite="None", cookie_secure=False),
        AffinitySpec(mode="cookie", cookie_path="/a;b"),
        AffinitySpec(mode="client-ip", client_ip_timeout=0),
        AffinitySpec(mode="client-ip", client_ip_timeout=86401),
        AffinitySpec(mode="hash"),
        AffinitySpec(mode="hash", hash_source="header", hash_key="x", hash_balance_factor=50),
    ],
)
def test_bad_specs_raise_usage_errors(spec: AffinitySpec) -> None:
    with pytest.raises(UsageError):
        build_policy(spec, secret=b"", pool_name="web")


def test_engineio_mode_is_delegated_to_its_module() -> None:
    try:
        policy = build_policy(AffinitySpec(mode="engineio"), secret=b"k" * 32, pool_name="web")
    except UsageError as exc:
        assert "engineio" in str(exc)
    else:
        assert policy.name == "engineio"
