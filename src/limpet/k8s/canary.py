"""SANS-IO: canary weights that users already write, read into one CanarySplit.

Three shapes say "send N % of the traffic to another Service":

- Gateway API: an ``HTTPRoute``/``GRPCRoute`` rule whose ``backendRefs`` name two Services with
  ``weight`` (default 1 each, GEP-1619's neighbour in the spec: "weight ... proportion of
  requests forwarded"); the Service asked about is stable, the other the canary;
- ingress-nginx: a second Ingress with ``nginx.ingress.kubernetes.io/canary: "true"`` and
  ``canary-weight`` (out of ``canary-weight-total``, default 100), for the same host and path as
  the main Ingress; its backend Service is the canary;
- Traefik: a ``TraefikService`` with ``spec.weighted.services`` [{name, weight}, ...].

The result is what ``pools.NAME.canary`` and ``group: canary`` say in limpet's config. Those
controllers apply the weight per request (ingress-nginx #3717, #8246, #12444: a pinned user
flaps between versions or never sees the canary); limpet applies it to new sessions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from limpet.k8s import dialects as d

NGINX_CANARY = d.NGINX + "canary"
NGINX_CANARY_WEIGHT = d.NGINX + "canary-weight"
NGINX_CANARY_TOTAL = d.NGINX + "canary-weight-total"


@dataclass(frozen=True, slots=True)
class CanarySplit:
    stable: str  # Service name
    canary: str  # Service name
    percent: int  # of new sessions to the canary, 0..100
    dialect: str
    notes: tuple[str, ...] = ()


def _percent(part: int, total: int) -> int:
    return max(0, min(100, round(100 * part / total))) if total > 0 else 0


def from_gateway_routes(service: str, objects: Sequence[Mapping[str, Any]]) -> CanarySplit | None:
    for obj in objects:
        if d.kind_of(obj) not in d.GATEWAY_ROUTE_KINDS or d.group_of(obj) != d.GATEWAY_GROUP:
            continue
        for rule in d.get(obj, "spec", "rules") or []:
            refs = [r for r in (d.get(rule, "backendRefs") or []) if d.is_service_ref(r)]
            names = [str(r.get("name", "")) for r in refs]
            if service not in names or len(refs) != 2:
                continue
            mine = refs[names.index(service)]
            other = refs[1 - names.index(service)]
            w_mine = d.as_int(mine.get("weight", 1))
            w_other = d.as_int(other.get("weight", 1))
            if w_mine is None or w_other is None:
                continue
            return CanarySplit(
                service,
                str(other.get("name")),
                _percent(w_other, w_mine + w_other),
                "gateway-api",
                (f"{d.kind_of(obj)} {d.name_of(obj)}: backendRefs weights {w_mine}:{w_other}",),
            )
    return None


def _ingress_paths(ingress: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(host, path, backend Service) of every rule of an Ingress."""
    out = set()
    for rule in d.get(ingress, "spec", "rules") or []:
        host = str(d.get(rule, "host") or "")
        for p in d.get(rule, "http", "paths") or []:
            name = d.get(p, "backend", "service", "name")
            if isinstance(name, str):
                out.add((host, str(d.get(p, "path") or "/"), name))
    return out


def from_nginx(service: str, objects: Sequence[Mapping[str, Any]]) -> CanarySplit | None:
    ingresses = [o for o in objects if d.kind_of(o) == "Ingress"]
    mains = [i for i in ingresses if d.annotations_of(i).get(NGINX_CANARY) != "true"]
    routes = {(h, p) for i in mains for h, p, s in _ingress_paths(i) if s == service}
    for canary in ingresses:
        notes = d.annotations_of(canary)
        if notes.get(NGINX_CANARY) != "true":
            continue
        for host, path, name in _ingress_paths(canary):
            if (host, path) not in routes or name == service:
                continue
            weight = d.as_int(notes.get(NGINX_CANARY_WEIGHT, "0"))
            total = d.as_int(notes.get(NGINX_CANARY_TOTAL, "100"))
            if weight is None or total is None:
                continue
            return CanarySplit(
                service,
                name,
                _percent(weight, total),
                "ingress-nginx",
                (f"Ingress {d.name_of(canary)}: canary-weight {weight} of {total}",),
            )
    return None


def from_traefik(service: str, objects: Sequence[Mapping[str, Any]]) -> CanarySplit | None:
    for obj in objects:
        if d.kind_of(obj) != "TraefikService" or d.group_of(obj) not in d.TRAEFIK_GROUPS:
            continue
        services = d.get(obj, "spec", "weighted", "services") or []
        names = [str(d.get(s, "name") or "") for s in services]
        if service not in names or len(services) != 2:
            continue
        weights = [
            d.as_int(d.get(s, "weight") if d.get(s, "weight") is not None else 1) for s in services
        ]
        if None in weights:
            continue
        i = names.index(service)
        w_mine, w_other = int(weights[i] or 0), int(weights[1 - i] or 0)
        return CanarySplit(
            service,
            names[1 - i],
            _percent(w_other, w_mine + w_other),
            "traefik",
            (f"TraefikService {d.name_of(obj)}: weights {w_mine}:{w_other}",),
        )
    return None


def derive_canary(objects: Sequence[Mapping[str, Any]], service: str) -> CanarySplit | None:
    """The first canary split that names ``service`` as one of two weighted Services."""
    for reader in (from_gateway_routes, from_nginx, from_traefik):
        split = reader(service, objects)
        if split is not None:
            return split
    return None
