"""The compiled build, as a process that imports limpet sees it: a module built from other
sources than the ones beside it is refused (the reference runs and the log says why; under the
test suite it is an error), and the wire core and the protocol code are never of two builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from limpet.proxy.wire import stamps

PACKAGE = Path(stamps.__file__).resolve().parents[2]  # src/limpet
BUILT = stamps.check() is None  # (the suite is strict: a stale tree would have failed already)
pytestmark = pytest.mark.skipif(not BUILT, reason="the compiled build is not made")

REPORT = "from limpet.proxy import builds, wire; print(wire.CORE, builds.CORE); print(wire.WHY)"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the installed package, compiled modules included."""
    shutil.copytree(PACKAGE, tmp_path / "limpet", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def run(tree: Path, *, strict: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIMPET_NO_EXTENSIONS",)}
    env["PYTHONPATH"] = str(tree)
    env.pop(stamps.STRICT_ENV, None)
    if strict:
        env[stamps.STRICT_ENV] = "1"
    return subprocess.run(
        [sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_source_edited_after_the_build_is_refused(tree: Path) -> None:
    with (tree / "limpet/proxy/http1.py").open("a") as f:
        f.write("\n# edited after the build\n")
    done = run(tree, strict=False)
    assert done.returncode == 0, done.stderr
    cores, why = done.stdout.splitlines()
    assert cores == "python python"  # both sides fall back together
    assert "limpet.proxy._chttp1 is stale" in why
    done = run(tree, strict=True)
    assert done.returncode != 0 and "StaleBuild" in done.stderr, done.stderr


def test_twin_the_build_of_these_sources_runs_compiled(tree: Path) -> None:
    done = run(tree, strict=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "compiled compiled"


def test_a_partial_build_never_mixes_a_compiled_core_with_python_protocol_code(tree: Path) -> None:
    for so in (tree / "limpet/proxy").glob("_chttp1.*.so"):
        so.unlink()  # the protocol code failed to build; the wire core did not
    done = run(tree, strict=False)
    assert done.returncode == 0, done.stderr
    cores, why = done.stdout.splitlines()
    assert cores == "python python"
    assert "limpet.proxy._chttp1 is not built" in why
    assert run(tree, strict=True).returncode != 0
