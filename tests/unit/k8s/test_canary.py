"""Canary weights read from the shapes users write: Gateway API backendRefs weights,
ingress-nginx canary annotations, Traefik weighted services."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from limpet.affinity.spec import AffinitySpec
from limpet.errors import UsageError
from limpet.k8s.canary import derive_canary, from_gateway_routes, from_nginx, from_traefik
from limpet.k8s.render import RenderOptions, render


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat}
spec:
  rules:
    - backendRefs:
        - {name: chat-v1, port: 80, weight: 90}
        - {name: chat-v2, port: 80, weight: 10}
"""

NGINX = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: chat}
spec:
  rules:
    - host: chat.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: chat-v1, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: chat-canary
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-weight: "5"
    nginx.ingress.kubernetes.io/canary-weight-total: "50"
spec:
  rules:
    - host: chat.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: chat-v2, port: {number: 80}}}}
"""

TRAEFIK = """
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: chat}
spec:
  weighted:
    services:
      - {name: chat-v1, port: 80, weight: 3}
      - {name: chat-v2, port: 80, weight: 1}
"""


def test_gateway_api_backend_ref_weights() -> None:
    split = from_gateway_routes("chat-v1", docs(GATEWAY))
    assert split is not None
    assert (split.stable, split.canary, split.percent, split.dialect) == (
        "chat-v1", "chat-v2", 10, "gateway-api"
    )  # fmt: skip
    # asked from the other side, the other Service is the "canary" with 90 %
    other = from_gateway_routes("chat-v2", docs(GATEWAY))
    assert other is not None and other.percent == 90


def test_ingress_nginx_canary_annotations() -> None:
    split = from_nginx("chat-v1", docs(NGINX))
    assert split is not None
    assert (split.canary, split.percent, split.dialect) == ("chat-v2", 10, "ingress-nginx")


def test_traefik_weighted_service() -> None:
    split = from_traefik("chat-v1", docs(TRAEFIK))
    assert split is not None and (split.canary, split.percent) == ("chat-v2", 25)


def test_twins_without_a_weight_nothing_is_read() -> None:
    single = GATEWAY.replace("        - {name: chat-v2, port: 80, weight: 10}\n", "")
    assert derive_canary(docs(single), "chat-v1") is None
    not_canary = NGINX.replace('canary: "true"', 'canary: "false"')
    assert derive_canary(docs(not_canary), "chat-v1") is None
    other_host = NGINX.replace(
        "host: chat.example.com\n      http:\n        paths:\n          - {path: /, pathType: Prefix, backend: {service: {name: chat-v2",
        "host: other.example.com\n      http:\n        paths:\n          - {path: /, pathType: Prefix, backend: {service: {name: chat-v2",
    )
    assert derive_canary(docs(other_host), "chat-v1") is None
    assert derive_canary(docs(TRAEFIK), "unknown") is None


def test_bad_weights_are_ignored_not_raised() -> None:
    bad = NGINX.replace('canary-weight: "5"', 'canary-weight: "lots"')
    assert derive_canary(docs(bad), "chat-v1") is None
    zero_total = NGINX.replace('canary-weight-total: "50"', 'canary-weight-total: "0"')
    split = derive_canary(docs(zero_total), "chat-v1")
    assert split is not None and split.percent == 0


# -- render writes them, the readers read them back -------------------------------------------


@pytest.mark.parametrize(("target", "mode"), [("gateway-api", "cookie"), ("ingress-nginx", "none")])
@pytest.mark.parametrize("percent", [0, 10, 55, 100])
def test_rendered_canaries_read_back(target: str, mode: str, percent: int) -> None:
    rendered = render(
        target,
        AffinitySpec(mode=mode),  # type: ignore[arg-type]
        RenderOptions(name="chat", canary_weight=percent),
    )
    split = derive_canary(rendered.manifests, "chat")
    assert split is not None and (split.canary, split.percent) == ("chat-canary", percent)
    assert any(
        m["kind"] == "Service" and m["metadata"]["name"] == "chat-canary"
        for m in rendered.manifests
    )


def test_cookie_affinity_beside_an_nginx_canary_carries_the_lint_warning() -> None:
    rendered = render("ingress-nginx", AffinitySpec(mode="cookie"), RenderOptions(canary_weight=10))
    assert any("canary-not-sticky" in w for w in rendered.warnings)
    # twin: no canary, no warning
    plain = render("ingress-nginx", AffinitySpec(mode="cookie"), RenderOptions())
    assert not any("canary" in w for w in plain.warnings)


def test_canary_targets_and_range() -> None:
    with pytest.raises(UsageError, match="gateway-api and ingress-nginx"):
        render("gke", AffinitySpec(mode="cookie"), RenderOptions(canary_weight=10))
    with pytest.raises(UsageError, match=r"0\.\.100"):
        render("gateway-api", AffinitySpec(mode="cookie"), RenderOptions(canary_weight=101))
