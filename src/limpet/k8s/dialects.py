"""SANS-IO: the sticky-session settings users already write, read into one AffinitySpec.

Each dialect (Service sessionAffinity, GKE BackendConfig and GCPBackendPolicy, Gateway API
sessionPersistence and BackendLBPolicy, ingress-nginx, Traefik, Alibaba SLB) is a reader from manifests (plain dicts) to an AffinitySpec plus notes for the log. The writers
that go the other way live in ``render``; the names of annotations are kept here, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from limpet.affinity.spec import (
    CLIENT_IP_TIMEOUT_DEFAULT,
    CLIENT_IP_TIMEOUT_MAX,
    AffinitySpec,
    SameSite,
)

Obj = Mapping[str, Any]

# --- names, one place -------------------------------------------------------------------------
GKE_BACKEND_CONFIG = "cloud.google.com/backend-config"
GKE_BACKEND_CONFIG_BETA = "beta.cloud.google.com/backend-config"
GKE_NEG = "cloud.google.com/neg"
GKE_COOKIE = "GCLB"  # the name GKE gives its GENERATED_COOKIE; not configurable
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
NGINX = "nginx.ingress.kubernetes.io/"
NGINX_DEFAULT_COOKIE = "INGRESSCOOKIE"
TRAEFIK = "traefik.ingress.kubernetes.io/"
TRAEFIK_V1_AFFINITY = TRAEFIK + "affinity"
TRAEFIK_V1_COOKIE_NAME = TRAEFIK + "session-cookie-name"
TRAEFIK_STICKY = TRAEFIK + "service.sticky.cookie"
TRAEFIK_GROUPS = ("traefik.io", "traefik.containo.us")
ALIBABA = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
ALIBABA_PERSISTENCE = ALIBABA + "persistence-timeout"
ALIBABA_PROTOCOL_PORT = ALIBABA + "protocol-port"
#: Alibaba SLB accepts persistence-timeout 0..3600 seconds on a TCP listener.
ALIBABA_PERSISTENCE_MAX = 3600
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")
GKE_POLICY_GROUP = "networking.gke.io"
#: Gateway API Duration (GEP-2257), the pattern of the published CRDs: 1h30m, 500ms; no days.
GATEWAY_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
#: sessionPersistence.sessionName maxLength in the published CRDs.
GATEWAY_SESSION_NAME_MAX = 128
#: What a gateway calls its session when sessionName is unset ("implementation-specific").
GATEWAY_DEFAULT_SESSION = "(chosen by the gateway)"


@dataclass(frozen=True, slots=True)
class Derivation:
    """What a reader found: the spec, which dialect produced it, and notes for the log."""

    spec: AffinitySpec
    dialect: str
    notes: tuple[str, ...] = ()


# --- small accessors over untrusted dicts ------------------------------------------------------
def get(obj: Any, *path: str | int) -> Any:
    """``obj[p0][p1]...`` or None when any step is missing or of the wrong type."""
    for p in path:
        if isinstance(p, int):
            if not isinstance(obj, list) or p >= len(obj):
                return None
        elif not isinstance(obj, Mapping):
            return None
        obj = obj[p] if isinstance(p, int) else obj.get(p)
    return obj


def kind_of(obj: Obj) -> str:
    return str(obj.get("kind", ""))


def group_of(obj: Obj) -> str:
    api = str(obj.get("apiVersion", ""))
    return api.split("/", 1)[0] if "/" in api else ""


def name_of(obj: Obj) -> str:
    return str(get(obj, "metadata", "name") or "")


def namespace_of(obj: Obj) -> str:
    return str(get(obj, "metadata", "namespace") or "default")


def annotations_of(obj: Obj) -> dict[str, str]:
    value = get(obj, "metadata", "annotations")
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def as_int(value: Any) -> int | None:
    """An integer from a YAML int or an annotation string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def as_samesite(value: Any) -> SameSite | None:
    text = str(value or "").strip().lower()
    if text == "lax":
        return "Lax"
    if text == "strict":
        return "Strict"
    if text == "none":
        return "None"
    return None


