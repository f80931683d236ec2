"""Dialect readers: table-driven cases per platform, and render -> derive round trips."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.affinity.spec import AffinitySpec
from limpet.errors import UsageError
from limpet.k8s.dialects import derive, derive_affinity
from limpet.k8s.render import RenderOptions, render


def service(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "chat"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def ingress(annotations: dict[str, str], backend: str = "chat") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "chat", "annotations": annotations},
        "spec": {"defaultBackend": {"service": {"name": backend, "port": {"number": 80}}}},
    }


def backend_config(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cloud.google.com/v1",
        "kind": "BackendConfig",
        "metadata": {"name": "bc"},
        "spec": {"sessionAffinity": block},
    }


BC = {"cloud.google.com/backend-config": '{"default": "bc"}'}
N = "nginx.ingress.kubernetes.io/"
T = "traefik.ingress.kubernetes.io/"
ALI = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-persistence-timeout"

CASES: list[tuple[str, list[dict[str, Any]], str, AffinitySpec]] = [
    ("no service", [], "none", AffinitySpec(mode="none")),
    ("plain service", [service()], "kube-proxy", AffinitySpec(mode="none")),
    (
        "ClientIP default timeout",
        [service(sessionAffinity="ClientIP")],
        "kube-proxy",
        AffinitySpec(mode="client-ip", client_ip_timeout=10800),
    ),
    (
        "ClientIP timeout",
        [
            service(
                sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
            )
        ],
        "kube-proxy",
        AffinitySpec(mode="client-ip", client_ip_timeout=600),
    ),
    (
        "GKE generated cookie",
        [
            service(BC),
            backend_config({"affinityType": "GENERATED_COOKIE", "affinityCookieTtlSec": 50}),
        ],
        "gke",
        AffinitySpec(mode="cookie", cookie_name="GCLB", cookie_ttl=50),
    ),
    (
        "GKE cookie ttl 0 is a session cookie",
        [
            service(BC),
            backend_config({"affinityType": "GENERATED_COOKIE", "affinityCookieTtlSec": 0}),
        ],
        "gke",
        AffinitySpec(mode="cookie", cookie_name="GCLB", cookie_ttl=None),
    ),
    (
        "GKE client ip wins over Service ClientIP",
        [service(BC, sessionAffinity="ClientIP"), backend_config({"affinityType": "CLIENT_IP"})],
        "gke",
        AffinitySpec(mode="client-ip"),
    ),
    (
        "GKE HTTP_COOKIE names its cookie",
        [service(BC), backend_config({"affinityType": "HTTP_COOKIE", "httpCookie": {"name": "s"}})],
        "gke",
        AffinitySpec(mode="cookie", cookie_name="s"),
    ),
    (
        "ingress-nginx cookie",
        [
            service(),
            ingress(
                {
                    N + "affinity": "cookie",
                    N + "affinity-mode": "persistent",
                    N + "session-cookie-name": "route",
                    N + "session-cookie-max-age": "172800",
                    N + "session-cookie-samesite": "Strict",
                    N + "session-cookie-path": "/chat",
                }
            ),
        ],
        "ingress-nginx",
        AffinitySpec(
            mode="cookie",
            cookie_name="route",
            cookie_ttl=172800,
            cookie_samesite="Strict",
            cookie_path="/chat",
            cookie_mode="persistent",
        ),
    ),
    (
        "ingress-nginx defaults",
        [service(), ingress({N + "affinity": "cookie"})],
        "ingress-nginx",
        AffinitySpec(
            mode="cookie", cookie_name="INGRESSCOOKIE", cookie_samesite=None, cookie_mode="balanced"
        ),
    ),
    (
        "ingress-nginx on another Service does not count",
        [service(), ingress({N + "affinity": "cookie"}, backend="other")],
        "kube-proxy",
        AffinitySpec(mode="none"),
    ),
    (
        "upstream-hash-by header",
        [service(), ingress({N + "upstream-hash-by": "$http_x_user_id"})],
        "ingress-nginx",
        AffinitySpec(mode="hash", hash_source="header", hash_key="X-User-Id"),
    ),
    (
        "upstream-hash-by cookie",
        [service(), ingress({N + "upstream-hash-by": "$cookie_sid"})],
        "ingress-nginx",
        AffinitySpec(mode="hash", hash_source="cookie", hash_key="sid"),
    ),
    (
        "upstream-hash-by remote address",
        [service(), ingress({N + "upstream-hash-by": "$binary_remote_addr"})],
        "ingress-nginx",
        AffinitySpec(mode="client-ip"),
    ),
    (
        "traefik v1",
        [service({T + "affinity": "true", T + "session-cookie-name": "sticky"})],
        "traefik-v1",
        AffinitySpec(mode="cookie", cookie_name="sticky", cookie_httponly=False),
    ),
    (
        "traefik v2 annotations",
        [
            service(
                {
                    T + "service.sticky.cookie": "true",
                    T + "service.sticky.cookie.name": "s",
                    T + "service.sticky.cookie.secure": "true",
                    T + "service.sticky.cookie.httponly": "true",
                    T + "service.sticky.cookie.samesite": "none",
                }
            )
        ],
        "traefik-v2",
        AffinitySpec(mode="cookie", cookie_name="s", cookie_secure=True, cookie_samesite="None"),
    ),
    (
        "traefik IngressRoute sticky",
        [
            service(),
            {
                "apiVersion": "traefik.io/v1alpha1",
                "kind": "IngressRoute",
                "metadata": {"name": "r"},
                "spec": {
                    "routes": [
                        {
                            "services": [
                                {"name": "chat", "sticky": {"cookie": {"name": "c", "maxAge": 600}}}
                            ]
                        }
                    ]
                },
            },
        ],
        "traefik-v3",
        AffinitySpec(
            mode="cookie",
            cookie_name="c",
            cookie_ttl=600,
            cookie_httponly=False,
            cookie_samesite=None,
        ),
    ),
    (
        "alibaba persistence",
        [service({ALI: "1800"}, externalTrafficPolicy="Local", sessionAffinity="ClientIP")],
        "alibaba",
        AffinitySpec(mode="client-ip", client_ip_timeout=1800),
    ),
]


@pytest.mark.parametrize(
    ("objects", "dialect", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_derive(objects: list[dict[str, Any]], dialect: str, want: AffinitySpec) -> None:
    got = derive(objects)
    assert (got.dialect, got.spec) == (dialect, want)
    assert got.notes  # every derivation says where it came from


def test_derive_names_the_ignored_dialects() -> None:
    objects = [
        service(BC, sessionAffinity="ClientIP"),
        backend_config({"affinityType": "CLIENT_IP"}),
    ]
    spec, notes = derive_affinity(objects)
    assert spec.mode == "client-ip"
    assert any("ignored: kube-proxy" in n for n in notes)


def test_derive_notes_alibaba_requirements() -> None:
    _, notes = derive_affinity([service({ALI: "600"})])
    assert any("externalTrafficPolicy" in n for n in notes)
    assert any("sessionAffinity" in n for n in notes)


def test_derive_by_service_name() -> None:
    other = service(sessionAffinity="ClientIP")
    other["metadata"]["name"] = "other"
    assert derive([service(), other], "other").spec.mode == "client-ip"
    assert derive([service(), other], "chat").spec.mode == "none"
    assert derive([service()], "missing").dialect == "none"


def test_bad_backend_config_annotation_is_noted_not_raised() -> None:
    spec, notes = derive_affinity([service({"cloud.google.com/backend-config": "bc"})])
    assert spec.mode == "none"
    assert any("not JSON" in n for n in notes)


# --- round trips: what a platform can express survives render -> derive ------------------------
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
ttls = st.one_of(st.none(), st.integers(min_value=300, max_value=10**7))
samesites = st.sampled_from(["Lax", "Strict", "None"])

#: target -> the AffinitySpec fields that target's dialect carries
CARRIED: dict[tuple[str, int], tuple[str, ...]] = {
    ("gke", 3): ("mode", "cookie_ttl"),
    ("ingress-nginx", 3): (
        "mode",
        "cookie_name",
        "cookie_ttl",
        "cookie_samesite",
        "cookie_mode",
        "cookie_secure",
    ),
    ("traefik", 1): ("mode", "cookie_name"),
    ("traefik", 2): (
        "mode",
        "cookie_name",
        "cookie_ttl",
        "cookie_samesite",
        "cookie_secure",
        "cookie_httponly",
    ),
    ("traefik", 3): (
        "mode",
        "cookie_name",
        "cookie_ttl",
        "cookie_samesite",
        "cookie_secure",
        "cookie_httponly",
    ),
}


def project(spec: AffinitySpec, fields: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(spec, f) for f in fields)


@pytest.mark.parametrize(("target", "version"), list(CARRIED), ids=lambda v: str(v))
@settings(max_examples=40, deadline=None)
@given(
    name=names,
    ttl=ttls,
    samesite=samesites,
    secure=st.booleans(),
    httponly=st.booleans(),
    mode=st.sampled_from(["persistent", "balanced"]),
)
def test_cookie_round_trip(
    target: str,
    version: int,
    name: str,
    ttl: int | None,
    samesite: Any,
    secure: bool,
    httponly: bool,
    mode: Any,
) -> None:
    spec = AffinitySpec(
        mode="cookie",
        cookie_name=name,
        cookie_ttl=ttl,
        cookie_samesite=samesite,
        cookie_secure=secure,
        cookie_httponly=httponly,
        cookie_mode=mode,
    )
    rendered = render(target, spec, RenderOptions(name="chat", traefik_version=version))
    got = derive(rendered.manifests, "chat").spec
    fields = CARRIED[(target, version)]
    if samesite == "None" and not secure and "cookie_secure" in fields:
        # rendered Secure, and said so: browsers drop a SameSite=None cookie otherwise
        spec = replace(spec, cookie_secure=True)
        assert any("SameSite=None" in n for n in rendered.notes)
    assert project(got, fields) == project(spec, fields)


@pytest.mark.parametrize("target", ["kube-proxy", "alibaba", "gke", "ingress-nginx"])
@given(timeout=st.integers(min_value=1, max_value=3600))
@settings(max_examples=30, deadline=None)
def test_client_ip_round_trip(target: str, timeout: int) -> None:
    spec = AffinitySpec(mode="client-ip", client_ip_timeout=timeout)
    if target == "alibaba" and timeout < 45:  # lint's cookie-ttl-short error: refused
        with pytest.raises(UsageError, match="cookie-ttl-short"):
            render(target, spec, RenderOptions(name="chat"))
        return
    got = derive(render(target, spec, RenderOptions(name="chat")).manifests, "chat").spec
    assert got.mode == "client-ip"
    if target in ("kube-proxy", "alibaba"):
        assert got.client_ip_timeout == timeout


@given(
    source=st.sampled_from(["header", "cookie", "query"]),
    key=st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True),
)
def test_nginx_hash_round_trip(source: Any, key: str) -> None:
    spec = AffinitySpec(mode="hash", hash_source=source, hash_key=key)
    got = derive(render("ingress-nginx", spec, RenderOptions(name="chat")).manifests, "chat").spec
    assert (got.mode, got.hash_source) == ("hash", source)
    # nginx variables are case-insensitive for headers; cookie and query names keep their case
    # only up to what nginx's $cookie_/$arg_ lookups do (they lower-case in the variable name).
    assert (got.hash_key or "").lower() == key.lower()


def test_round_trip_can_fail() -> None:
    """The projection compares real values: a different spec derives differently."""
    spec = AffinitySpec(mode="cookie", cookie_name="a", cookie_ttl=600)
    got = derive(render("ingress-nginx", spec, RenderOptions(name="chat")).manifests, "chat").spec
    assert got != replace(spec, cookie_name="b")


def _corpus(name: str) -> list[dict[str, Any]]:
    from pathlib import Path as _Path

    import yaml as _yaml

    path = _Path(__file__).resolve().parents[2] / "fixtures" / "k8s" / "good" / name
    return [d for d in _yaml.safe_load_all(path.read_text()) if d]


SERVICE_CHAT = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat"}, "spec": {}}


def test_httproute_session_persistence() -> None:
    d = derive(_corpus("gateway-api-cookie.yaml"), "chat")
    assert (d.dialect, d.spec.mode, d.spec.cookie_name, d.spec.cookie_ttl) == (
        "gateway-api", "cookie", "chat-session", 12 * 3600,
    )  # fmt: skip
    assert "HTTPRoute chat rule 0 sessionPersistence Cookie" in d.notes


def test_backend_lb_policy_and_route_precedence() -> None:
    objects = [SERVICE_CHAT, *_corpus("gateway-backendlbpolicy.yaml")]
    d = derive(objects, "chat")
    # the GRPCRoute rule (a Header session) overrides the BackendLBPolicy (GEP-1619)
    assert (d.dialect, d.spec.mode, d.spec.hash_key) == ("gateway-api", "hash", "x-chat-session")
    assert any("gateway-api-policy" in n for n in d.notes)
    policy_only = [o for o in objects if o.get("kind") != "GRPCRoute"]
    d = derive(policy_only, "chat")
    # a Session cookie (the default lifetime): absoluteTimeout bounds it at the gateway only
    assert (d.dialect, d.spec.mode, d.spec.cookie_ttl) == ("gateway-api-policy", "cookie", None)


def test_gcp_backend_policy() -> None:
    d = derive(_corpus("gke-gateway.yaml"), "chat")
    assert (d.dialect, d.spec.cookie_name, d.spec.cookie_ttl) == ("gke-gateway", "GCLB", 86400)
    # the twin: a policy aimed at another Service does not apply
    other = [o for o in _corpus("gke-gateway.yaml")]
    for o in other:
        if o["kind"] == "GCPBackendPolicy":
            o["spec"]["targetRef"]["name"] = "lobby"
    assert derive(other, "chat").spec.mode == "none"


def test_gateway_route_to_another_service_does_not_apply() -> None:
    objects = _corpus("gateway-api-cookie.yaml")
    for o in objects:
        if o["kind"] == "HTTPRoute":
            o["spec"]["rules"][0]["backendRefs"][0]["name"] = "lobby"
    assert derive(objects, "chat").spec.mode == "none"
