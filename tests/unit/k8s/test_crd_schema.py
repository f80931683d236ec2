"""Rendered Gateway API and GKE Gateway objects against the fields of their published CRDs.

No API server runs here, so the custom resources are checked against a trimmed copy of their
openAPIV3Schema (tests/fixtures/k8s/schemas/gateway-api.yaml): types, enums, patterns, limits,
required fields, and no unknown field (a structural schema would prune it: the setting vanishes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from limpet.affinity.spec import AffinitySpec
from limpet.k8s.render import RenderOptions, render

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "k8s"
SCHEMA = yaml.safe_load((FIXTURES / "schemas" / "gateway-api.yaml").read_text())
COMMON = {"apiVersion", "kind", "metadata"}


def errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The openAPIV3Schema subset the trimmed CRDs use (a handful of keywords, by hand)."""
    if "$ref" in schema:
        schema = SCHEMA["definitions"][schema["$ref"]]
    kind = schema.get("type")
    python = {"object": dict, "array": list, "string": str, "integer": int}.get(kind or "")
    if python is not None and (not isinstance(value, python) or isinstance(value, bool)):
        return [f"{path or '/'}: expected {kind}, got {value!r}"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value.encode()) > schema.get("maxLength", 1 << 30):
            out.append(f"{path}: longer than {schema['maxLength']}")
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: shorter than {schema['minLength']}")
    number = isinstance(value, int) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        out.append(f"{path}: {value} outside {schema.get('minimum')}..{schema.get('maximum')}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 1 << 30):
            out.append(f"{path}: {len(value)} items")
        for i, item in enumerate(value):
            out += errors(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}.{key}: required")
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                out += errors(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += errors(item, extra, f"{path}.{key}")
            elif props is not None and not (path == "" and key in COMMON):
                out.append(f"{path}.{key}: unknown field")
    return out


def check(manifest: dict[str, Any]) -> list[str]:
    key = f"{manifest['apiVersion']}/{manifest['kind']}"
    found = errors(manifest, SCHEMA["kinds"][key])
    return found + errors(manifest["metadata"], SCHEMA["definitions"]["metadata"], ".metadata")


SPECS = {
    "cookie": AffinitySpec(mode="cookie", cookie_name="chat", cookie_ttl=3600),
    "long-cookie": AffinitySpec(mode="cookie", cookie_ttl=10**6),
    "session-cookie": AffinitySpec(mode="cookie"),
    "client-ip": AffinitySpec(mode="client-ip"),
    "none": AffinitySpec(mode="none"),
}
CASES = [
    (target, name)
    for target in ("gateway-api", "gke-gateway")
    for name in SPECS
    if not (target == "gateway-api" and name == "client-ip")
]


@pytest.mark.parametrize(("target", "name"), CASES, ids=[f"{t}-{n}" for t, n in CASES])
def test_rendered_custom_resources_match_the_crds(target: str, name: str) -> None:
    options = RenderOptions(name="chat", gateway_class="envoy" if target == "gateway-api" else "")
    checked = 0
    for manifest in render(target, SPECS[name], options).manifests:
        if manifest["apiVersion"] == "v1":
            continue  # the Service: kubectl decodes it (tests/integration/k8s)
        assert check(manifest) == [], manifest["kind"]
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").glob("g*.yaml")), ids=lambda p: p.name)
def test_good_corpus_gateway_objects_match_the_crds(path: Path) -> None:
    for manifest in yaml.safe_load_all(path.read_text()):
        if f"{manifest['apiVersion']}/{manifest['kind']}" in SCHEMA["kinds"]:
            assert check(manifest) == []


def test_schema_check_can_fail() -> None:
    route = render("gateway-api", SPECS["cookie"]).manifests[2]
    rule = route["spec"]["rules"][0]
    rule["sessionPersistence"]["absoluteTimeout"] = "1d"
    rule["sessionPersistence"]["sessionName"] = "x" * 129
    rule["sessionPersisence"] = {}
    rule["backendRefs"][0]["port"] = "http"
    found = check(route)
    assert any("absoluteTimeout: '1d' does not match" in e for e in found)
    assert any("sessionName: longer than 128" in e for e in found)
    assert any("sessionPersisence: unknown field" in e for e in found)
    assert any("port: expected integer" in e for e in found)
    policy = render("gke-gateway", SPECS["cookie"]).manifests[3]
    policy["spec"]["default"]["sessionAffinity"]["type"] = "COOKIE"
    del policy["spec"]["targetRef"]["group"]
    found = check(policy)
    assert any("not one of" in e for e in found) and any("group: required" in e for e in found)
