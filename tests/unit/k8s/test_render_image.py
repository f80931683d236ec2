"""`k8s render --target limpet --image`: both containers run the named limpet image, and the
default is the name scripts/image tags."""

from __future__ import annotations

import re

import pytest
import yaml

from limpet.cli import main
from tests.support.procs import ROOT


def images(capsys: pytest.CaptureFixture[str], *args: str) -> set[str]:
    assert main(["k8s", "render", "--target", "limpet", *args]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    return {
        c["image"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["name"] in ("proxy", "hub")
    }


def test_image_names_both_limpet_containers(capsys: pytest.CaptureFixture[str]) -> None:
    assert images(capsys, "--image", "registry.example/me/limpet:1.2") == {
        "registry.example/me/limpet:1.2"
    }


def test_the_default_is_what_scripts_image_tags(capsys: pytest.CaptureFixture[str]) -> None:
    script = (ROOT / "scripts" / "image").read_text()
    tagged = re.search(r'tags=\("([^"]+)"', script)
    assert tagged is not None
    assert images(capsys) == {tagged.group(1)}
