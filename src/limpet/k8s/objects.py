"""SANS-IO: the plain objects every renderer builds with: the workload's options, the result,
and the Service and Ingress every target shares (limpet.k8s.render, limpet.k8s.render_canary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from limpet.k8s import dialects as d

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Everything about the workload that is not the affinity rule itself."""

    name: str = "app"
    namespace: str = "default"
    port: int = 80
    target_port: int = 8080
    image: str = "ghcr.io/limpet/limpet:latest"
    replicas: int = 3
    host: str = "app.example.com"
    traefik_version: int = 3
    secret: str = ""  # the limpet target's shared secret; empty -> a placeholder to replace
    limpet_image: str = "ghcr.io/limpet/limpet:latest"
    gateway_class: str = ""  # empty: the target's default (see --gateway-class)
    health_path: str = "/healthz"  # what the gke-gateway HealthCheckPolicy probes
    #: the limpet target's hub broker URL; empty -> a single in-cluster redis-server
    broker: str = ""
    #: percent of the traffic to a second Service, NAME-canary (None: no canary)
    canary_weight: int | None = None


@dataclass(slots=True)
class Rendered:
    manifests: list[Manifest]
    notes: list[str] = field(default_factory=list)
    #: lint warnings of the output, also printed by ``render`` (errors are refused instead)
    warnings: list[str] = field(default_factory=list)


def _meta(o: RenderOptions, name: str, **extra: Any) -> Manifest:
    meta: Manifest = {"name": name, "namespace": o.namespace}
    labels = extra.pop("labels", None)
    meta["labels"] = labels or {"app.kubernetes.io/name": o.name}
    meta.update({k: v for k, v in extra.items() if v})
    return meta


def _selector(o: RenderOptions, component: str = "") -> dict[str, str]:
    labels = {"app.kubernetes.io/name": o.name}
    if component:
        labels["app.kubernetes.io/component"] = component
    return labels


def _service(
    o: RenderOptions,
    *,
    name: str | None = None,
    type_: str = "ClusterIP",
    annotations: dict[str, str] | None = None,
    spec_extra: Manifest | None = None,
    component: str = "",
    port: int | None = None,
    target_port: int | None = None,
) -> Manifest:
    spec: Manifest = {"type": type_, "selector": _selector(o, component)}
    spec.update(spec_extra or {})
    spec["ports"] = [
        {
            "name": "http",
            "port": port or o.port,
            "targetPort": target_port or o.target_port,
            "protocol": "TCP",
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(o, name or o.name, annotations=annotations),
        "spec": spec,
    }


def _ingress(
    o: RenderOptions,
    *,
    class_name: str | None = None,
    class_annotation: str | None = None,
    annotations: dict[str, str] | None = None,
    service: str | None = None,
) -> Manifest:
    notes = dict(annotations or {})
    if class_annotation:
        notes[d.INGRESS_CLASS_ANNOTATION] = class_annotation
    spec: Manifest = {}
    if class_name:
        spec["ingressClassName"] = class_name
    backend = {"service": {"name": service or o.name, "port": {"number": o.port}}}
    spec["rules"] = [
        {
            "host": o.host,
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
        }
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(o, o.name, annotations=notes),
        "spec": spec,
    }