def backend_config_refs(service: Obj) -> tuple[str, dict[str, str]]:
    """(annotation used, {port or "default": BackendConfig name}) of a Service; ValueError if bad.

    The annotation value is JSON: ``{"default": "bc"}`` or ``{"ports": {"80": "bc"}}``.
    """
    notes = annotations_of(service)
    for key in (GKE_BACKEND_CONFIG, GKE_BACKEND_CONFIG_BETA):
        if key in notes:
            try:
                value = json.loads(notes[key])
            except ValueError as exc:
                raise ValueError(f"{key} is not JSON: {exc}") from None
            if not isinstance(value, Mapping):
                raise ValueError(f'{key} must be a JSON object like {{"default": "NAME"}}')
            refs: dict[str, str] = {}
            if isinstance(value.get("default"), str):
                refs["default"] = value["default"]
            ports = value.get("ports")
            if isinstance(ports, Mapping):
                refs.update({str(p): str(n) for p, n in ports.items()})
            if not refs:
                raise ValueError(f'{key} names no BackendConfig ("default" or "ports")')
            return key, refs
    return "", {}


def neg_enabled(service: Obj) -> bool:
    """True when the Service asks for container-native load balancing (NEG) for Ingress."""
    raw = annotations_of(service).get(GKE_NEG)
    if raw is None:
        return False
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    return isinstance(value, Mapping) and value.get("ingress") is True


def ingress_class(ingress: Obj) -> str:
    """The class of an Ingress: the legacy annotation wins, as controllers read it first."""
    legacy = annotations_of(ingress).get(INGRESS_CLASS_ANNOTATION)
    if legacy:
        return legacy
    return str(get(ingress, "spec", "ingressClassName") or "")


def ingress_backends(ingress: Obj) -> set[str]:
    """Names of the Services an Ingress sends traffic to (default backend and every path)."""
    names: set[str] = set()
    for backend in [get(ingress, "spec", "defaultBackend"), get(ingress, "spec", "backend")]:
        if isinstance(backend, Mapping):
            names.add(str(get(backend, "service", "name") or backend.get("serviceName") or ""))
    rules = get(ingress, "spec", "rules")
    for rule in rules if isinstance(rules, list) else []:
        paths = get(rule, "http", "paths")
        for path in paths if isinstance(paths, list) else []:
            b = get(path, "backend")
            if isinstance(b, Mapping):
                names.add(str(get(b, "service", "name") or b.get("serviceName") or ""))
    names.discard("")
    return names


def parse_duration(text: Any) -> float | None:
    """Seconds of a Gateway API Duration (``1h30m``, ``500ms``); None when it does not match."""
    if not isinstance(text, str) or not GATEWAY_DURATION.match(text):
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|h|m|s)", text))


def format_duration(seconds: int) -> str:
    """A Gateway API Duration for whole seconds; 100000 s is 27h46m40s (at most 5 digits each)."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def route_backend_refs(route: Obj) -> list[tuple[int, int, Mapping[str, Any]]]:
    """(rule index, backendRef index, backendRef) of every backendRef of an HTTPRoute/GRPCRoute."""
    out: list[tuple[int, int, Mapping[str, Any]]] = []
    rules = get(route, "spec", "rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        refs = get(rule, "backendRefs")
        for j, ref in enumerate(refs if isinstance(refs, list) else []):
            if isinstance(ref, Mapping):
                out.append((i, j, ref))
    return out


def is_service_ref(ref: Any) -> bool:
    """A Gateway API reference to a core Service (group "" and kind Service are the defaults)."""
    return (
        isinstance(ref, Mapping)
        and str(ref.get("group") or "") == ""
        and str(ref.get("kind") or "Service") == "Service"
    )


def policy_target_refs(policy: Obj) -> list[Mapping[str, Any]]:
    """A policy's ``targetRefs`` (Gateway API) or single ``targetRef`` (GKE policies)."""
    refs = get(policy, "spec", "targetRefs")
    out = [r for r in refs if isinstance(r, Mapping)] if isinstance(refs, list) else []
    single = get(policy, "spec", "targetRef")
    if isinstance(single, Mapping):
        out.append(single)
    return out


