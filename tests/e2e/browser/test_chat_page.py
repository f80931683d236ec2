"""The hub's chat page in real Chromium: two people on two hub replicas (one Redis) chat."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BrokerServer
from tests.support.procs import Procs, free_port, which_or_skip

HERE = Path(__file__).parent


def run_pages(
    url_a: str, url_b: str, channel: str, shot: Path, wait_ms: int = 15000
) -> dict[str, object]:
    node = which_or_skip("node")
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    if not (HERE / "node_modules" / "playwright-core").exists():
        pytest.skip("playwright-core not installed (scripts/bootstrap installs it)")
    done = subprocess.run(
        [node, str(HERE / "chat.mjs"), url_a, url_b, channel, str(shot), str(wait_ms)],
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
    # the first five minutes: no made-up guest joins and leaves before the real join, and a
    # first join is not called a recovery
    logs = str(result["logA"]) + str(result["logB"])
    assert "guest" not in logs and "(recovered)" not in logs, logs
    assert shot.stat().st_size > 1000


def test_twin_without_a_shared_broker_the_pages_do_not_meet(procs: Procs) -> None:
    # Each replica on its own memory broker: the same page, the same steps, and bob never sees
    # alice's message; this is what the shared broker adds.
    url_a = start_hub(procs, "memory", "hub-a")
    url_b = start_hub(procs, "memory", "hub-b")
    # 4 s of absence: with a shared broker the message arrives within milliseconds
    result = run_pages(url_a, url_b, "e2e.browser", procs.tmp / "chat.png", wait_ms=4000)
    assert result["joinedA"] and result["joinedB"]
    assert not result["seenInB"]


async def test_chat_page_on_limpet_client_survives_a_replica_kill(
    procs: Procs, redis_server: BrokerServer
) -> None:
    # Three replicas behind the engineio-affinity proxy; the page's replica is SIGKILLed and
    # messages are published elsewhere while it is away: the page reconnects by itself, shows
    # each of them once and in order, and sends again.
    import asyncio
    import contextlib
    import os
    import signal
    import urllib.request
    import uuid

    from tests.support.rolling import Cluster, Step

    node = which_or_skip("node")
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    if not (HERE / "node_modules" / "playwright-core").exists():
        pytest.skip("playwright-core not installed (scripts/bootstrap installs it)")
    cluster = Cluster(procs, redis_server.url)
    channel = f"e2e.failover.{uuid.uuid4().hex[:6]}"
    driver = await asyncio.create_subprocess_exec(
        node, str(HERE / "failover.mjs"), cluster.url, channel, str(procs.tmp / "failover.png"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(procs.tmp)},
        start_new_session=True,
    )  # fmt: skip
    assert driver.stdin is not None and driver.stdout is not None

    async def step() -> dict[str, object]:
        assert driver.stdout is not None
        line = await asyncio.wait_for(driver.stdout.readline(), 60)
        assert line, "the page driver exited"
        reply: dict[str, object] = json.loads(line)
        return reply

    def get(path: str, replica: int) -> dict[str, object]:
        with urllib.request.urlopen(f"{cluster.hub_url(replica)}{path}", timeout=5) as resp:
            answer: dict[str, object] = json.loads(resp.read())
            return answer

    def post(replica: int, text: str) -> None:
        request = urllib.request.Request(
            f"{cluster.hub_url(replica)}/api/channels/{channel}/messages",
            data=json.dumps({"data": {"user": "erin", "text": text}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 201

    try:
        first = await step()
        assert first.get("step") == "joined", first
        members = get(f"/api/channels/{channel}/presence", 0)["clients"]
        assert isinstance(members, list)
        replica = int(next(m["replica"] for m in members if m["user"] == "dora")[1:])
        await asyncio.to_thread(cluster.kill, Step(0, replica))
        other = (replica + 1) % 3
        away = [f"while-away-{i}" for i in range(5)]
        for text in away:
            await asyncio.to_thread(post, other, text)
        driver.stdin.write((json.dumps(away) + "\n").encode())
        result = await step()
    finally:
        if driver.returncode is None:  # the driver and its Chromium: one process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)
        await driver.wait()

    assert result["errors"] == [], result
    log = str(result["log"])
    for text in ["before-failover", *away, "after-failover"]:
        assert log.count(text) == 1, (text, log)
    positions = [log.index(t) for t in ["before-failover", *away, "after-failover"]]
    assert positions == sorted(positions), log
    assert "rejoined" in log and "(recovered)" not in log
    with urllib.request.urlopen(f"{cluster.url}/favicon.ico", timeout=5) as resp:
        assert resp.status == 200 and "icon" in resp.headers["Content-Type"]
        assert resp.read(4) == b"\x00\x00\x01\x00"  # an ICO header
    print(log)
    assert str(result["status"]).startswith(("connected", "reconnected")), result["status"]
