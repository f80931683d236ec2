"""Rendered manifests against the real Kubernetes types, offline.

What this proves, and what it does not (no API server can run here):
- ``kubectl ... --local`` decodes Services, Deployments and RoleBindings into kubectl's compiled Go
  types: a wrong type fails the run, and an unknown field is dropped, which the subset comparison
  below turns into a failure. ``kubectl apply/create --dry-run=client`` cannot be used offline: both
  need the server's discovery to map a kind to a resource, and ``--validate`` needs its OpenAPI.
- Every built-in kind (Ingress, Secret, Role, PDB, ... too) is checked field by field against the
  generated models of kubernetes_asyncio (built from the Kubernetes OpenAPI spec): unknown fields
  and wrong scalar types fail. Gateway API and GKE Gateway resources are checked against their
  published CRD schemas in tests/unit/k8s/test_crd_schema.py; BackendConfig and Traefik CRDs
  by the linter only.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from limpet.affinity.spec import AffinitySpec
from limpet.k8s.render import TARGETS, RenderOptions, render
from limpet.k8s.yamlnodes import dump_all
from tests.support.procs import which_or_skip

SPECS = {
    "gke": AffinitySpec(mode="cookie", cookie_ttl=3600),
    "ingress-nginx": AffinitySpec(mode="cookie", cookie_name="route", cookie_ttl=3600),
    "traefik": AffinitySpec(mode="cookie", cookie_name="route", cookie_ttl=3600),
    "alibaba": AffinitySpec(mode="client-ip", client_ip_timeout=1800),
    "kube-proxy": AffinitySpec(mode="client-ip", client_ip_timeout=1800),
    "limpet": AffinitySpec(mode="cookie"),
    "gateway-api": AffinitySpec(mode="cookie", cookie_name="route", cookie_ttl=3600),
    "gke-gateway": AffinitySpec(mode="cookie", cookie_ttl=3600),
}
BUILTIN_GROUPS = {
    "v1",
    "apps/v1",
    "networking.k8s.io/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
}

# A kubeconfig for a server nobody runs (loopback port 1), so kubectl never reads a real one.
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {token: none}}]
"""


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for target in TARGETS:
        for version in (1, 2, 3) if target == "traefik" else (3,):
            options = RenderOptions(name="chat", traefik_version=version, secret="x" * 32)
            for m in render(target, SPECS[target], options).manifests:
                out.append((f"{target}-v{version}" if target == "traefik" else target, m))
    return out


MANIFESTS = all_manifests()


def ids(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}-{item[1]['kind']}-{item[1]['metadata']['name']}"


