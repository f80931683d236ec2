"""scripts/bootstrap says what it is doing during long steps (apt-get, pip), and when one fails."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

BOOTSTRAP = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap"


def run_steps(script: str, log: Path) -> subprocess.CompletedProcess[str]:
    step = re.search(r"^step\(\) \{.*?^\}", BOOTSTRAP.read_text(), re.S | re.M)
    assert step, "scripts/bootstrap defines step()"
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{step.group(0)}\n{script}"],
        env={"PATH": "/usr/bin:/bin", "BOOTSTRAP_TICK": "0.2", "LOG": str(log)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_long_step_says_it_is_still_running(tmp_path: Path) -> None:
    log = tmp_path / "out"
    # the "long" command ends once the step has said it is still running: no fixed sleep
    result = run_steps(
        'step "installing things" bash -c \'until grep -q still "$LOG"; do sleep 0.05; done\' '
        '> "$LOG"; cat "$LOG"', log,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0] == "bootstrap: installing things ..."
    assert lines[1].startswith("bootstrap:   ... still installing things (")
    assert re.fullmatch(r"bootstrap: installing things: done in \d+ s", lines[-1])


def test_a_failing_step_says_so_and_fails(tmp_path: Path) -> None:
    result = run_steps('step "breaking" false', tmp_path / "out")
    assert result.returncode == 1
    assert "bootstrap: breaking: FAILED (exit 1)" in result.stderr