# --- readers -----------------------------------------------------------------------------------
def from_service(service: Obj) -> Derivation:
    """Service ``spec.sessionAffinity`` (kube-proxy): ClientIP pins by source address."""
    affinity = get(service, "spec", "sessionAffinity")
    if affinity != "ClientIP":
        return Derivation(AffinitySpec(mode="none"), "kube-proxy", ("sessionAffinity is None",))
    timeout = as_int(get(service, "spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"))
    notes: list[str] = []
    if timeout is None:
        timeout = CLIENT_IP_TIMEOUT_DEFAULT
        notes.append(f"timeoutSeconds not set; Kubernetes default {timeout} s")
    elif not 0 < timeout <= CLIENT_IP_TIMEOUT_MAX:
        notes.append(f"timeoutSeconds {timeout} out of range; using {CLIENT_IP_TIMEOUT_DEFAULT}")
        timeout = CLIENT_IP_TIMEOUT_DEFAULT
    spec = AffinitySpec(mode="client-ip", client_ip_timeout=timeout)
    return Derivation(spec, "kube-proxy", tuple(notes))


def from_backend_config(backend_config: Obj) -> Derivation:
    """GKE BackendConfig ``spec.sessionAffinity``: affinityType and affinityCookieTtlSec."""
    block = get(backend_config, "spec", "sessionAffinity")
    kind = str(get(block, "affinityType") or "NONE").upper()
    ttl = as_int(get(block, "affinityCookieTtlSec"))
    notes: list[str] = [f"BackendConfig {name_of(backend_config)} affinityType {kind}"]
    if kind == "GENERATED_COOKIE":
        spec = AffinitySpec(mode="cookie", cookie_name=GKE_COOKIE, cookie_ttl=ttl or None)
    elif kind == "HTTP_COOKIE":
        name = str(get(block, "httpCookie", "name") or GKE_COOKIE)
        ttl = as_int(get(block, "httpCookie", "ttl", "seconds")) or ttl
        spec = AffinitySpec(mode="cookie", cookie_name=name, cookie_ttl=ttl or None)
    elif kind.startswith("CLIENT_IP"):
        spec = AffinitySpec(mode="client-ip")
        if kind != "CLIENT_IP":
            notes.append(f"{kind} approximated by client-ip")
    elif kind == "HEADER_FIELD":
        header = get(block, "headerField") or get(block, "httpHeaderName")
        if isinstance(header, str) and header:
            spec = AffinitySpec(mode="hash", hash_source="header", hash_key=header)
        else:
            spec = AffinitySpec(mode="none")
            notes.append("HEADER_FIELD without a header name; no affinity")
    else:
        spec = AffinitySpec(mode="none")
        if kind != "NONE":
            notes.append(f"affinityType {kind} not understood; no affinity")
    return Derivation(spec, "gke", tuple(notes))


def _nginx_hash(expr: str) -> AffinitySpec | None:
    """ingress-nginx ``upstream-hash-by`` (an nginx variable) as a limpet hash rule."""
    expr = expr.strip()
    if expr in ("$remote_addr", "$binary_remote_addr"):
        return AffinitySpec(mode="client-ip")
    for prefix, source in (("$http_", "header"), ("$cookie_", "cookie"), ("$arg_", "query")):
        if expr.startswith(prefix) and len(expr) > len(prefix):
            key = expr[len(prefix) :]
            if source == "header":  # nginx lower-cases and turns dashes into underscores
                key = "-".join(part.capitalize() for part in key.split("_"))
            return AffinitySpec(mode="hash", hash_source=source, hash_key=key)  # type: ignore[arg-type]
    return None


