"""The proxy's admin dashboard in real Chromium: live backend states, drain with the token."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.proxy.conftest import ADMIN_TOKEN, start_proxy
from tests.support.procs import Procs, free_port, which_or_skip

HERE = Path(__file__).parent

pytestmark = pytest.mark.e2e


def test_dashboard_shows_a_killed_backend_and_drains_one(procs: Procs) -> None:
    node = which_or_skip("node")
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    if not (HERE / "node_modules" / "playwright-core").exists():
        pytest.skip("playwright-core not installed (scripts/bootstrap installs it)")
    backends, victims = {}, {}
    for name in ("alpha", "beta", "gamma"):
        port = free_port()
        victims[name] = procs.limpet(
            "whoami",
            "--listen",
            f"127.0.0.1:{port}",
            "--name",
            name,
            "--no-socketio",
            wait_for=("127.0.0.1", port),
        )
        backends[name] = f"http://127.0.0.1:{port}"
    proxy = start_proxy(procs, backends, "--health-interval", "0.3")
    shot = procs.tmp / "dashboard.png"
    driver = subprocess.Popen(
        [
            node,
            str(HERE / "dashboard.mjs"),
            f"http://127.0.0.1:{proxy.admin_port}/",
            "alpha",
            "beta",
            ADMIN_TOKEN,
            str(shot),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(procs.tmp)},
    )
    try:
        assert driver.stdout is not None and driver.stdin is not None
        first = driver.stdout.readline().strip()
        if first == "ready":
            procs.kill(victims["alpha"], signal.SIGKILL)
            driver.stdin.write("killed\n")
            driver.stdin.flush()
        out, err = driver.communicate(timeout=90)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    summary = (out.strip().splitlines() or [first])[-1]
    result = json.loads(summary) if summary.startswith("{") else {"errors": [summary, err]}
    assert result["errors"] == [], result
    assert result["healthyAtStart"] and result["sawEjected"]
    assert result["updatesAfter"] > result["updatesBefore"] and result["reloads"] == 1  # live
    assert "401" in result["refusedWithoutToken"]
    assert result["drained"]
    states = {b["id"]: b["state"] for b in proxy.status()["pools"][0]["backends"]}
    assert states == {"alpha": "ejected", "beta": "draining", "gamma": "healthy"}
    assert shot.stat().st_size > 1000