def missing_in(want: Any, got: Any, path: str = "") -> list[str]:
    """Paths of ``want`` that ``got`` lacks or holds differently (``got`` may add defaults)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [path or "/"]
        return [p for k, v in want.items() for p in missing_in(v, got.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [path]
        return [p for i, v in enumerate(want) for p in missing_in(v, got[i], f"{path}[{i}]")]
    return [] if want == got else [path]


# --- kubectl typed decode -----------------------------------------------------------------------
TYPED_VERBS = {
    "Service": lambda m: ["set", "selector", ",".join(f"{k}={v}" for k, v in m["spec"]["selector"].items())],
    "Deployment": lambda m: ["set", "serviceaccount", m["spec"]["template"]["spec"].get("serviceAccountName", "default")],
    # kubectl prints nothing when the subject is already there, so add one and drop it below
    "RoleBinding": lambda m: ["set", "subject", "--user=limpet-test"],
}  # fmt: skip


def kubectl_local(kubectl: str, tmp: Path, verb: list[str], manifest: dict[str, Any]) -> Any:
    config = tmp / "kubeconfig"
    config.write_text(KUBECONFIG)
    result = subprocess.run(
        [kubectl, *verb, "--local", "-f", "-", "-o", "json"],
        input=dump_all([manifest]),
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(config), "HOME": str(tmp), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


TYPED = [item for item in MANIFESTS if item[1]["kind"] in TYPED_VERBS]


@pytest.mark.parametrize("item", TYPED, ids=[ids(i) for i in TYPED])
def test_kubectl_decodes_every_field(item: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    kubectl = which_or_skip("kubectl")
    manifest = item[1]
    decoded = kubectl_local(kubectl, tmp_path, TYPED_VERBS[manifest["kind"]](manifest), manifest)
    if manifest["kind"] == "RoleBinding":
        decoded["subjects"] = [s for s in decoded["subjects"] if s.get("name") != "limpet-test"]
    assert missing_in(manifest, decoded) == []


def test_kubectl_check_can_fail(tmp_path: Path) -> None:
    """A misspelt field is dropped by the typed decode and the comparison notices."""
    kubectl = which_or_skip("kubectl")
    (service,) = render("kube-proxy", SPECS["kube-proxy"]).manifests
    service["spec"]["sessionAfinity"] = "ClientIP"
    decoded = kubectl_local(kubectl, tmp_path, TYPED_VERBS["Service"](service), service)
    assert missing_in(service, decoded) == [".spec.sessionAfinity"]
    service["spec"].pop("sessionAfinity")
    service["spec"]["ports"][0]["port"] = "eighty"
    config = tmp_path / "kubeconfig"
    result = subprocess.run(
        [kubectl, *TYPED_VERBS["Service"](service), "--local", "-f", "-", "-o", "json"],
        input=dump_all([service]), capture_output=True, text=True, timeout=60,
        env={"KUBECONFIG": str(config), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode != 0 and "cannot unmarshal" in result.stderr


# --- the OpenAPI-generated models of kubernetes_asyncio ---------------------------------------
def schema_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    import kubernetes_asyncio.client.models as models

    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            e
            for i, v in enumerate(value)
            for e in schema_errors(v, type_name[5:-1], f"{path}[{i}]")
        ]
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        return [e for k, v in value.items() for e in schema_errors(v, inner, f"{path}.{k}")]
    scalars: dict[str, Any] = {
        "str": str,
        "int": int,
        "bool": bool,
        "float": (int, float),
        "datetime": str,
    }
    if type_name in scalars:
        ok = isinstance(value, scalars[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    if type_name == "object":  # IntOrString, Quantity, raw JSON
        return []
    model = getattr(models, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    by_json = {v: k for k, v in model.attribute_map.items()}
    errors = []
    for key, sub in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        errors += schema_errors(sub, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


BUILTIN = [item for item in MANIFESTS if item[1]["apiVersion"] in BUILTIN_GROUPS]


@pytest.mark.parametrize("item", BUILTIN, ids=[ids(i) for i in BUILTIN])
def test_builtin_kinds_match_the_api_schema(item: tuple[str, dict[str, Any]]) -> None:
    manifest = item[1]
    version = manifest["apiVersion"].rsplit("/", 1)[-1].capitalize()
    assert schema_errors(manifest, f"{version}{manifest['kind']}") == []


def test_schema_check_can_fail() -> None:
    ingress = next(m for t, m in MANIFESTS if m["kind"] == "Ingress")
    bad = json.loads(json.dumps(ingress))
    bad["spec"]["rules"][0]["http"]["paths"][0]["backend"]["serviceName"] = "chat"
    bad["spec"]["ingressClassName"] = 5
    errors = schema_errors(bad, "V1Ingress")
    assert any("serviceName: unknown field" in e for e in errors)
    assert any("ingressClassName: expected str" in e for e in errors)


def test_every_builtin_kind_is_checked() -> None:
    assert {m["kind"] for _, m in BUILTIN} >= {
        "Service", "Ingress", "Deployment", "Secret", "ServiceAccount", "Role", "RoleBinding",
        "PodDisruptionBudget",
    }  # fmt: skip
