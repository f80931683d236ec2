"""Whatever the manifests hold, lint and derive answer with findings or notes, never a crash."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.k8s.dialects import derive
from limpet.k8s.lint import lint_sources

KEYS = st.sampled_from(
    [
        "apiVersion", "kind", "metadata", "spec", "annotations", "name", "namespace",
        "sessionAffinity", "sessionAffinityConfig", "clientIP", "timeoutSeconds", "type",
        "externalTrafficPolicy", "affinityType", "affinityCookieTtlSec", "rules", "http", "paths",
        "backend", "service", "routes", "services", "sticky", "cookie", "maxAge", "weighted",
        "ingressClassName", "defaultBackend", "ports", "port",
        "nginx.ingress.kubernetes.io/affinity", "cloud.google.com/backend-config",
        "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-persistence-timeout",
        "sessionPersistence", "sessionName", "absoluteTimeout", "idleTimeout", "cookieConfig",
        "lifetimeType", "backendRefs", "targetRef", "targetRefs", "default", "cookieTtlSec",
        "group", "ingress.kubernetes.io/affinity", "nginx.ingress.kubernetes.io/affinity-mode",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=8),
    st.sampled_from(["Service", "Ingress", "BackendConfig", "v1", "cloud.google.com/v1",
                     "traefik.io/v1alpha1", "IngressRoute", "TraefikService", "ClientIP",
                     "GENERATED_COOKIE", "LoadBalancer", "cookie", '{"default": "x"}', "x",
                     "gateway.networking.k8s.io/v1", "HTTPRoute", "GRPCRoute", "BackendLBPolicy",
                     "networking.gke.io/v1", "GCPBackendPolicy", "Permanent", "Header", "1d",
                     "1h30m", "CLIENT_IP", "\u00a0x", "\u201cx\u201d"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)
DOCUMENTS = st.lists(st.dictionaries(KEYS, VALUES, max_size=6), max_size=4)


@settings(max_examples=150, deadline=None)
@given(DOCUMENTS)
def test_lint_and_derive_never_crash(documents: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(documents)
    for finding in lint_sources([("x.yaml", text)]):
        assert finding.line >= 1 and finding.rule and finding.hint
    derive(documents)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_lint_of_any_text_never_crashes(text: str) -> None:
    lint_sources([("x.yaml", text)])
