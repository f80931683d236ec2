"""SANS-IO: a canary beside the rendered manifests: a second Service, NAME-canary, and the
weight written the way each platform reads it (what ``limpet.k8s.canary`` reads back):

- gateway-api: the HTTPRoute rule's ``backendRefs`` carry both Services with their weights;
- ingress-nginx: a second Ingress with ``canary: "true"`` and ``canary-weight``.

The canary pods are labelled ``app.kubernetes.io/name: NAME-canary`` (the stable Service's
selector does not pick them up). Those platforms weigh every request, pinned or not: with
cookie affinity, ``limpet k8s lint`` says so (``canary-not-sticky``), and the render carries
that warning; limpet's own canary groups weigh new sessions only (docs/proxy.md).
"""

from __future__ import annotations

from dataclasses import replace

from limpet.errors import UsageError
from limpet.k8s import dialects as d
from limpet.k8s.canary import NGINX_CANARY, NGINX_CANARY_WEIGHT
from limpet.k8s.objects import Rendered, RenderOptions, _ingress, _service

CANARY_TARGETS = ("gateway-api", "ingress-nginx")


def add_canary(target: str, rendered: Rendered, o: RenderOptions) -> None:
    """Add the canary Service and weight to ``rendered`` (in place)."""
    weight = o.canary_weight
    assert weight is not None
    if target not in CANARY_TARGETS:
        raise UsageError(
            f"--canary-weight is rendered for {' and '.join(CANARY_TARGETS)}, not {target} "
            "(limpet's own canary groups: pools.NAME.canary, docs/proxy.md)"
        )
    canary = f"{o.name}-canary"
    rendered.manifests.append(_service(replace(o, name=canary)))
    rendered.notes.append(
        f"label the canary pods app.kubernetes.io/name: {canary}; {weight} % of the traffic "
        f"goes to Service {canary}"
    )
    if target == "gateway-api":
        for m in rendered.manifests:
            if d.kind_of(m) == "HTTPRoute":
                for rule in m["spec"]["rules"]:
                    refs = rule["backendRefs"]
                    refs[0]["weight"] = 100 - weight
                    refs.append({"name": canary, "port": o.port, "weight": weight})
        return
    ingress = _ingress(
        replace(o, name=canary),
        class_name="nginx",
        annotations={NGINX_CANARY: "true", NGINX_CANARY_WEIGHT: str(weight)},
    )
    rendered.manifests.append(ingress)