def from_nginx(ingress: Obj) -> Derivation | None:
    """ingress-nginx Ingress annotations; None when the Ingress sets no affinity."""
    notes = annotations_of(ingress)
    affinity = notes.get(NGINX + "affinity")
    hash_by = notes.get(NGINX + "upstream-hash-by")
    log: list[str] = [f"Ingress {name_of(ingress)} (ingress-nginx)"]
    if affinity == "cookie":
        ttl = as_int(notes.get(NGINX + "session-cookie-max-age"))
        if ttl is None:
            ttl = as_int(notes.get(NGINX + "session-cookie-expires"))
        samesite = as_samesite(notes.get(NGINX + "session-cookie-samesite"))
        mode = notes.get(NGINX + "affinity-mode", "balanced")
        spec = AffinitySpec(
            mode="cookie",
            cookie_name=notes.get(NGINX + "session-cookie-name", NGINX_DEFAULT_COOKIE),
            cookie_ttl=ttl,
            cookie_path=notes.get(NGINX + "session-cookie-path", "/"),
            cookie_samesite=samesite,
            cookie_secure=as_bool(notes.get(NGINX + "session-cookie-secure")) or False,
            cookie_mode="persistent" if mode == "persistent" else "balanced",
        )
        if as_bool(notes.get(NGINX + "session-cookie-change-on-failure")) is False:
            log.append("session-cookie-change-on-failure false: limpet repins on failure anyway")
        return Derivation(spec, "ingress-nginx", tuple(log))
    if affinity is not None:
        log.append(f"affinity {affinity!r} is not 'cookie'; ignored")
    if hash_by:
        spec_or_none = _nginx_hash(hash_by)
        if spec_or_none is None:
            log.append(f"upstream-hash-by {hash_by!r} not understood; no affinity")
            return Derivation(AffinitySpec(mode="none"), "ingress-nginx", tuple(log))
        return Derivation(spec_or_none, "ingress-nginx", tuple(log))
    return None


def _traefik_cookie(block: Any, default_name: str) -> AffinitySpec:
    return AffinitySpec(
        mode="cookie",
        cookie_name=str(get(block, "name") or default_name),
        cookie_secure=as_bool(get(block, "secure")) or False,
        cookie_httponly=bool(as_bool(get(block, "httpOnly"))),
        cookie_samesite=as_samesite(get(block, "sameSite")),
        cookie_ttl=as_int(get(block, "maxAge")) or None,
    )


def from_traefik_service_annotations(service: Obj) -> Derivation | None:
    """Traefik v1 (``affinity``) and v2/v3 (``service.sticky.cookie*``) Service annotations."""
    notes = annotations_of(service)
    default_name = f"traefik_{name_of(service)}"
    if as_bool(notes.get(TRAEFIK_STICKY)):
        block = {
            "name": notes.get(TRAEFIK_STICKY + ".name"),
            "secure": notes.get(TRAEFIK_STICKY + ".secure"),
            "httpOnly": notes.get(TRAEFIK_STICKY + ".httponly"),
            "sameSite": notes.get(TRAEFIK_STICKY + ".samesite"),
            "maxAge": notes.get(TRAEFIK_STICKY + ".maxage"),
        }
        return Derivation(_traefik_cookie(block, default_name), "traefik-v2", ())
    if as_bool(notes.get(TRAEFIK_V1_AFFINITY)):
        name = notes.get(TRAEFIK_V1_COOKIE_NAME, default_name)
        spec = AffinitySpec(mode="cookie", cookie_name=name, cookie_httponly=False)
        return Derivation(spec, "traefik-v1", ())
    return None


def from_traefik_crds(service_name: str, objects: Sequence[Obj]) -> Derivation | None:
    """IngressRoute / TraefikService ``sticky.cookie`` blocks that reach ``service_name``."""
    for obj in objects:
        if group_of(obj) not in TRAEFIK_GROUPS:
            continue
        kind = kind_of(obj)
        services: list[Any] = []
        if kind == "IngressRoute":
            routes = get(obj, "spec", "routes")
            for route in routes if isinstance(routes, list) else []:
                found = get(route, "services")
                services += found if isinstance(found, list) else []
        elif kind == "TraefikService":
            weighted = get(obj, "spec", "weighted")
            found = get(weighted, "services")
            members = found if isinstance(found, list) else []
            block = get(weighted, "sticky", "cookie")
            if block is not None and any(get(m, "name") == service_name for m in members):
                spec = _traefik_cookie(block, f"traefik_{service_name}")
                return Derivation(spec, "traefik-v3", (f"TraefikService {name_of(obj)}",))
            continue
        for svc in services:
            block = get(svc, "sticky", "cookie")
            if get(svc, "name") == service_name and block is not None:
                spec = _traefik_cookie(block, f"traefik_{service_name}")
                return Derivation(spec, "traefik-v3", (f"IngressRoute {name_of(obj)}",))
    return None


