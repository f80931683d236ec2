"""SANS-IO: the mistakes people make with sticky-session manifests, found with their line.

``lint_sources`` takes (name, text) pairs and returns Findings; rules see every document of
every source at once, because a Service and its BackendConfig often live in different files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from limpet.affinity.spec import CLIENT_IP_TIMEOUT_MAX
from limpet.k8s import dialects as d
from limpet.k8s.yamlnodes import Document, Lookalike, expand_lists, lookalikes, parse

Severity = Literal["error", "warning"]

#: socket.io's default pingInterval (25 s) + pingTimeout (20 s): a cookie that expires sooner can
#: expire between two pings of a live session, and the next request lands on another replica.
COOKIE_TTL_ERROR = 45
#: Realtime sessions commonly outlive a few minutes; below this the pin lapses in normal use.
COOKIE_TTL_WARNING = 300

#: rule id -> (severity, what it catches); docs/kubernetes.md lists the same table.
RULES: dict[str, tuple[Severity, str]] = {
    "yaml-invalid": ("error", "the text is not valid YAML"),
    "yaml-tab-indent": ("error", "indentation contains a tab"),
    "yaml-duplicate-key": ("error", "a key repeated in one mapping (kubectl refuses it)"),
    "unicode-lookalike": (
        "error",
        "a Unicode space, smart quote or full-width character where YAML needs ASCII",
    ),
    "not-a-manifest": ("error", "a document without apiVersion and kind"),
    "affinity-misplaced": ("error", "sessionAffinity(Config) not directly under a Service spec"),
    "affinity-timeout-range": ("error", "timeoutSeconds outside 1..86400"),
    "affinity-config-ignored": (
        "warning",
        "sessionAffinityConfig without sessionAffinity ClientIP",
    ),
    "clientip-cluster-policy": ("warning", "ClientIP behind a load balancer with Cluster policy"),
    "backendconfig-undefined": ("error", "Service references a BackendConfig not defined"),
    "backendconfig-unreferenced": ("warning", "BackendConfig no Service references"),
    "backendconfig-annotation": ("error", "backend-config annotation is not valid JSON"),
    "gke-cookie-without-neg": ("error", "GENERATED_COOKIE without container-native LB (NEG)"),
    "gke-ingress-class": ("error", "gce BackendConfig on a Service behind a non-gce Ingress"),
    "cookie-ttl-short": ("error", "cookie TTL shorter than a realtime session (error < 45 s)"),
    "annotation-wrong-kind": ("error", "an annotation on an object kind that never reads it"),
    "nginx-affinity-value": ("error", "ingress-nginx affinity is not 'cookie'"),
    "nginx-cookie-without-affinity": ("warning", "session-cookie-* without affinity: cookie"),
    "cookie-samesite-insecure": ("error", "a Traefik SameSite=None cookie without Secure"),
    "alibaba-persistence": ("error", "SLB persistence without Local policy / ClientIP / TCP"),
    "deprecated-api": ("error", "an API version or annotation that is deprecated or removed"),
    "gateway-session-name": ("error", "sessionName longer than 128 bytes"),
    "gateway-duration": ("error", "a timeout that is not a Gateway API Duration (1h30m, 500ms)"),
    "gateway-permanent-without-timeout": (
        "error",
        "cookieConfig lifetimeType Permanent without absoluteTimeout",
    ),
    "gateway-persistence-type": ("error", "sessionPersistence type other than Cookie or Header"),
    "gateway-header-cookie-config": ("warning", "Header session persistence with cookieConfig"),
    "gateway-backend-port": ("error", "a backendRef to a Service port that does not exist"),
    "setting-ignored": ("warning", "a setting the platform accepts but never applies"),
    "annotation-removed": ("warning", "an annotation the controller no longer reads"),
    "nginx-canary-weight": ("error", "canary-weight not an integer within 0..canary-weight-total"),
    "canary-not-sticky": ("warning", "an ingress-nginx canary beside cookie affinity: pins flap"),
}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    file: str
    line: int
    rule: str
    severity: Severity
    message: str
    hint: str
    column: int = 0  # 1-based; 0 when the finding is about a whole line

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Source:
    """One parsed input: its name and documents."""

    name: str
    documents: list[Document]


Emit = Callable[[Source, Document, tuple[str | int, ...], str, str, str], None]


# --- rules over one document -------------------------------------------------------------------
def _find_keys(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            sub = (*path, str(k))
            if str(k) in ("sessionAffinity", "sessionAffinityConfig"):
                yield sub
            yield from _find_keys(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _find_keys(v, (*path, i))


def check_service_affinity(src: Source, doc: Document, emit: Emit) -> None:
    is_service = doc.kind == "Service" and doc.api_version == "v1"
    group = d.group_of(doc.obj)
    builtin = "." not in group or group.endswith(".k8s.io")
    for path in _find_keys(doc.obj, ()) if builtin else ():
        # custom resources (GKE BackendConfig/GCPBackendPolicy, Traefik ...) have fields of
        # their own named sessionAffinity; only Kubernetes' built-in kinds are checked
        if is_service and len(path) == 2 and path[0] == "spec":
            continue
        where = ".".join(str(p) for p in path)
        emit(
            src,
            doc,
            path,
            "affinity-misplaced",
            f"{path[-1]} at {where} in a {doc.kind or 'document'} is ignored",
            "put sessionAffinity and sessionAffinityConfig directly under a Service's spec",
        )
    if not is_service:
        return
    spec = d.get(doc.obj, "spec")
    if not isinstance(spec, Mapping):
        return
    config = d.get(spec, "sessionAffinityConfig")
    timeout_path = ("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds")
    raw = d.get(config, "clientIP", "timeoutSeconds")
    if raw is not None:
        timeout = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        if timeout is None or not 0 < timeout <= CLIENT_IP_TIMEOUT_MAX:
            emit(
                src,
                doc,
                timeout_path,
                "affinity-timeout-range",
                f"timeoutSeconds {raw!r} is outside 1..{CLIENT_IP_TIMEOUT_MAX}",
                "use an integer from 1 to 86400 (the API server rejects anything else)",
            )
    if config is not None and spec.get("sessionAffinity") != "ClientIP":
        emit(
            src,
            doc,
            ("spec", "sessionAffinityConfig"),
            "affinity-config-ignored",
            "sessionAffinityConfig has no effect unless sessionAffinity is ClientIP",
            "add sessionAffinity: ClientIP or remove sessionAffinityConfig",
        )
    lb = spec.get("type") in ("LoadBalancer", "NodePort")
    policy = spec.get("externalTrafficPolicy", "Cluster")
    if spec.get("sessionAffinity") == "ClientIP" and lb and policy == "Cluster":
        emit(
            src,
            doc,
            ("spec", "externalTrafficPolicy")
            if "externalTrafficPolicy" in spec
            else ("spec", "type"),
            "clientip-cluster-policy",
            "ClientIP affinity behind a load balancer with externalTrafficPolicy Cluster pins the "
            "node's address, not the client's",
            "set externalTrafficPolicy: Local so the client IP reaches kube-proxy",
        )


def _ttl_finding(
    src: Source, doc: Document, path: tuple[str | int, ...], ttl: int | None, what: str, emit: Emit
) -> None:
    if ttl is None or ttl <= 0:
        return  # 0 / unset: a session cookie, lives as long as the browser
    if ttl < COOKIE_TTL_ERROR:
        emit(
            src,
            doc,
            path,
            "cookie-ttl-short",
            f"{what} {ttl} s expires before a socket.io ping cycle ({COOKIE_TTL_ERROR} s)",
            "use at least a few minutes, or 0 for a session cookie",
        )
    elif ttl < COOKIE_TTL_WARNING:
        emit(
            src,
            doc,
            path,
            "cookie-ttl-short@warning",
            f"{what} {ttl} s is shorter than a realtime session is likely to live",
            f"use {COOKIE_TTL_WARNING} s or more, or 0 for a session cookie",
        )


def _reader_kind(key: str) -> str:
    """The object kind whose annotation ``key`` a controller reads ("" when we do not know)."""
    if key.startswith((d.NGINX, d.TRAEFIK + "router.")):
        return "Ingress"
    service_keys = (d.TRAEFIK_V1_AFFINITY, d.TRAEFIK_V1_COOKIE_NAME, d.GKE_BACKEND_CONFIG,
                    d.GKE_BACKEND_CONFIG_BETA, d.GKE_NEG)  # fmt: skip
    if key in service_keys or key.startswith((d.TRAEFIK + "service.", d.ALIBABA)):
        return "Service"
    return ""


def check_annotations(src: Source, doc: Document, emit: Emit) -> None:
    notes = d.annotations_of(doc.obj) if isinstance(doc.obj, Mapping) else {}
    kind = doc.kind
    for key in notes:
        expected = _reader_kind(key)
        if expected and kind != expected:
            emit(
                src,
                doc,
                ("metadata", "annotations", key),
                "annotation-wrong-kind",
                f"{key} on a {kind or 'document'} is ignored; it is read from a {expected}",
                f"move the annotation to the {expected}",
            )
        if key == d.GKE_BACKEND_CONFIG_BETA:
            emit(
                src,
                doc,
                ("metadata", "annotations", key),
                "deprecated-api@warning",
                f"{key} is the deprecated beta annotation",
                f"use {d.GKE_BACKEND_CONFIG}",
            )
    if kind == "Ingress":
        _check_nginx(src, doc, notes, emit)
    if kind == "Service":
        _check_traefik_annotations(src, doc, notes, emit)


def _check_nginx(src: Source, doc: Document, notes: dict[str, str], emit: Emit) -> None:
    affinity = notes.get(d.NGINX + "affinity")
    at = ("metadata", "annotations")
    if affinity is not None and affinity != "cookie":
        emit(
            src,
            doc,
            (*at, d.NGINX + "affinity"),
            "nginx-affinity-value",
            f"affinity {affinity!r}: ingress-nginx only knows 'cookie'",
            "set nginx.ingress.kubernetes.io/affinity: cookie",
        )
    cookie_keys = [k for k in notes if k.startswith(d.NGINX + "session-cookie-")]
    if cookie_keys and affinity != "cookie":
        emit(
            src,
            doc,
            (*at, cookie_keys[0]),
            "nginx-cookie-without-affinity@warning",
            "session-cookie-* annotations do nothing without affinity: cookie",
            "add nginx.ingress.kubernetes.io/affinity: cookie",
        )
    for key in ("session-cookie-max-age", "session-cookie-expires"):
        if d.NGINX + key in notes:
            _ttl_finding(src, doc, (*at, d.NGINX + key), d.as_int(notes[d.NGINX + key]), key, emit)


def _samesite_finding(src: Source, doc: Document, path: tuple[str | int, ...], emit: Emit) -> None:
    emit(
        src,
        doc,
        path,
        "cookie-samesite-insecure",
        "browsers drop a SameSite=None cookie that is not Secure: the pin never sticks",
        "set secure: true (and serve over HTTPS), or use SameSite Lax",
    )


def _check_traefik_annotations(
    src: Source, doc: Document, notes: dict[str, str], emit: Emit
) -> None:
    samesite = notes.get(d.TRAEFIK_STICKY + ".samesite")
    if (
        d.as_samesite(samesite) == "None"
        and d.as_bool(notes.get(d.TRAEFIK_STICKY + ".secure")) is not True
    ):
        _samesite_finding(
            src, doc, ("metadata", "annotations", d.TRAEFIK_STICKY + ".samesite"), emit
        )
    raw = notes.get(d.TRAEFIK_STICKY + ".maxage")
    if raw is not None:
        at = ("metadata", "annotations", d.TRAEFIK_STICKY + ".maxage")
        _ttl_finding(src, doc, at, d.as_int(raw), "maxage", emit)


def check_deprecated(src: Source, doc: Document, emit: Emit) -> None:
    api, kind = doc.api_version, doc.kind
    if kind == "Ingress" and api in ("networking.k8s.io/v1beta1", "extensions/v1beta1"):
        emit(
            src,
            doc,
            ("apiVersion",),
            "deprecated-api",
            f"{api} Ingress was removed in Kubernetes 1.22",
            "use networking.k8s.io/v1 (service.name / service.port.number backends)",
        )
    if kind == "BackendConfig" and api == "cloud.google.com/v1beta1":
        emit(
            src,
            doc,
            ("apiVersion",),
            "deprecated-api@warning",
            "cloud.google.com/v1beta1 BackendConfig is deprecated",
            "use cloud.google.com/v1",
        )


def check_traefik_crd(src: Source, doc: Document, emit: Emit) -> None:
    if d.group_of(doc.obj) not in d.TRAEFIK_GROUPS:
        return
    if d.group_of(doc.obj) == "traefik.containo.us":
        emit(
            src,
            doc,
            ("apiVersion",),
            "deprecated-api@warning",
            "traefik.containo.us is the Traefik v2 API group, deprecated in v3",
            "use traefik.io/v1alpha1",
        )
    blocks: list[tuple[tuple[str | int, ...], Any]] = []
    if doc.kind == "TraefikService":
        blocks.append(
            (
                ("spec", "weighted", "sticky", "cookie"),
                d.get(doc.obj, "spec", "weighted", "sticky", "cookie"),
            )
        )
    routes = d.get(doc.obj, "spec", "routes")
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        services = d.get(route, "services")
        for j, svc in enumerate(services if isinstance(services, list) else []):
            at: tuple[str | int, ...] = ("spec", "routes", i, "services", j, "sticky", "cookie")
            blocks.append((at, d.get(svc, "sticky", "cookie")))
    for path, block in blocks:
        if not isinstance(block, Mapping):
            continue
        if "maxAge" in block:
            _ttl_finding(src, doc, (*path, "maxAge"), d.as_int(block["maxAge"]), "maxAge", emit)
        if (
            d.as_samesite(block.get("sameSite")) == "None"
            and d.as_bool(block.get("secure")) is not True
        ):
            _samesite_finding(src, doc, (*path, "sameSite"), emit)


# --- rules across documents ---------------------------------------------------------------------
def check_gke(sources: list[Source], emit: Emit) -> None:
    docs = [(s, doc) for s in sources for doc in s.documents if isinstance(doc.obj, Mapping)]
    configs = {
        (doc.namespace, doc.name): (s, doc) for s, doc in docs if doc.kind == "BackendConfig"
    }
    ingresses = [(s, doc) for s, doc in docs if doc.kind == "Ingress"]
    referenced: set[tuple[str, str]] = set()
    for s, doc in docs:
        if doc.kind != "Service":
            continue
        try:
            key, refs = d.backend_config_refs(doc.obj)
        except ValueError as exc:
            key = next(
                k
                for k in (d.GKE_BACKEND_CONFIG, d.GKE_BACKEND_CONFIG_BETA)
                if k in d.annotations_of(doc.obj)
            )
            emit(s, doc, ("metadata", "annotations", key), "backendconfig-annotation", str(exc),
                 'write it as JSON: {"default": "NAME"}')  # fmt: skip
            continue
        at = ("metadata", "annotations", key)
        for name in sorted(set(refs.values())):
            referenced.add((doc.namespace, name))
            found = configs.get((doc.namespace, name))
            if found is None:
                emit(s, doc, at, "backendconfig-undefined",
                     f"Service {doc.name} references BackendConfig {name!r}, which is not defined",
                     "define the BackendConfig in the same namespace (and lint that file too)")  # fmt: skip
                continue
            _, bc = found
            affinity = str(d.get(bc.obj, "spec", "sessionAffinity", "affinityType") or "NONE")
            if affinity == "GENERATED_COOKIE" and not d.neg_enabled(doc.obj):
                emit(s, doc, at, "gke-cookie-without-neg",
                     f"BackendConfig {name} uses GENERATED_COOKIE but Service {doc.name} has no "
                     "container-native load balancing, so the cookie pins a node, not a pod",
                     f"annotate the Service with {d.GKE_NEG}: '{{\"ingress\": true}}'")  # fmt: skip
            for ing_src, ing in ingresses:
                if ing.namespace != doc.namespace or doc.name not in d.ingress_backends(ing.obj):
                    continue
                cls = d.ingress_class(ing.obj)
                if cls not in ("gce", "gce-internal", ""):
                    emit(ing_src, ing, ("metadata", "annotations", d.INGRESS_CLASS_ANNOTATION)
                         if d.annotations_of(ing.obj).get(d.INGRESS_CLASS_ANNOTATION)
                         else ("spec", "ingressClassName"), "gke-ingress-class",
                         f"Ingress {ing.name} (class {cls}) routes to Service {doc.name}, whose "
                         f"BackendConfig {name} only a gce Ingress applies; no GCLB cookie is set",
                         "use kubernetes.io/ingress.class: gce, or configure affinity in "
                         "this Ingress controller's own annotations")  # fmt: skip
    for (ns, name), (s, bc) in configs.items():
        if (ns, name) not in referenced:
            emit(s, bc, ("metadata", "name"), "backendconfig-unreferenced",
                 f"BackendConfig {name} is not referenced by any Service linted",
                 f"annotate the Service with {d.GKE_BACKEND_CONFIG}: "
                 f"'{{\"default\": \"{name}\"}}'")  # fmt: skip
        ttl = d.as_int(d.get(bc.obj, "spec", "sessionAffinity", "affinityCookieTtlSec"))
        _ttl_finding(s, bc, ("spec", "sessionAffinity", "affinityCookieTtlSec"), ttl,
                     "affinityCookieTtlSec", emit)  # fmt: skip


def check_alibaba(src: Source, doc: Document, emit: Emit) -> None:
    if doc.kind != "Service":
        return
    notes = d.annotations_of(doc.obj)
    if d.ALIBABA_PERSISTENCE not in notes:
        return
    at = ("metadata", "annotations", d.ALIBABA_PERSISTENCE)
    timeout = d.as_int(notes[d.ALIBABA_PERSISTENCE])
    if timeout is None or not 0 <= timeout <= d.ALIBABA_PERSISTENCE_MAX:
        emit(src, doc, at, "alibaba-persistence",
             f"persistence-timeout {notes[d.ALIBABA_PERSISTENCE]!r} is outside 0..3600",
             "use an integer number of seconds from 0 (off) to 3600")  # fmt: skip
        return
    if timeout == 0:
        return
    spec = d.get(doc.obj, "spec")
    if d.get(spec, "externalTrafficPolicy") != "Local":
        emit(src, doc, at, "alibaba-persistence",
             "persistence-timeout without externalTrafficPolicy: Local: the node forwards to "
             "any pod and the client IP is lost", "set externalTrafficPolicy: Local")  # fmt: skip
    if d.get(spec, "sessionAffinity") != "ClientIP":
        emit(src, doc, at, "alibaba-persistence",
             "persistence-timeout pins the SLB-to-node hop only; without sessionAffinity "
             "ClientIP the node-to-pod hop is not sticky", "set sessionAffinity: ClientIP")  # fmt: skip
    protocol_port = notes.get(d.ALIBABA_PROTOCOL_PORT, "")
    if any(
        p.split(":", 1)[0].strip().lower() in ("http", "https") for p in protocol_port.split(",")
    ):
        emit(src, doc, ("metadata", "annotations", d.ALIBABA_PROTOCOL_PORT), "alibaba-persistence",
             "persistence-timeout applies to TCP listeners; an HTTP(S) listener ignores it",
             "use a tcp listener, or limpet's cookie affinity behind it")  # fmt: skip
    _ttl_finding(src, doc, at, timeout, "persistence-timeout", emit)


# --- Gateway API and GKE Gateway ---------------------------------------------------------------
def _check_persistence(
    src: Source, doc: Document, at: tuple[str | int, ...], block: Mapping[str, Any], emit: Emit
) -> None:
    """One sessionPersistence block against the published CRD's validation (GEP-1619)."""
    name = block.get("sessionName")
    if isinstance(name, str) and len(name.encode()) > d.GATEWAY_SESSION_NAME_MAX:
        emit(src, doc, (*at, "sessionName"), "gateway-session-name",
             f"sessionName is {len(name.encode())} bytes; the API server accepts at most "
             f"{d.GATEWAY_SESSION_NAME_MAX}", "use a short name (it becomes the cookie name)")  # fmt: skip
    kind = block.get("type", "Cookie")
    if kind not in ("Cookie", "Header"):
        emit(src, doc, (*at, "type"), "gateway-persistence-type",
             f"sessionPersistence type {kind!r}: the API server accepts Cookie or Header",
             "use type: Cookie (the default)")  # fmt: skip
    for key in ("absoluteTimeout", "idleTimeout"):
        if key not in block:
            continue
        raw = block[key]
        seconds = d.parse_duration(raw)
        if seconds is None:
            hint = "write hours, minutes, seconds or ms, e.g. 24h or 1h30m"
            if isinstance(raw, str) and raw.rstrip().endswith("d"):
                hint = "the Gateway API has no days: write 24h for 1d"
            emit(src, doc, (*at, key), "gateway-duration",
                 f"{key} {raw!r} is not a Gateway API Duration "
                 "(^([0-9]{1,5}(h|m|s|ms)){1,4}$); the API server rejects it", hint)  # fmt: skip
        else:
            _ttl_finding(src, doc, (*at, key), int(seconds) or 1, key, emit)
    lifetime = d.get(block, "cookieConfig", "lifetimeType")
    if lifetime == "Permanent" and "absoluteTimeout" not in block:
        emit(src, doc, (*at, "cookieConfig", "lifetimeType"), "gateway-permanent-without-timeout",
             "lifetimeType Permanent needs absoluteTimeout (the cookie's Max-Age); the API "
             "server rejects it", "add absoluteTimeout, e.g. 24h, or use lifetimeType: Session")  # fmt: skip
    if kind == "Header" and "cookieConfig" in block:
        emit(src, doc, (*at, "cookieConfig"), "gateway-header-cookie-config",
             "cookieConfig is ignored when sessionPersistence type is Header",
             "remove cookieConfig, or use type: Cookie")  # fmt: skip


