"""A bounded run of one of the coverage-guided fuzzers (tests/fuzz/*.py, atheris) from a test."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.support.procs import ROOT, limpet_env

#: the fuzz tests skip without atheris (scripts/bootstrap installs it where it builds)
needs_atheris = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (scripts/bootstrap installs it where it builds)",
)


def fuzz_for_a_few_seconds(script: str, seconds: int = 4, rss_limit_mb: int = 512) -> None:
    """Run tests/fuzz/``script``: no crash, no hang (libFuzzer's -timeout), no growth past
    -rss_limit_mb, and every comparison the target makes held."""
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "fuzz" / script),
            f"-max_total_time={seconds}",
            "-timeout=5",
            f"-rss_limit_mb={rss_limit_mb}",
            "-print_final_stats=1",
        ],
        env=limpet_env(),
        capture_output=True,
        timeout=60,
    )
    log = run.stderr.decode(errors="replace")
    assert run.returncode == 0, log[-4000:]
    assert "Done" in log
