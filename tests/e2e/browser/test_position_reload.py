"""A position saved in localStorage resumes a subscription when the page is opened again (a
reload) in Chromium (docs/clients.md's recipe, with limpet-client served by the hub); the twin
without the saved position misses what was published while the page was away."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import BrokerServer
from tests.support.procs import Procs, free_port, which_or_skip

HERE = Path(__file__).parent


def run_reload(hub: str, channel: str, mode: str, home: Path) -> dict[str, list[object]]:
    node = which_or_skip("node")
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    if not (HERE / "node_modules" / "playwright-core").exists():
        pytest.skip("playwright-core not installed (scripts/bootstrap installs it)")
    done = subprocess.run(
        [node, str(HERE / "reload.mjs"), hub, channel, mode],
        capture_output=True, text=True, timeout=90,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(home)},
    )  # fmt: skip
    assert done.stdout.strip(), f"no summary from the page driver:\n{done.stderr}"
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("mode", ["saved", "fresh"])
def test_saved_position_resumes_after_a_reload(
    mode: str, procs: Procs, redis_server: BrokerServer
) -> None:
    port = free_port()
    procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--broker", redis_server.url,
        wait_for=("127.0.0.1", port),
    )  # fmt: skip
    result = run_reload(
        f"http://127.0.0.1:{port}", f"reload-{uuid.uuid4().hex[:8]}", mode, procs.tmp
    )
    assert result["errors"] == [], result
    assert result["before"] == [1, 2, 3, 4, 5]
    if mode == "saved":
        # exactly what came after the saved position: the reload's five, then the rest
        assert result["after"] == [6, 7, 8, 9, 10, 11, 12] and result["gaps"] == [], result
    else:
        # the twin starts from "now": what was published during the reload is missing
        assert result["after"] == [11, 12], result
