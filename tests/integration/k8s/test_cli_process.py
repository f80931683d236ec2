"""`limpet k8s` as a user runs it: a real process, files and stdin, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import limpet_env

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "k8s"


def limpet(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limpet", "k8s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=limpet_env(),
        timeout=60,
    )


def test_render_pipes_into_lint_clean() -> None:
    rendered = limpet("render", "--target", "gke", "--cookie-ttl", "3600")
    assert rendered.returncode == 0, rendered.stderr
    linted = limpet("lint", "--format", "json", "-", stdin=rendered.stdout)
    assert (linted.returncode, json.loads(linted.stdout)) == (0, [])


def test_lint_reports_and_fails() -> None:
    bad = CORPUS / "bad" / "gke-ingress-class.yaml"
    result = limpet("lint", str(bad), str(CORPUS / "good" / "kube-proxy-clientip.yaml"))
    assert result.returncode == 1
    assert f"{bad}:27: error [gke-ingress-class]" in result.stdout
    assert "Traceback" not in result.stderr


def test_bad_usage_is_not_a_traceback() -> None:
    result = limpet("render", "--target", "alibaba", "--affinity", "cookie")
    assert result.returncode == 2
    assert "cannot express" in result.stderr and "Traceback" not in result.stderr
    result = limpet("render", "--target", "gke", "--affinity", "hash:nope")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = limpet("explain", "-", stdin="a: [1\n")
    assert result.returncode == 1 and "not valid YAML" in result.stderr


def test_explain_without_kubeconfig_or_with_a_bad_reference(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in limpet_env().items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}  # fmt: skip
    env["HOME"] = str(tmp_path)

    def explain(ref: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "limpet", "k8s", "explain", "--kubernetes-service", ref],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip

    result = explain("web/chat")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "limpet k8s: error: no Kubernetes config: ~/.kube/config does not exist (not in a pod "
        "either); pass --kubeconfig PATH or set KUBECONFIG"
    ]
    assert str(tmp_path) not in result.stderr and os.sep + "root" not in result.stderr
    result = explain("Web_X/chat")  # the reference is wrong: say that, not the kubeconfig
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "limpet k8s: error: 'Web_X/chat': namespace 'Web_X' is not a Kubernetes name "
        "(lower-case a-z, 0-9 and '-', at most 63)"
    ]
