"""SANS-IO: one AffinitySpec rendered as complete manifests for each platform.

Every target returns plain dicts (one per YAML document) plus notes for the user; the CLI dumps
them. The output is meant to pass ``kubectl apply --dry-run=client`` and ``limpet k8s lint``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from limpet.affinity.spec import AffinitySpec
from limpet.errors import UsageError
from limpet.k8s import dialects as d
from limpet.k8s.objects import (  # (re-exported: the renderers' shared objects)
    Manifest,
    Rendered,
    RenderOptions,
    _ingress,
    _meta,
    _selector,
    _service,
)
from limpet.k8s.render_canary import add_canary

Target = Literal[
    "gke", "ingress-nginx", "traefik", "alibaba", "kube-proxy", "limpet", "gateway-api",
    "gke-gateway",
]  # fmt: skip
TARGETS: tuple[Target, ...] = (
    "gke", "ingress-nginx", "traefik", "alibaba", "kube-proxy", "limpet", "gateway-api",
    "gke-gateway",
)  # fmt: skip

#: Long enough for a WebSocket to stay open: load balancers close idle upstreams by default
#: (GCLB after 30 s, ingress-nginx after 60 s), which looks like a lost session to the user.
WEBSOCKET_TIMEOUT = 3600
#: A GatewayClass name to replace: every Gateway API implementation installs its own.
GATEWAY_CLASS_PLACEHOLDER = "example"
#: GKE's Gateway classes (GKE docs "GatewayClass capabilities"); a class outside these is noted.
GKE_GATEWAY_CLASSES = (
    "gke-l7-global-external-managed", "gke-l7-regional-external-managed", "gke-l7-rilb",
    "gke-l7-gxlb", "gke-l7-global-external-managed-mc", "gke-l7-regional-external-managed-mc",
    "gke-l7-rilb-mc", "gke-l7-gxlb-mc",
)  # fmt: skip


def _client_ip_block(spec: AffinitySpec) -> Manifest:
    return {
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": spec.client_ip_timeout}},
    }


def _secure_cookie(spec: AffinitySpec, notes: list[str]) -> AffinitySpec:
    """Browsers drop a SameSite=None cookie that is not Secure, so the pin would never stick."""
    if spec.mode == "cookie" and spec.cookie_samesite == "None" and not spec.cookie_secure:
        notes.append("SameSite=None cookies must be Secure (browsers drop them otherwise)")
        return replace(spec, cookie_secure=True)
    return spec


def _unsupported(target: str, spec: AffinitySpec, hint: str) -> UsageError:
    return UsageError(f"--target {target} cannot express --affinity {spec.flag()}: {hint}")


# --- targets ---------------------------------------------------------------------------------
def render_kube_proxy(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """A Service whose kube-proxy pins by client IP; Local policy keeps the client IP real."""
    if spec.mode == "none":
        return Rendered([_service(o, type_="LoadBalancer")])
    if spec.mode != "client-ip":
        raise _unsupported(
            "kube-proxy", spec, "kube-proxy only knows ClientIP (--affinity client-ip)"
        )
    extra = {"externalTrafficPolicy": "Local", **_client_ip_block(spec)}
    notes = ["externalTrafficPolicy: Local keeps the client IP; only nodes with a pod get traffic"]
    return Rendered([_service(o, type_="LoadBalancer", spec_extra=extra)], notes)


def render_gke(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """Service (NEG + backend-config annotations), BackendConfig and a gce Ingress."""
    affinity: Manifest
    notes: list[str] = []
    if spec.mode == "cookie":
        affinity = {
            "affinityType": "GENERATED_COOKIE",
            "affinityCookieTtlSec": spec.cookie_ttl or 0,
        }
        if spec.cookie_name != d.GKE_COOKIE:
            notes.append(f"GKE names its cookie {d.GKE_COOKIE}; --cookie-name is not used")
    elif spec.mode == "client-ip":
        affinity = {"affinityType": "CLIENT_IP"}
    elif spec.mode == "none":
        affinity = {"affinityType": "NONE"}
    else:
        raise _unsupported("gke", spec, "a GKE BackendConfig offers cookie or client-ip only")
    bc_name = f"{o.name}-backendconfig"
    service = _service(
        o,
        annotations={
            d.GKE_NEG: json.dumps({"ingress": True}),
            d.GKE_BACKEND_CONFIG: json.dumps({"default": bc_name}),
        },
    )
    backend_config = {
        "apiVersion": "cloud.google.com/v1",
        "kind": "BackendConfig",
        "metadata": _meta(o, bc_name),
        "spec": {
            "timeoutSec": WEBSOCKET_TIMEOUT,
            "connectionDraining": {"drainingTimeoutSec": 60},
            "sessionAffinity": affinity,
        },
    }
    ingress = _ingress(o, class_annotation="gce")
    notes.append("GKE Ingress needs the legacy kubernetes.io/ingress.class annotation (gce)")
    return Rendered([service, backend_config, ingress], notes)


def render_nginx(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """Service + ingress-nginx Ingress with cookie or hash annotations."""
    log: list[str] = []
    spec = _secure_cookie(spec, log)
    notes = {
        d.NGINX + "proxy-read-timeout": str(WEBSOCKET_TIMEOUT),
        d.NGINX + "proxy-send-timeout": str(WEBSOCKET_TIMEOUT),
    }
    if spec.mode == "cookie":
        notes[d.NGINX + "affinity"] = "cookie"
        notes[d.NGINX + "affinity-mode"] = spec.cookie_mode
        notes[d.NGINX + "session-cookie-name"] = spec.cookie_name
        notes[d.NGINX + "session-cookie-path"] = spec.cookie_path
        if spec.cookie_ttl:
            notes[d.NGINX + "session-cookie-max-age"] = str(spec.cookie_ttl)
            notes[d.NGINX + "session-cookie-expires"] = str(spec.cookie_ttl)
        if spec.cookie_samesite:
            notes[d.NGINX + "session-cookie-samesite"] = spec.cookie_samesite
        if spec.cookie_secure:
            notes[d.NGINX + "session-cookie-secure"] = "true"
        notes[d.NGINX + "session-cookie-change-on-failure"] = "true"
    elif spec.mode == "client-ip":
        notes[d.NGINX + "upstream-hash-by"] = "$binary_remote_addr"
    elif spec.mode == "hash":
        key = (spec.hash_key or "").lower()
        prefix = {"header": "$http_", "cookie": "$cookie_", "query": "$arg_"}[
            spec.hash_source or "header"
        ]
        if spec.hash_source == "header":
            key = key.replace("-", "_")
        notes[d.NGINX + "upstream-hash-by"] = prefix + key
    elif spec.mode != "none":
        raise _unsupported(
            "ingress-nginx", spec, "use cookie (the sid is only known after handshake)"
        )
    return Rendered([_service(o), _ingress(o, class_name="nginx", annotations=notes)], log)


def render_traefik(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """Traefik: v1 or v2 Service annotations, or the v3 TraefikService/IngressRoute CRDs."""
    if spec.mode not in ("cookie", "none"):
        raise _unsupported("traefik", spec, "Traefik sticky sessions are cookie-based")
    sticky = spec.mode == "cookie"
    if o.traefik_version == 1:
        notes = {d.TRAEFIK_V1_AFFINITY: "true", d.TRAEFIK_V1_COOKIE_NAME: spec.cookie_name}
        service = _service(o, annotations=notes if sticky else None)
        ingress = _ingress(o, class_annotation="traefik")
        return Rendered([service, ingress], ["Traefik 1.x ignores cookie TTL and SameSite"])
    log: list[str] = []
    spec = _secure_cookie(spec, log)
    if o.traefik_version == 2:
        notes = {
            d.TRAEFIK_STICKY: "true",
            d.TRAEFIK_STICKY + ".name": spec.cookie_name,
            d.TRAEFIK_STICKY + ".secure": str(spec.cookie_secure).lower(),
            d.TRAEFIK_STICKY + ".httponly": str(spec.cookie_httponly).lower(),
        }
        if spec.cookie_samesite:
            notes[d.TRAEFIK_STICKY + ".samesite"] = spec.cookie_samesite.lower()
        if spec.cookie_ttl:
            notes[d.TRAEFIK_STICKY + ".maxage"] = str(spec.cookie_ttl)
        service = _service(o, annotations=notes if sticky else None)
        return Rendered([service, _ingress(o, class_name="traefik")], log)
    if o.traefik_version != 3:
        raise UsageError(f"--traefik-version {o.traefik_version}: expected 1, 2 or 3")
    cookie: Manifest = {
        "name": spec.cookie_name,
        "secure": spec.cookie_secure,
        "httpOnly": spec.cookie_httponly,
    }
    if spec.cookie_samesite:
        cookie["sameSite"] = spec.cookie_samesite.lower()
    if spec.cookie_ttl:
        cookie["maxAge"] = spec.cookie_ttl
    weighted: Manifest = {"services": [{"name": o.name, "port": o.port, "weight": 1}]}
    if sticky:
        weighted["sticky"] = {"cookie": cookie}
    traefik_service = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": _meta(o, f"{o.name}-sticky"),
        "spec": {"weighted": weighted},
    }
    middleware = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": _meta(o, f"{o.name}-headers"),
        "spec": {"headers": {"customRequestHeaders": {"X-Forwarded-Proto": "https"}}},
    }
    route = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": _meta(o, o.name),
        "spec": {
            "entryPoints": ["websecure"],
            "tls": {},
            "routes": [
                {
                    "match": f"Host(`{o.host}`)",
                    "kind": "Rule",
                    "middlewares": [{"name": f"{o.name}-headers"}],
                    "services": [{"name": f"{o.name}-sticky", "kind": "TraefikService"}],
                }
            ],
        },
    }
    return Rendered([_service(o), middleware, traefik_service, route], log)


def render_alibaba(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """Alibaba SLB TCP listener with persistence, Local policy and Service ClientIP."""
    if spec.mode == "none":
        return Rendered([_service(o, type_="LoadBalancer")])
    if spec.mode != "client-ip":
        raise _unsupported(
            "alibaba",
            spec,
            "an HTTP listener's cookie cannot pin the node-to-pod hop; use client-ip",
        )
    notes: list[str] = []
    timeout = spec.client_ip_timeout
    if timeout > d.ALIBABA_PERSISTENCE_MAX:
        notes.append(f"SLB persistence is at most {d.ALIBABA_PERSISTENCE_MAX} s; capped")
        timeout = d.ALIBABA_PERSISTENCE_MAX
    service = _service(
        o,
        type_="LoadBalancer",
        annotations={
            d.ALIBABA_PROTOCOL_PORT: f"tcp:{o.port}",
            d.ALIBABA_PERSISTENCE: str(timeout),
        },
        spec_extra={
            "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": timeout}},
        },
    )
    return Rendered([service], notes)


def _gateway(o: RenderOptions, class_name: str) -> Manifest:
    listener = {"name": "http", "protocol": "HTTP", "port": 80, "hostname": o.host}
    return {
        "apiVersion": f"{d.GATEWAY_GROUP}/v1",
        "kind": "Gateway",
        "metadata": _meta(o, o.name),
        "spec": {"gatewayClassName": class_name, "listeners": [listener]},
    }


def _http_route(o: RenderOptions, persistence: Manifest | None) -> Manifest:
    rule: Manifest = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"name": o.name, "port": o.port}],
    }
    if persistence is not None:
        rule["sessionPersistence"] = persistence
    return {
        "apiVersion": f"{d.GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(o, o.name),
        "spec": {
            "parentRefs": [{"name": o.name, "sectionName": "http"}],
            "hostnames": [o.host],
            "rules": [rule],
        },
    }


def session_persistence(spec: AffinitySpec) -> Manifest:
    """An AffinitySpec of mode cookie as Gateway API sessionPersistence (GEP-1619)."""
    block: Manifest = {"sessionName": spec.cookie_name, "type": "Cookie"}
    if spec.cookie_ttl:
        block["absoluteTimeout"] = d.format_duration(spec.cookie_ttl)
        block["cookieConfig"] = {"lifetimeType": "Permanent"}
    else:
        block["cookieConfig"] = {"lifetimeType": "Session"}
    return block


def render_gateway_api(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """Service, Gateway and an HTTPRoute whose rule carries sessionPersistence (cookie)."""
    if spec.mode not in ("cookie", "none"):
        raise _unsupported(
            "gateway-api", spec, "Gateway API sessionPersistence is a gateway-issued cookie "
            "(or header); use cookie",
        )  # fmt: skip
    notes: list[str] = []
    class_name = o.gateway_class or GATEWAY_CLASS_PLACEHOLDER
    if not o.gateway_class:
        notes.append(
            f"gatewayClassName {class_name!r} is a placeholder: pass --gateway-class "
            "(kubectl get gatewayclass lists yours)"
        )
    persistence = session_persistence(spec) if spec.mode == "cookie" else None
    if persistence is not None:
        notes.append(
            "sessionPersistence is in the Gateway API experimental channel: install its CRDs "
            "and check that your implementation supports it"
        )
    manifests = [_service(o), _gateway(o, class_name), _http_route(o, persistence)]
    return Rendered(manifests, notes)


def _gke_target_ref(o: RenderOptions) -> Manifest:
    return {"group": "", "kind": "Service", "name": o.name}


def render_gke_gateway(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """Service, a GKE-class Gateway, HTTPRoute, GCPBackendPolicy and HealthCheckPolicy."""
    notes: list[str] = []
    affinity: Manifest
    if spec.mode == "cookie":
        affinity = {"type": "GENERATED_COOKIE"}
        if spec.cookie_ttl:
            affinity["cookieTtlSec"] = spec.cookie_ttl
        if spec.cookie_name != d.GKE_COOKIE:
            notes.append(f"GKE names its cookie {d.GKE_COOKIE}; --cookie-name is not used")
    elif spec.mode == "client-ip":
        affinity = {"type": "CLIENT_IP"}
    elif spec.mode == "none":
        affinity = {"type": "NONE"}
    else:
        raise _unsupported("gke-gateway", spec, "a GCPBackendPolicy offers cookie or client-ip")
    class_name = o.gateway_class or GKE_GATEWAY_CLASSES[0]
    if class_name not in GKE_GATEWAY_CLASSES:
        notes.append(f"{class_name!r} is not one of GKE's Gateway classes")
    policy = {
        "apiVersion": f"{d.GKE_POLICY_GROUP}/v1",
        "kind": "GCPBackendPolicy",
        "metadata": _meta(o, o.name),
        "spec": {
            "default": {
                "timeoutSec": WEBSOCKET_TIMEOUT,
                "connectionDraining": {"drainingTimeoutSec": 60},
                "sessionAffinity": affinity,
            },
            "targetRef": _gke_target_ref(o),
        },
    }
    health = {
        "apiVersion": f"{d.GKE_POLICY_GROUP}/v1",
        "kind": "HealthCheckPolicy",
        "metadata": _meta(o, o.name),
        "spec": {
            "default": {
                "config": {
                    "type": "HTTP",
                    "httpHealthCheck": {
                        "port": o.target_port,
                        "requestPath": o.health_path,
                    },
                }
            },
            "targetRef": _gke_target_ref(o),
        },
    }
    notes.append(f"the HealthCheckPolicy probes {o.health_path} on port {o.target_port}")
    manifests = [
        _service(o),
        _gateway(o, class_name),
        _http_route(o, None),
        policy,
        health,
    ]
    return Rendered(manifests, notes)


def _probe(path: str, port: str) -> Manifest:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 5, "failureThreshold": 3}


def _deployment(
    o: RenderOptions,
    name: str,
    component: str,
    replicas: int,
    container: Manifest,
    service_account: str = "",
) -> Manifest:
    labels = _selector(o, component)
    pod_spec: Manifest = {"containers": [container]}
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(o, name, labels=labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_limpet(spec: AffinitySpec, o: RenderOptions) -> Rendered:
    """limpet proxy (2+ replicas, Secret, RBAC, probes, PDB) in front of hub replicas on Redis."""
    proxy, hub, redis = f"{o.name}-proxy", f"{o.name}-hub", f"{o.name}-redis"
    notes: list[str] = []
    secret_value = o.secret
    if not secret_value:
        secret_value = "REPLACE-WITH-A-RANDOM-SECRET"
        notes.append(f"set a random value in Secret {proxy}")
    args = [
        "proxy",
        "--listen", "0.0.0.0:8080",
        "--admin", "0.0.0.0:9090",
        "--kubernetes-service", f"{o.namespace}/{hub}",
        "--affinity", spec.flag(),
    ]  # fmt: skip
    if spec.mode == "cookie":
        args += ["--cookie-name", spec.cookie_name]
        if spec.cookie_ttl:
            args += ["--cookie-ttl", str(spec.cookie_ttl)]
    if spec.mode == "client-ip":
        args += ["--client-ip-timeout", str(spec.client_ip_timeout)]
    proxy_container: Manifest = {
        "name": "proxy",
        "image": o.limpet_image,
        "args": args,
        "env": [
            {
                "name": "LIMPET_SECRET",
                "valueFrom": {"secretKeyRef": {"name": proxy, "key": "secret"}},
            }
        ],
        "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "admin", "containerPort": 9090},
        ],
        "livenessProbe": _probe("/healthz", "admin"),
        "readinessProbe": _probe("/readyz", "admin"),
    }
    hub_container: Manifest = {
        "name": "hub",
        "image": o.image,
        "args": [
            "hub",
            "--listen",
            f"0.0.0.0:{o.target_port}",
            "--broker",
            o.broker or f"redis://{redis}:6379",
        ],
        "ports": [{"name": "http", "containerPort": o.target_port}],
        "readinessProbe": _probe("/healthz", "http"),
    }
    redis_container: Manifest = {
        "name": "redis",
        "image": "redis:7",
        "args": ["--save", "", "--appendonly", "no"],
        "ports": [{"name": "redis", "containerPort": 6379}],
    }
    rbac_rules = [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list"]},
        {"apiGroups": ["cloud.google.com"], "resources": ["backendconfigs"], "verbs": ["get"]},
        {
            "apiGroups": [d.GATEWAY_GROUP],
            "resources": ["httproutes", "grpcroutes", "backendlbpolicies"],
            "verbs": ["list"],
        },
        {"apiGroups": [d.GKE_POLICY_GROUP], "resources": ["gcpbackendpolicies"], "verbs": ["list"]},
    ]
    manifests: list[Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(o, proxy),
            "type": "Opaque",
            "stringData": {"secret": secret_value},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(o, proxy)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(o, proxy),
            "rules": rbac_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(o, proxy),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": proxy},
            "subjects": [{"kind": "ServiceAccount", "name": proxy, "namespace": o.namespace}],
        },
        _deployment(o, proxy, "proxy", max(2, o.replicas), proxy_container, proxy),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(o, proxy),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector(o, "proxy")}},
        },
        _service(
            o,
            name=proxy,
            type_="LoadBalancer",
            component="proxy",
            target_port=8080,
        ),
        _deployment(o, hub, "hub", o.replicas, hub_container),
        _service(o, name=hub, component="hub", target_port=o.target_port),
    ]
    if o.broker:
        notes.extend(_external_broker_notes(o.broker))
    else:
        manifests += [
            _deployment(o, redis, "redis", 1, redis_container),
            _service(o, name=redis, component="redis", port=6379, target_port=6379),
        ]
    notes.append("no cloud affinity needed: the proxy pins sessions itself")
    return Rendered(manifests, notes)


def _external_broker_notes(broker: str) -> list[str]:
    """The hub runs against a broker the user operates: name the usual Helm chart for it."""
    scheme = broker.partition("://")[0].lower()
    if scheme.endswith("+cluster"):
        chart = "Redis Cluster, e.g. the Bitnami chart: helm install redis bitnami/redis-cluster"
    elif scheme.endswith("+sentinel"):
        chart = "Redis with Sentinel, e.g. the Bitnami chart: helm install redis bitnami/redis --set sentinel.enabled=true"
    elif scheme in ("nats", "tls"):
        chart = "a NATS cluster with JetStream, e.g. the NATS chart: helm install nats nats/nats --set config.cluster.enabled=true --set config.jetstream.enabled=true"
    else:
        chart = "that Redis"
    return [f"the hub uses the external broker {broker}: no broker is rendered; run {chart}"]


RENDERERS: dict[str, Callable[[AffinitySpec, RenderOptions], Rendered]] = {
    "gke": render_gke,
    "ingress-nginx": render_nginx,
    "traefik": render_traefik,
    "alibaba": render_alibaba,
    "kube-proxy": render_kube_proxy,
    "limpet": render_limpet,
    "gateway-api": render_gateway_api,
    "gke-gateway": render_gke_gateway,
}


#: RFC 1123 label: what Kubernetes accepts as a Service or namespace name
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LONGEST_SUFFIX = len("-backendconfig")


def check_options(o: RenderOptions) -> None:
    """UsageError for names Kubernetes would reject (the API server would say it later)."""
    if not _DNS_LABEL.fullmatch(o.namespace) or len(o.namespace) > 63:
        raise UsageError(f"--namespace {o.namespace!r}: expected lower-case a-z, 0-9 and '-'")
    if not _DNS_LABEL.fullmatch(o.name) or len(o.name) > 63 - _LONGEST_SUFFIX:
        raise UsageError(
            f"--name {o.name!r}: expected lower-case a-z, 0-9 and '-', "
            f"at most {63 - _LONGEST_SUFFIX} characters"
        )
    if not 1 <= o.port <= 65535 or not 1 <= o.target_port <= 65535:
        raise UsageError("--port and --target-port must be 1..65535")
    if o.replicas < 0:
        raise UsageError("--replicas must not be negative")
    if o.canary_weight is not None and not 0 <= o.canary_weight <= 100:
        raise UsageError("--canary-weight is a percent: 0..100")
    if o.gateway_class and (
        not _DNS_SUBDOMAIN.fullmatch(o.gateway_class) or len(o.gateway_class) > 253
    ):
        raise UsageError(f"--gateway-class {o.gateway_class!r}: expected a Kubernetes object name")


def render(target: str, spec: AffinitySpec, options: RenderOptions | None = None) -> Rendered:
    """Manifests for ``target``; UsageError when the platform cannot express ``spec``."""
    options = options or RenderOptions()
    check_options(options)
    try:
        renderer = RENDERERS[target]
    except KeyError:
        raise UsageError(f"--target {target!r}: expected one of {', '.join(TARGETS)}") from None
    rendered = renderer(spec, options)
    if options.canary_weight is not None:
        add_canary(target, rendered, options)
    return _self_lint(target, rendered)


def _self_lint(target: str, rendered: Rendered) -> Rendered:
    """Lint the output as ``limpet k8s lint`` would: refuse on errors, carry warnings along.

    So what ``render`` prints never fails ``lint``, and a short TTL is said at render time by
    the same rule that ``lint`` would name later.
    """
    from limpet.k8s.lint import lint_sources
    from limpet.k8s.yamlnodes import dump_all

    findings = lint_sources([(target, dump_all(rendered.manifests))])
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        why = "; ".join(f"[{f.rule}] {f.message} (fix: {f.hint})" for f in errors)
        raise UsageError(f"--target {target}: the manifests would not pass lint: {why}")
    rendered.warnings = [f"[{f.rule}] {f.message}" for f in findings]
    return rendered
