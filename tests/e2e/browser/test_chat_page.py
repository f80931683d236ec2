"""The hub's chat page in real Chromium: two people on two hub replicas (one Redis) chat."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BrokerServer
from tests.support.procs import Procs, free_port, which_or_skip

HERE = Path(__file__).parent


def run_pages(url_a: str, url_b: str, channel: str, shot: Path) -> dict[str, object]:
    node = which_or_skip("node")
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    if not (HERE / "node_modules" / "playwright-core").exists():
        pytest.skip("playwright-core not installed (scripts/bootstrap installs it)")
    done = subprocess.run(
        [node, str(HERE / "chat.mjs"), url_a, url_b, channel, str(shot)],
        capture_output=True,
        text=True,
        timeout=90,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(shot.parent)},
    )
    assert done.stdout.strip(), f"no summary from the page driver:\n{done.stderr}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def start_hub(procs: Procs, broker: str, name: str) -> str:
    port = free_port()
    procs.limpet(
        "hub",
        "--listen",
        f"127.0.0.1:{port}",
        "--broker",
        broker,
        "--name",
        name,
        wait_for=("127.0.0.1", port),
    )
    return f"http://127.0.0.1:{port}/"


def test_two_pages_on_two_replicas_chat(procs: Procs, redis_server: BrokerServer) -> None:
    url_a = start_hub(procs, redis_server.url, "hub-a")
    url_b = start_hub(procs, redis_server.url, "hub-b")
    shot = procs.tmp / "chat.png"
    result = run_pages(url_a, url_b, "e2e.browser", shot)
    assert result["errors"] == []
    assert result["seenInB"] and result["seenInA"]
    presence = str(result["presence"])
    assert "alice @hub-a" in presence and "bob @hub-b" in presence, presence
    assert shot.stat().st_size > 1000


def test_twin_without_a_shared_broker_the_pages_do_not_meet(procs: Procs) -> None:
    # Each replica on its own memory broker: the same page, the same steps, and bob never sees
    # alice's message; this is what the shared broker adds.
    url_a = start_hub(procs, "memory", "hub-a")
    url_b = start_hub(procs, "memory", "hub-b")
    result = run_pages(url_a, url_b, "e2e.browser", procs.tmp / "chat.png")
    assert result["joinedA"] and result["joinedB"]
    assert not result["seenInB"]