def from_alibaba(service: Obj) -> Derivation | None:
    """Alibaba SLB TCP-listener persistence (client-ip); None when not annotated."""
    raw = annotations_of(service).get(ALIBABA_PERSISTENCE)
    if raw is None:
        return None
    timeout = as_int(raw)
    notes: list[str] = []
    if timeout is None or timeout <= 0:
        return Derivation(AffinitySpec(mode="none"), "alibaba", ("persistence-timeout 0: off",))
    if get(service, "spec", "externalTrafficPolicy") != "Local":
        notes.append("persistence needs externalTrafficPolicy: Local to keep the client IP")
    if get(service, "spec", "sessionAffinity") != "ClientIP":
        notes.append("persistence needs sessionAffinity: ClientIP for the node-to-pod hop")
    spec = AffinitySpec(mode="client-ip", client_ip_timeout=timeout)
    return Derivation(spec, "alibaba", tuple(notes))


def from_session_persistence(block: Any, where: str) -> Derivation:
    """Gateway API ``sessionPersistence`` (GEP-1619), as on an HTTPRoute rule or BackendLBPolicy.

    Cookie: the gateway issues a cookie named ``sessionName``; with ``lifetimeType: Permanent``
    its lifetime is ``absoluteTimeout``. Header: the gateway issues a header the client echoes;
    limpet's nearest rule hashes that header.
    """
    kind = str(get(block, "type") or "Cookie")
    name = get(block, "sessionName")
    notes = [f"{where} sessionPersistence {kind}"]
    if not isinstance(name, str) or not name:
        name = GATEWAY_DEFAULT_SESSION
        notes.append("sessionName not set: the gateway chooses the name")
    if kind == "Header":
        notes.append("a gateway-issued session header, approximated by hashing that header")
        return Derivation(
            AffinitySpec(mode="hash", hash_source="header", hash_key=name), "gateway-api",
            tuple(notes),
        )  # fmt: skip
    ttl: int | None = None
    absolute = parse_duration(get(block, "absoluteTimeout"))
    if get(block, "cookieConfig", "lifetimeType") == "Permanent" and absolute:
        ttl = max(1, int(absolute))
    elif absolute:
        notes.append(
            "absoluteTimeout bounds the session at the gateway; the cookie is a session cookie"
        )
    spec = AffinitySpec(mode="cookie", cookie_name=name, cookie_ttl=ttl)
    return Derivation(spec, "gateway-api", tuple(notes))


