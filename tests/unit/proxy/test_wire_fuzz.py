"""A bounded run of the coverage-guided fuzzer on the wire core (tests/fuzz/wire_fuzz.py): no
crash, no hang (libFuzzer's -timeout), no growth past -rss_limit_mb, the two cores agreeing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.support.procs import ROOT, limpet_env


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (scripts/bootstrap installs it where it builds)",
)
def test_fuzz_the_wire_core_for_a_few_seconds() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "fuzz" / "wire_fuzz.py"),
            "-max_total_time=4",
            "-timeout=5",
            "-rss_limit_mb=512",
            "-print_final_stats=1",
        ],
        env=limpet_env(),
        capture_output=True,
        timeout=60,
    )
    log = run.stderr.decode(errors="replace")
    assert run.returncode == 0, log[-4000:]
    assert "Done" in log
