"""docs/kubernetes.md promises that everything `render` prints lints clean: every target and
option combination goes through the linter; render refuses (errors) or warns (warnings) with
the rule `lint` would name."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.affinity.spec import AffinitySpec
from limpet.cli import main
from limpet.errors import UsageError
from limpet.k8s.lint import lint_sources
from limpet.k8s.render import TARGETS, RenderOptions, render
from limpet.k8s.yamlnodes import dump_all

AFFINITIES = st.sampled_from(
    ["none", "cookie", "client-ip", "engineio", "hash:header:X-User", "hash:cookie:sid",
     "hash:query:room"]
)  # fmt: skip
SPECS = st.builds(
    lambda flag, ttl, samesite, secure, timeout, mode: replace(
        AffinitySpec.from_flag(flag),
        cookie_ttl=ttl,
        cookie_samesite=samesite,
        cookie_secure=secure,
        client_ip_timeout=timeout,
        cookie_mode=mode,
    ),
    AFFINITIES,
    st.one_of(st.none(), st.integers(1, 200_000), st.sampled_from([30, 44, 45, 299, 300])),
    st.sampled_from([None, "Lax", "Strict", "None"]),
    st.booleans(),
    st.one_of(st.integers(1, 86_400), st.sampled_from([1, 44, 45, 3600, 3601, 86_400])),
    st.sampled_from(["persistent", "balanced"]),
)
OPTIONS = st.builds(
    RenderOptions,
    name=st.sampled_from(["app", "chat", "a", "x" * 49]),
    namespace=st.sampled_from(["default", "web"]),
    port=st.sampled_from([80, 443, 8080, 65535]),
    target_port=st.sampled_from([1, 3000, 8080]),
    replicas=st.integers(0, 5),
    traefik_version=st.sampled_from([1, 2, 3]),
    gateway_class=st.sampled_from(["", "envoy", "gke-l7-rilb"]),
    secret=st.just("s" * 32),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TARGETS), SPECS, OPTIONS)
def test_every_render_lints_without_errors(
    target: str, spec: AffinitySpec, o: RenderOptions
) -> None:
    try:
        rendered = render(target, spec, o)
    except UsageError as exc:
        assert "cannot express" in str(exc) or "would not pass lint" in str(exc)
        return
    findings = lint_sources([("out.yaml", dump_all(rendered.manifests))])
    assert [f for f in findings if f.severity == "error"] == []
    assert sorted(f"[{f.rule}] {f.message}" for f in findings) == sorted(rendered.warnings)


@pytest.mark.parametrize("target", ["traefik", "ingress-nginx", "gke", "gateway-api",
                                    "gke-gateway"])  # fmt: skip
def test_a_cookie_shorter_than_a_ping_cycle_is_refused(target: str) -> None:
    with pytest.raises(UsageError, match=r"\[cookie-ttl-short\]"):
        render(target, AffinitySpec(mode="cookie", cookie_ttl=30))
    # the twin: a few minutes is a warning printed at render time, the one lint gives later
    rendered = render(target, AffinitySpec(mode="cookie", cookie_ttl=120))
    assert any(w.startswith("[cookie-ttl-short]") for w in rendered.warnings)


def test_cli_refuses_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", "--target", "traefik", "--cookie-ttl", "30"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "[cookie-ttl-short]" in captured.err
    assert main(["k8s", "render", "--target", "traefik", "--cookie-ttl", "120"]) == 0
    assert "warning: [cookie-ttl-short]" in capsys.readouterr().err