def check_gateway(src: Source, doc: Document, emit: Emit) -> None:
    group, kind = d.group_of(doc.obj), doc.kind
    if group == d.GATEWAY_GROUP and kind in d.GATEWAY_ROUTE_KINDS:
        rules = d.get(doc.obj, "spec", "rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            block = d.get(rule, "sessionPersistence")
            if isinstance(block, Mapping):
                _check_persistence(
                    src, doc, ("spec", "rules", i, "sessionPersistence"), block, emit
                )
    if group == d.GATEWAY_GROUP and kind == "BackendLBPolicy":
        block = d.get(doc.obj, "spec", "sessionPersistence")
        if isinstance(block, Mapping):
            _check_persistence(src, doc, ("spec", "sessionPersistence"), block, emit)
    if group == d.GKE_POLICY_GROUP and kind == "GCPBackendPolicy":
        at = ("spec", "default", "sessionAffinity")
        block = d.get(doc.obj, *at)
        if isinstance(block, Mapping):
            affinity = str(block.get("type") or "NONE")
            _check_cookie_ttl_field(src, doc, at, block, "type", affinity, "cookieTtlSec", emit)


def _check_cookie_ttl_field(
    src: Source,
    doc: Document,
    at: tuple[str | int, ...],
    block: Mapping[str, Any],
    type_key: str,
    affinity: str,
    ttl_key: str,
    emit: Emit,
) -> None:
    """A GKE cookie TTL: too short, or set on an affinity type that has no cookie."""
    if ttl_key not in block:
        return
    if affinity not in ("GENERATED_COOKIE", "HTTP_COOKIE"):
        emit(src, doc, (*at, ttl_key), "setting-ignored",
             f"{ttl_key} is ignored with {type_key} {affinity}: only cookie affinity has a TTL "
             "(GKE docs: session affinity)", f"remove {ttl_key}, or use GENERATED_COOKIE")  # fmt: skip
        return
    _ttl_finding(src, doc, (*at, ttl_key), d.as_int(block[ttl_key]), ttl_key, emit)


def check_gateway_refs(src: Source, emit: Emit) -> None:
    """Each route backendRef to a Service defined in the same file names one of its ports."""
    docs = [doc for doc in src.documents if isinstance(doc.obj, Mapping)]
    services = {
        (doc.namespace, doc.name): doc
        for doc in docs
        if doc.kind == "Service" and doc.api_version == "v1"
    }
    for doc in docs:
        if d.group_of(doc.obj) != d.GATEWAY_GROUP or doc.kind not in d.GATEWAY_ROUTE_KINDS:
            continue
        for i, j, ref in d.route_backend_refs(doc.obj):
            if not d.is_service_ref(ref):
                continue
            at = ("spec", "rules", i, "backendRefs", j)
            namespace = str(ref.get("namespace") or doc.namespace)
            if "port" not in ref:
                emit(src, doc, at, "gateway-backend-port",
                     f"backendRef to Service {ref.get('name')!r} has no port; the API server "
                     "requires one for a Service", "add port: the Service's port number")  # fmt: skip
                continue
            service = services.get((namespace, str(ref.get("name"))))
            if service is None:
                continue
            ports = d.get(service.obj, "spec", "ports")
            numbers = [d.get(p, "port") for p in (ports if isinstance(ports, list) else [])]
            if ref["port"] not in numbers:
                emit(src, doc, (*at, "port"), "gateway-backend-port",
                     f"Service {service.name} has no port {ref['port']} (it has "
                     f"{', '.join(str(n) for n in numbers) or 'none'}); the route sends nothing",
                     "use the Service's port (not the pods' targetPort)")  # fmt: skip


# --- settings every tool accepts and the platform ignores -------------------------------------
#: ingress-nginx 0.9 moved every annotation from ingress.kubernetes.io/ to
#: nginx.ingress.kubernetes.io/ (its --annotations-prefix default); the old prefix is not read.
OLD_NGINX_PREFIX = "ingress.kubernetes.io/"
#: annotation -> why the controller no longer reads it
REMOVED_ANNOTATIONS = {
    d.NGINX + "session-cookie-hash": "belonged to the nginx sticky module, which ingress-nginx "
    "dropped when the Lua balancer became its only one (0.21); the cookie value is its own",
}
#: ingress classes whose controllers are known not to be ingress-nginx
NOT_NGINX_CLASSES = ("gce", "gce-internal", "traefik", "alb", "haproxy", "kong", "istio")


def check_ignored(src: Source, doc: Document, emit: Emit) -> None:
    notes = d.annotations_of(doc.obj)
    at = ("metadata", "annotations")
    for key in notes:
        if key.startswith(OLD_NGINX_PREFIX) and key[len(OLD_NGINX_PREFIX) :] in NGINX_KEYS:
            emit(src, doc, (*at, key), "annotation-removed",
                 f"{key}: ingress-nginx reads nginx.ingress.kubernetes.io/ since 0.9; this "
                 "prefix is ignored", f"rename it to {d.NGINX}{key[len(OLD_NGINX_PREFIX):]}")  # fmt: skip
        if key in REMOVED_ANNOTATIONS:
            emit(src, doc, (*at, key), "annotation-removed",
                 f"{key} is ignored: it {REMOVED_ANNOTATIONS[key]}", "remove it")  # fmt: skip
    if doc.kind == "Ingress":
        cls = d.ingress_class(doc.obj)
        nginx_keys = [k for k in notes if k.startswith(d.NGINX)]
        if nginx_keys and cls in NOT_NGINX_CLASSES:
            emit(src, doc, (*at, nginx_keys[0]), "setting-ignored",
                 f"nginx.ingress.kubernetes.io annotations on an Ingress of class {cls!r}: "
                 "ingress-nginx only reads Ingresses of its own class",
                 "configure affinity in this class's own terms, or use class nginx")  # fmt: skip
        mode = notes.get(d.NGINX + "affinity-mode")
        if mode is not None and notes.get(d.NGINX + "affinity") != "cookie":
            emit(src, doc, (*at, d.NGINX + "affinity-mode"), "setting-ignored",
                 "affinity-mode only applies to affinity: cookie (ingress-nginx annotations docs)",
                 "add nginx.ingress.kubernetes.io/affinity: cookie, or remove affinity-mode")  # fmt: skip
        alb = notes.get("alb.ingress.kubernetes.io/target-group-attributes", "")
        target_type = notes.get("alb.ingress.kubernetes.io/target-type", "instance")
        if "stickiness.enabled=true" in alb.replace(" ", "") and target_type == "instance":
            emit(src, doc, (*at, "alb.ingress.kubernetes.io/target-group-attributes"),
                 "setting-ignored", "ALB stickiness with target-type instance pins a node, and "
                 "kube-proxy then spreads over pods: no pod is sticky (AWS Load Balancer "
                 "Controller docs: target-type)",
                 "set alb.ingress.kubernetes.io/target-type: ip")  # fmt: skip
    if doc.kind == "Service" and d.get(doc.obj, "spec", "sessionAffinity") == "ClientIP":
        spec = d.get(doc.obj, "spec")
        headless = d.get(spec, "clusterIP") == "None"
        external = d.get(spec, "type") == "ExternalName"
        if headless or external:
            what = (
                "a headless Service (clusterIP: None): clients get the pods' addresses"
                if headless
                else "an ExternalName Service: clients get a CNAME"
            )
            emit(src, doc, ("spec", "sessionAffinity"), "setting-ignored",
                 f"sessionAffinity does nothing on {what} from DNS and kube-proxy never sees the "
                 "connection (Kubernetes docs: Services, headless and ExternalName)",
                 "give the Service a cluster IP, or pin in the client or a proxy")  # fmt: skip
    if doc.kind == "BackendConfig":
        at_bc = ("spec", "sessionAffinity")
        block = d.get(doc.obj, *at_bc)
        if isinstance(block, Mapping):
            affinity = str(block.get("affinityType") or "NONE")
            if "affinityCookieTtlSec" in block and affinity not in (
                "GENERATED_COOKIE",
                "HTTP_COOKIE",
            ):
                emit(src, doc, (*at_bc, "affinityCookieTtlSec"), "setting-ignored",
                     f"affinityCookieTtlSec is ignored with affinityType {affinity}: only cookie "
                     "affinity has a TTL (GKE docs: BackendConfig session affinity)",
                     "remove it, or use affinityType: GENERATED_COOKIE")  # fmt: skip


NGINX_KEYS = ("affinity", "affinity-mode", "session-cookie-name", "session-cookie-max-age",
              "session-cookie-expires", "session-cookie-path", "upstream-hash-by")  # fmt: skip


def check_gke_l4(sources: list[Source], emit: Emit) -> None:
    """A BackendConfig on a LoadBalancer Service that no Ingress routes to: the L4 LB ignores it."""
    docs = [doc for s in sources for doc in s.documents if isinstance(doc.obj, Mapping)]
    routed = {
        (doc.namespace, name)
        for doc in docs
        if doc.kind == "Ingress"
        for name in d.ingress_backends(doc.obj)
    }
    for s in sources:
        for doc in s.documents:
            if not isinstance(doc.obj, Mapping):
                continue
            if doc.kind != "Service" or d.get(doc.obj, "spec", "type") != "LoadBalancer":
                continue
            notes = d.annotations_of(doc.obj)
            key = next(
                (k for k in (d.GKE_BACKEND_CONFIG, d.GKE_BACKEND_CONFIG_BETA) if k in notes), ""
            )
            if key and (doc.namespace, doc.name) not in routed:
                emit(s, doc, ("metadata", "annotations", key), "setting-ignored",
                     f"{key} on a type: LoadBalancer Service that no Ingress routes to: the L4 "
                     "load balancer never reads a BackendConfig (GKE docs: BackendConfig applies "
                     "to Ingress and Gateway backends only)",
                     "put a gce Ingress in front (and lint it with this file), or use the "
                     "Service's sessionAffinity: ClientIP for an L4 load balancer")  # fmt: skip


def check_traefik_v1_with_v2(sources: list[Source], emit: Emit) -> None:
    """Traefik 1.x Service annotations beside Traefik 2+ resources: 2.0 stopped reading them."""
    docs = [(s, doc) for s in sources for doc in s.documents if isinstance(doc.obj, Mapping)]
    if not any(d.group_of(doc.obj) in d.TRAEFIK_GROUPS for _, doc in docs):
        return
    for s, doc in docs:
        notes = d.annotations_of(doc.obj)
        for key in (d.TRAEFIK_V1_AFFINITY, d.TRAEFIK_V1_COOKIE_NAME):
            if doc.kind == "Service" and key in notes:
                emit(s, doc, ("metadata", "annotations", key), "annotation-removed",
                     f"{key} is a Traefik 1.x annotation; these manifests use Traefik 2+ "
                     "resources, and Traefik 2.0 no longer reads it (Traefik v1 to v2 migration "
                     "guide)", "use sticky.cookie in the TraefikService or IngressRoute, or "
                     f"{d.TRAEFIK_STICKY} on the Service")  # fmt: skip


def check_nginx_canary(sources: list[Source], emit: Emit) -> None:
    """ingress-nginx canaries: a weight it cannot use, and a canary beside cookie affinity.

    ingress-nginx decides the canary per request, before affinity (kubernetes/ingress-nginx
    #3717, #8246, #12444): a user pinned by the main Ingress's cookie still flaps between the
    two versions, or never reaches the canary. limpet's canary groups split new sessions only.
    """
    from limpet.k8s.canary import NGINX_CANARY, NGINX_CANARY_TOTAL, NGINX_CANARY_WEIGHT

    docs = [(src, doc) for src in sources for doc in src.documents if isinstance(doc.obj, Mapping)]
    ingresses = [(s, doc) for s, doc in docs if d.kind_of(doc.obj) == "Ingress"]
    sticky_hosts = {
        str(d.get(rule, "host") or "")
        for _, doc in ingresses
        if d.annotations_of(doc.obj).get(d.NGINX + "affinity") == "cookie"
        and d.annotations_of(doc.obj).get(NGINX_CANARY) != "true"
        for rule in d.get(doc.obj, "spec", "rules") or []
    }
    at = ("metadata", "annotations")
    for src, doc in ingresses:
        notes = d.annotations_of(doc.obj)
        if notes.get(NGINX_CANARY) != "true":
            continue
        total = d.as_int(notes.get(NGINX_CANARY_TOTAL, "100"))
        if NGINX_CANARY_WEIGHT in notes:
            weight = d.as_int(notes[NGINX_CANARY_WEIGHT])
            if weight is None or total is None or not 0 <= weight <= total:
                emit(src, doc, (*at, NGINX_CANARY_WEIGHT), "nginx-canary-weight",
                     f"canary-weight {notes[NGINX_CANARY_WEIGHT]!r} is not an integer within "
                     f"0..{notes.get(NGINX_CANARY_TOTAL, '100')} (canary-weight-total): "
                     "ingress-nginx ignores it",
                     "give a whole number of canary-weight-total (100 unless set)")  # fmt: skip
        hosts = {str(d.get(rule, "host") or "") for rule in d.get(doc.obj, "spec", "rules") or []}
        if hosts & sticky_hosts:
            emit(src, doc, (*at, NGINX_CANARY), "canary-not-sticky",
                 "this canary shares a host with an Ingress that pins users by cookie: "
                 "ingress-nginx picks the canary per request, so pinned users flap between "
                 "versions (ingress-nginx #3717)",
                 "pin the canary choice too (canary-by-cookie), or put limpet in front with "
                 "pools.NAME.canary: new sessions split by weight, pinned ones stay")  # fmt: skip


def check_manifest(src: Source, doc: Document, emit: Emit) -> None:
    missing = [k for k in ("apiVersion", "kind") if not doc.obj.get(k)]
    if missing:
        emit(src, doc, (), "not-a-manifest",
             f"this document has no {' and no '.join(missing)}: kubectl refuses it",
             "start each document with apiVersion and kind (check the indentation above)")  # fmt: skip


PER_DOCUMENT = (check_service_affinity, check_annotations, check_deprecated, check_traefik_crd,
                check_alibaba, check_gateway, check_ignored, check_manifest)  # fmt: skip


def lookalike_finding(name: str, odd: Lookalike) -> Finding:
    shown = f"{odd.replacement!r}" if odd.replacement else "nothing (delete it)"
    return Finding(
        name, odd.line, "unicode-lookalike", "error",
        f"{odd.name} where YAML needs ASCII: it is read as part of a key or value, not as "
        "indentation, quote or punctuation",
        f"replace it with {shown} (limpet k8s lint --fix does this)", odd.column,
    )  # fmt: skip


def lint_sources(inputs: Iterable[tuple[str, str]]) -> list[Finding]:
    """Findings for every (name, YAML text) input, sorted by file and line."""
    findings: list[Finding] = []
    sources: list[Source] = []

    def emit(
        src: Source, doc: Document, path: tuple[str | int, ...], rule: str, message: str, hint: str
    ) -> None:
        rule, _, forced = rule.partition("@")
        severity: Severity = "warning" if forced == "warning" else RULES[rule][0]
        findings.append(Finding(src.name, doc.line(*path), rule, severity, message, hint))

    for name, raw in inputs:
        # pasted look-alikes are reported, then the rest is linted as if they were fixed, so
        # the mistakes they hide (a key indented under the wrong parent) are still found
        text, odd = lookalikes(raw)
        findings += [lookalike_finding(name, o) for o in odd]
        documents, problems = parse(text)
        for p in problems:
            hint = {"yaml-tab-indent": "replace tabs with spaces",
                    "yaml-duplicate-key": "keep one of them"}.get(p.rule, "fix the syntax")  # fmt: skip
            findings.append(Finding(name, p.line, p.rule, "error", p.message, hint))
        source = Source(name, expand_lists(documents))
        if not source.documents and not problems:
            findings.append(Finding(name, 1, "not-a-manifest", "error",
                                    "no Kubernetes object in this input: kubectl refuses it",
                                    "check that this is the file you meant"))  # fmt: skip
        sources.append(source)
        for doc in source.documents:
            if not isinstance(doc.obj, Mapping):
                emit(source, doc, (), "not-a-manifest",
                     f"this document is a {type(doc.obj).__name__}, not an object: kubectl "
                     "refuses it", "start each document with apiVersion and kind")  # fmt: skip
                continue
            for check in PER_DOCUMENT:
                check(source, doc, emit)
    check_gke(sources, emit)
    check_gke_l4(sources, emit)
    check_traefik_v1_with_v2(sources, emit)
    check_nginx_canary(sources, emit)
    for source in sources:
        check_gateway_refs(source, emit)
    return sorted(set(findings))


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
