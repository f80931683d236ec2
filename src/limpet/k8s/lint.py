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
from limpet.k8s.yamlnodes import Document, expand_lists, parse

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
}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    file: str
    line: int
    rule: str
    severity: Severity
    message: str
    hint: str

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


PER_DOCUMENT = (check_service_affinity, check_annotations, check_deprecated, check_traefik_crd,
                check_alibaba)  # fmt: skip


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

    for name, text in inputs:
        documents, problems = parse(text)
        for p in problems:
            hint = "replace tabs with spaces" if p.rule == "yaml-tab-indent" else "fix the syntax"
            findings.append(Finding(name, p.line, p.rule, "error", p.message, hint))
        source = Source(name, expand_lists(documents))
        sources.append(source)
        for doc in source.documents:
            if not isinstance(doc.obj, Mapping):
                continue
            for check in PER_DOCUMENT:
                check(source, doc, emit)
    check_gke(sources, emit)
    return sorted(set(findings))


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
