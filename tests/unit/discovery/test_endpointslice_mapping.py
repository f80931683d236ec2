"""EndpointSlice dicts -> endpoints: the rules of the discovery.k8s.io/v1 API, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from limpet.discovery.base import Endpoint, join_hostport, snapshot
from limpet.discovery.kubernetes import endpoints_from_slices, parse_service_ref
from limpet.errors import DiscoveryError


def ep(ip: str, pod: str | None = None, **conditions: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if pod:
        out["targetRef"] = {"kind": "Pod", "name": pod}
    return out


def slice_(
    *endpoints: dict[str, Any], ports: Any = None, address_type: str = "IPv4"
) -> dict[str, Any]:
    return {
        "addressType": address_type,
        "ports": [{"name": "http", "port": 8080}] if ports is None else ports,
        "endpoints": list(endpoints),
    }


CASES = [
    ("ready", [slice_(ep("10.0.0.1", "a", ready=True))], [Endpoint("a", "10.0.0.1:8080")]),
    ("ready unset means ready", [slice_(ep("10.0.0.1", "a"))], [Endpoint("a", "10.0.0.1:8080")]),
    (
        "not ready yet",
        [slice_(ep("10.0.0.1", "a", ready=False))],
        [Endpoint("a", "10.0.0.1:8080", ready=False)],
    ),
    (
        "terminating drains",
        [slice_(ep("10.0.0.1", "a", ready=False, serving=True, terminating=True))],
        [Endpoint("a", "10.0.0.1:8080", ready=False, terminating=True)],
    ),
    (
        "no targetRef: id is the address",
        [slice_(ep("10.0.0.1"))],
        [Endpoint("10.0.0.1:8080", "10.0.0.1:8080")],
    ),
    ("IPv6", [slice_(ep("fd00::1", "a"), address_type="IPv6")], [Endpoint("a", "[fd00::1]:8080")]),
    ("FQDN slices are skipped", [slice_(ep("db.example", "a"), address_type="FQDN")], []),
    ("no ports", [slice_(ep("10.0.0.1", "a"), ports=[])], []),
    ("no addresses", [slice_({"addresses": [], "conditions": {}})], []),
    (
        "two slices",
        [slice_(ep("10.0.0.2", "b")), slice_(ep("10.0.0.1", "a"))],
        [Endpoint("a", "10.0.0.1:8080"), Endpoint("b", "10.0.0.2:8080")],
    ),
]


@pytest.mark.parametrize(("slices", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mapping(slices: list[dict[str, Any]], want: list[Endpoint]) -> None:
    assert endpoints_from_slices(slices) == tuple(want)


def test_named_port() -> None:
    ports = [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]
    s = [slice_(ep("10.0.0.1", "a"), ports=ports)]
    assert endpoints_from_slices(s)[0].address == "10.0.0.1:9090"
    assert endpoints_from_slices(s, "http")[0].address == "10.0.0.1:8080"
    assert endpoints_from_slices(s, "grpc") == ()


def test_snapshot_is_canonical() -> None:
    a, b = Endpoint("a", "x:1"), Endpoint("b", "y:1")
    assert snapshot([b, a]) == snapshot([a, b]) == (a, b)
    assert join_hostport("::1", 80) == "[::1]:80"


def test_parse_service_ref() -> None:
    assert parse_service_ref("web/chat") == ("web", "chat")
    assert parse_service_ref("chat") == ("default", "chat")
    for bad in ("web/", "a/b/c"):
        with pytest.raises(DiscoveryError, match="expected a Service as NAMESPACE/NAME"):
            parse_service_ref(bad)
    # a malformed reference is said to be one, before any kubeconfig is read
    with pytest.raises(DiscoveryError, match="namespace 'Web_X' is not a Kubernetes name"):
        parse_service_ref("Web_X/chat")
    with pytest.raises(DiscoveryError, match="'9chat' is not a Service name"):
        parse_service_ref("web/9chat")
