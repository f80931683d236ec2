"""Every render target: parses back as YAML, lints clean, and says no when it cannot express a rule."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from limpet.affinity.spec import AffinitySpec
from limpet.cli import main
from limpet.errors import UsageError
from limpet.k8s.dialects import derive
from limpet.k8s.lint import lint_sources
from limpet.k8s.render import TARGETS, RenderOptions, render
from limpet.k8s.yamlnodes import dump_all

SPECS: dict[str, AffinitySpec] = {
    "cookie": AffinitySpec(mode="cookie", cookie_name="chat", cookie_ttl=3600),
    "session-cookie": AffinitySpec(mode="cookie"),
    "client-ip": AffinitySpec(mode="client-ip", client_ip_timeout=1800),
    "none": AffinitySpec(mode="none"),
    "hash": AffinitySpec(mode="hash", hash_source="header", hash_key="X-User"),
    "engineio": AffinitySpec(mode="engineio"),
}
SUPPORTED: dict[str, set[str]] = {
    "gke": {"cookie", "session-cookie", "client-ip", "none"},
    "ingress-nginx": {"cookie", "session-cookie", "client-ip", "none", "hash"},
    "traefik": {"cookie", "session-cookie", "none"},
    "alibaba": {"client-ip", "none"},
    "kube-proxy": {"client-ip", "none"},
    "limpet": set(SPECS),
    "gateway-api": {"cookie", "session-cookie", "none"},
    "gke-gateway": {"cookie", "session-cookie", "client-ip", "none"},
}
CASES = [(t, s) for t in TARGETS for s in SPECS]


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


@pytest.mark.parametrize(("target", "spec_name"), CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_render_parses_and_lints_clean(target: str, spec_name: str) -> None:
    spec = SPECS[spec_name]
    if spec_name not in SUPPORTED[target]:
        with pytest.raises(UsageError, match=f"--target {target} cannot express"):
            render(target, spec)
        return
    for version in (1, 2, 3) if target == "traefik" else (3,):
        rendered = render(target, spec, RenderOptions(traefik_version=version))
        text = dump_all(rendered.manifests)
        assert list(yaml.safe_load_all(text)) == rendered.manifests
        for m in rendered.manifests:
            assert m["apiVersion"] and m["kind"] and m["metadata"]["name"]
        findings = lint_sources([(f"{target}.yaml", text)])
        assert [f for f in findings] == [], findings


def test_gke_is_complete() -> None:
    manifests = render("gke", SPECS["cookie"]).manifests
    assert kinds(manifests) == ["Service", "BackendConfig", "Ingress"]
    service, bc, ingress = manifests
    notes = service["metadata"]["annotations"]
    assert notes["cloud.google.com/neg"] == '{"ingress": true}'
    assert bc["spec"]["sessionAffinity"] == {
        "affinityType": "GENERATED_COOKIE",
        "affinityCookieTtlSec": 3600,
    }
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "gce"


def test_traefik_versions_differ() -> None:
    v1 = render("traefik", SPECS["cookie"], RenderOptions(traefik_version=1)).manifests
    v3 = render("traefik", SPECS["cookie"], RenderOptions(traefik_version=3)).manifests
    assert v1[0]["metadata"]["annotations"]["traefik.ingress.kubernetes.io/affinity"] == "true"
    assert kinds(v3) == ["Service", "Middleware", "TraefikService", "IngressRoute"]
    assert v3[2]["spec"]["weighted"]["sticky"]["cookie"]["maxAge"] == 3600


def test_alibaba_caps_persistence() -> None:
    rendered = render("alibaba", AffinitySpec(mode="client-ip", client_ip_timeout=10800))
    (service,) = rendered.manifests
    key = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-persistence-timeout"
    assert service["metadata"]["annotations"][key] == "3600"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert any("3600" in n for n in rendered.notes)


def test_limpet_target_is_a_whole_deployment() -> None:
    manifests = render(
        "limpet", SPECS["cookie"], RenderOptions(secret="s3cret", replicas=1)
    ).manifests
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        by_kind.setdefault(m["kind"], []).append(m)
    assert set(by_kind) == {
        "Secret", "ServiceAccount", "Role", "RoleBinding", "Deployment",
        "PodDisruptionBudget", "Service",
    }  # fmt: skip
    proxy = next(m for m in by_kind["Deployment"] if m["metadata"]["name"] == "app-proxy")
    assert proxy["spec"]["replicas"] >= 2  # one replica would make the PDB block every drain
    pod = proxy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "app-proxy"
    assert "--kubernetes-service" in container["args"]
    assert pod["serviceAccountName"] == "app-proxy"
    (role,) = by_kind["Role"]
    slices = next(r for r in role["rules"] if r["resources"] == ["endpointslices"])
    assert set(slices["verbs"]) == {"get", "list", "watch"}
    assert by_kind["Secret"][0]["stringData"]["secret"] == "s3cret"
    hub = next(m for m in by_kind["Deployment"] if m["metadata"]["name"] == "app-hub")
    assert "redis://app-redis:6379" in hub["spec"]["template"]["spec"]["containers"][0]["args"]


def test_unknown_target() -> None:
    with pytest.raises(UsageError, match="expected one of"):
        render("haproxy", SPECS["cookie"])


def test_cli_render(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", "--target", "kube-proxy", "--affinity", "client-ip"]) == 0
    (service,) = yaml.safe_load_all(capsys.readouterr().out)
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert main(["k8s", "render", "--target", "kube-proxy", "--affinity", "cookie"]) == 2
    assert "cannot express" in capsys.readouterr().err
    assert main(["k8s", "render", "--target", "gke", "--port", "0"]) == 2


def test_cli_limpet_secret_is_random(capsys: pytest.CaptureFixture[str]) -> None:
    secrets = []
    for _ in range(2):
        assert main(["k8s", "render", "--target", "limpet"]) == 0
        docs = list(yaml.safe_load_all(capsys.readouterr().out))
        secrets.append(next(d for d in docs if d["kind"] == "Secret")["stringData"]["secret"])
    assert secrets[0] != secrets[1] and len(secrets[0]) >= 32


def test_cli_render_gateway_class(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["k8s", "render", "--target", "gateway-api", "--gateway-class", "envoy"]
    assert main(argv) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert next(d for d in docs if d["kind"] == "Gateway")["spec"]["gatewayClassName"] == "envoy"


def test_cli_explain(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    assert main(["k8s", "render", "--target", "ingress-nginx", "--cookie-name", "route"]) == 0
    path.write_text(capsys.readouterr().out)
    assert main(["k8s", "explain", "--format", "json", str(path)]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["dialect"] == "ingress-nginx"
    assert out["spec"]["cookie_name"] == "route"


def test_limpet_target_references_resolve() -> None:
    """Every name the limpet manifests refer to exists, and every selector selects pods."""
    manifests = render("limpet", SPECS["cookie"], RenderOptions(name="chat")).manifests
    named = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    pod_labels = [
        m["spec"]["template"]["metadata"]["labels"] for m in manifests if m["kind"] == "Deployment"
    ]

    def selects(selector: dict[str, str]) -> int:
        return sum(all(labels.get(k) == v for k, v in selector.items()) for labels in pod_labels)

    for m in manifests:
        if m["kind"] == "Service":
            assert selects(m["spec"]["selector"]) == 1, m["metadata"]["name"]
        if m["kind"] in ("Deployment", "PodDisruptionBudget"):
            assert selects(m["spec"]["selector"]["matchLabels"]) == 1
        if m["kind"] == "RoleBinding":
            assert ("Role", m["roleRef"]["name"]) in named
            assert ("ServiceAccount", m["subjects"][0]["name"]) in named
        if m["kind"] == "Deployment":
            pod = m["spec"]["template"]["spec"]
            if "serviceAccountName" in pod:
                assert ("ServiceAccount", pod["serviceAccountName"]) in named
            for env in pod["containers"][0].get("env", []):
                assert ("Secret", env["valueFrom"]["secretKeyRef"]["name"]) in named
    proxy = next(
        m for m in manifests if m["metadata"]["name"] == "chat-proxy" and m["kind"] == "Deployment"
    )
    args = proxy["spec"]["template"]["spec"]["containers"][0]["args"]
    hub_service = args[args.index("--kubernetes-service") + 1]
    assert hub_service == "default/chat-hub" and ("Service", "chat-hub") in named


@pytest.mark.parametrize(
    "options",
    [
        RenderOptions(name="Chat"),
        RenderOptions(name="chat_app"),
        RenderOptions(name="x" * 60),
        RenderOptions(namespace="-web"),
        RenderOptions(port=0),
        RenderOptions(target_port=70000),
        RenderOptions(replicas=-1),
    ],
)
def test_names_kubernetes_rejects_are_refused(options: RenderOptions) -> None:
    with pytest.raises(UsageError):
        render("kube-proxy", SPECS["client-ip"], options)


@pytest.mark.parametrize("version", [2, 3])
def test_samesite_none_is_rendered_secure(version: int) -> None:
    spec = AffinitySpec(mode="cookie", cookie_samesite="None", cookie_secure=False)
    rendered = render("traefik", spec, RenderOptions(traefik_version=version))
    assert any("must be Secure" in n for n in rendered.notes)
    assert lint_sources([("t.yaml", dump_all(rendered.manifests))]) == []
    spec_back = derive(rendered.manifests).spec
    assert (spec_back.cookie_samesite, spec_back.cookie_secure) == ("None", True)


def test_gateway_api_is_complete() -> None:
    rendered = render("gateway-api", SPECS["cookie"], RenderOptions(gateway_class="envoy"))
    assert kinds(rendered.manifests) == ["Service", "Gateway", "HTTPRoute"]
    _, gateway, route = rendered.manifests
    assert gateway["spec"]["gatewayClassName"] == "envoy"
    (rule,) = route["spec"]["rules"]
    assert rule["sessionPersistence"] == {
        "sessionName": "chat",
        "type": "Cookie",
        "absoluteTimeout": "1h",
        "cookieConfig": {"lifetimeType": "Permanent"},
    }
    assert route["spec"]["parentRefs"][0]["name"] == gateway["metadata"]["name"]
    assert rule["backendRefs"] == [{"name": "app", "port": 80}]
    assert not any("placeholder" in n for n in rendered.notes)
    placeholder = render("gateway-api", SPECS["cookie"])
    assert any("--gateway-class" in n for n in placeholder.notes)


def test_gke_gateway_is_complete() -> None:
    manifests = render("gke-gateway", SPECS["cookie"]).manifests
    assert kinds(manifests) == [
        "Service", "Gateway", "HTTPRoute", "GCPBackendPolicy", "HealthCheckPolicy",
    ]  # fmt: skip
    _, gateway, route, policy, health = manifests
    assert gateway["spec"]["gatewayClassName"] == "gke-l7-global-external-managed"
    assert "sessionPersistence" not in route["spec"]["rules"][0]
    assert policy["spec"]["default"]["sessionAffinity"] == {
        "type": "GENERATED_COOKIE",
        "cookieTtlSec": 3600,
    }
    for p in (policy, health):
        assert p["spec"]["targetRef"] == {"group": "", "kind": "Service", "name": "app"}
    assert health["spec"]["default"]["config"]["httpHealthCheck"]["port"] == 8080


@pytest.mark.parametrize("target", ["gateway-api", "gke-gateway"])
@pytest.mark.parametrize("spec_name", ["cookie", "session-cookie", "client-ip"])
def test_gateway_targets_derive_back(target: str, spec_name: str) -> None:
    spec = SPECS[spec_name]
    if spec_name not in SUPPORTED[target]:
        return
    derived = derive(render(target, spec).manifests).spec
    assert derived.mode == spec.mode
    if spec.mode == "cookie":
        assert derived.cookie_ttl == spec.cookie_ttl
        want = "GCLB" if target == "gke-gateway" else spec.cookie_name
        assert derived.cookie_name == want


@pytest.mark.parametrize(("seconds", "text"), [(1, "1s"), (3600, "1h"), (5400, "1h30m"),
                                                (100000, "27h46m40s"), (86400, "24h")])  # fmt: skip
def test_durations_render_in_the_crd_pattern(seconds: int, text: str) -> None:
    from limpet.k8s.dialects import format_duration, parse_duration

    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_gateway_class_is_checked() -> None:
    with pytest.raises(UsageError, match="--gateway-class"):
        render("gateway-api", SPECS["cookie"], RenderOptions(gateway_class="Not A Name"))
    notes = render("gke-gateway", SPECS["cookie"], RenderOptions(gateway_class="envoy")).notes
    assert any("not one of GKE's Gateway classes" in n for n in notes)


@pytest.mark.parametrize(("target", "dialect"), [("gateway-api", "gateway-api"),
                                                 ("gke-gateway", "gke-gateway")])  # fmt: skip
def test_cli_explain_gateway(
    target: str, dialect: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.yaml"
    assert main(["k8s", "render", "--target", target, "--cookie-ttl", "3600"]) == 0
    path.write_text(capsys.readouterr().out)
    assert main(["k8s", "explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"affinity: cookie  (from {dialect})")