def from_gateway_routes(service_name: str, objects: Sequence[Obj]) -> Derivation | None:
    """The first HTTPRoute/GRPCRoute rule with sessionPersistence whose backendRefs reach the Service."""
    for obj in objects:
        if group_of(obj) != GATEWAY_GROUP or kind_of(obj) not in GATEWAY_ROUTE_KINDS:
            continue
        rules = get(obj, "spec", "rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            block = get(rule, "sessionPersistence")
            refs = get(rule, "backendRefs")
            reaches = any(
                is_service_ref(r) and get(r, "name") == service_name
                for r in (refs if isinstance(refs, list) else [])
            )
            if isinstance(block, Mapping) and reaches:
                return from_session_persistence(block, f"{kind_of(obj)} {name_of(obj)} rule {i}")
    return None


def _targets(policy: Obj, service_name: str) -> bool:
    return any(
        is_service_ref(r) and get(r, "name") == service_name for r in policy_target_refs(policy)
    )


def from_backend_lb_policy(service_name: str, objects: Sequence[Obj]) -> Derivation | None:
    """A Gateway API BackendLBPolicy with sessionPersistence that targets the Service."""
    for obj in objects:
        if group_of(obj) != GATEWAY_GROUP or kind_of(obj) != "BackendLBPolicy":
            continue
        block = get(obj, "spec", "sessionPersistence")
        if isinstance(block, Mapping) and _targets(obj, service_name):
            derivation = from_session_persistence(block, f"BackendLBPolicy {name_of(obj)}")
            return replace(derivation, dialect="gateway-api-policy")
    return None


def from_gcp_backend_policy(service_name: str, objects: Sequence[Obj]) -> Derivation | None:
    """GKE Gateway's GCPBackendPolicy ``spec.default.sessionAffinity`` on the Service."""
    for obj in objects:
        if group_of(obj) != GKE_POLICY_GROUP or kind_of(obj) != "GCPBackendPolicy":
            continue
        if not _targets(obj, service_name):
            continue
        block = get(obj, "spec", "default", "sessionAffinity")
        if not isinstance(block, Mapping):
            continue
        converted = {
            "sessionAffinity": {
                "affinityType": block.get("type"),
                "affinityCookieTtlSec": block.get("cookieTtlSec"),
            }
        }
        derivation = from_backend_config({"metadata": obj.get("metadata"), "spec": converted})
        notes = [f"GCPBackendPolicy {name_of(obj)} type {block.get('type') or 'NONE'}"]
        return Derivation(derivation.spec, "gke-gateway", (*notes, *derivation.notes[1:]))
    return None


def _find_service(objects: Sequence[Obj], name: str | None) -> Obj | None:
    services = [o for o in objects if kind_of(o) == "Service" and group_of(o) == ""]
    if name is not None:
        services = [s for s in services if name_of(s) == name]
    return services[0] if services else None


def derive(objects: Sequence[Obj], service_name: str | None = None) -> Derivation:
    """The affinity users configured for a Service, from whichever dialect is present.

    Precedence, most specific first: GKE BackendConfig, GKE GCPBackendPolicy, Gateway API route
    sessionPersistence, BackendLBPolicy (a route rule overrides a policy, GEP-1619), ingress-nginx
    Ingress, Traefik CRDs, Traefik Service annotations, Alibaba SLB, Service sessionAffinity.
    The others found are noted.
    """
    service = _find_service(objects, service_name)
    if service is None:
        what = f"Service {service_name!r}" if service_name else "a Service"
        return Derivation(AffinitySpec(mode="none"), "none", (f"no {what} found",))
    name = name_of(service)
    found: list[Derivation] = []
    try:
        _, refs = backend_config_refs(service)
    except ValueError as exc:
        refs = {}
        found_note = str(exc)
    else:
        found_note = ""
    if refs:
        wanted = refs.get("default") or next(iter(refs.values()))
        for obj in objects:
            if kind_of(obj) == "BackendConfig" and name_of(obj) == wanted:
                found.append(from_backend_config(obj))
                break
        else:
            found_note = f"BackendConfig {wanted!r} referenced but not among the objects"
    for gateway in (
        from_gcp_backend_policy(name, objects),
        from_gateway_routes(name, objects),
        from_backend_lb_policy(name, objects),
    ):
        if gateway is not None:
            found.append(gateway)
    for obj in objects:
        if kind_of(obj) == "Ingress" and name in ingress_backends(obj):
            d = from_nginx(obj)
            if d is not None:
                found.append(d)
    for d_or_none in (
        from_traefik_crds(name, objects),
        from_traefik_service_annotations(service),
        from_alibaba(service),
    ):
        if d_or_none is not None:
            found.append(d_or_none)
    found.append(from_service(service))
    chosen = next((d for d in found if d.spec.mode != "none"), found[0])
    notes = [f"Service {namespace_of(service)}/{name}: affinity from {chosen.dialect}"]
    if found_note:
        notes.append(found_note)
    notes += chosen.notes
    others = sorted({d.dialect for d in found if d is not chosen and d.spec.mode != "none"})
    if others:
        notes.append(f"also configured, ignored: {', '.join(others)}")
    return replace(chosen, notes=tuple(notes))


def derive_affinity(
    objects: Sequence[Obj], service_name: str | None = None
) -> tuple[AffinitySpec, list[str]]:
    """The proxy's entry point: (spec, notes to log). Explicit limpet config overrides it."""
    derivation = derive(objects, service_name)
    return derivation.spec, list(derivation.notes)
