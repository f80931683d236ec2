"""limpet-client (clients/js) under Node: its own unit tests (`node --test`), and three
subscribers (default transports, websocket only, polling only) plus the chat page in Chromium
(limpet-client in a browser) through a rolling restart of three hub replicas on redis-server
behind `limpet proxy --affinity engineio`, with the plain socket.io client as the twin that misses
messages in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerServer
from tests.support.procs import ROOT, Procs, free_port, which_or_skip
from tests.support.rolling import Cluster, plan

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
PACKAGE = ROOT / "clients" / "js"
TOTAL = 1000


def node_with_packages() -> str:
    node = which_or_skip("node")
    for folder in (PACKAGE, HERE):
        if not (folder / "node_modules" / "socket.io-client").is_dir():
            pytest.skip(f"npm packages of {folder} not installed (scripts/bootstrap installs them)")
    return node


async def start_page_peer(url: str, channel: str, home: Path) -> asyncio.subprocess.Process | None:
    """The chat page in Chromium (tests/e2e/browser/page_peer.mjs), when Chromium and
    playwright-core are there; the Node subscribers run either way."""
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    browser_dir = HERE.parent / "browser"
    if (
        not Path(chromium).exists()
        or not (browser_dir / "node_modules" / "playwright-core").is_dir()
    ):
        return None
    return await asyncio.create_subprocess_exec(
        which_or_skip("node"), str(browser_dir / "page_peer.mjs"), url, channel, str(TOTAL),
        stdout=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(home)},
        start_new_session=True,
    )  # fmt: skip


async def stop(proc: asyncio.subprocess.Process | None) -> None:
    """Kill a driver and what it started (Chromium): it leads its own process group."""
    if proc is None:
        return
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


async def read_json(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    assert line, "the page driver exited"
    reply: dict[str, Any] = json.loads(line)
    return reply


def test_package_unit_tests_pass_under_node_test() -> None:
    node = node_with_packages()
    done = subprocess.run(
        [node, "--test", "test/"], cwd=PACKAGE, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout


def tsc(config: str) -> subprocess.CompletedProcess[str]:
    """``tsc -p`` (TypeScript 5, a devDependency of clients/js) on one of test/types' configs."""
    node = node_with_packages()
    compiler = PACKAGE / "node_modules" / "typescript" / "bin" / "tsc"
    if not compiler.exists():
        pytest.skip("typescript not installed in clients/js (scripts/bootstrap installs it)")
    return subprocess.run(
        [node, str(compiler), "-p", f"test/types/{config}"],
        cwd=PACKAGE, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_type_declarations_accept_the_documented_usage_under_strict() -> None:
    done = tsc("tsconfig.json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_type_declarations_refuse_each_misuse() -> None:
    """The twin: the same compiler finds one error on each line marked ``// error``."""
    done = tsc("tsconfig.misuse.json")
    source = (PACKAGE / "test" / "types" / "misuse.ts").read_text().splitlines()
    marked = {i for i, line in enumerate(source, 1) if line.rstrip().endswith("// error")}
    found = {
        int(line.split("(", 1)[1].split(",", 1)[0])
        for line in done.stdout.splitlines()
        if line.startswith("test/types/misuse.ts(") and ": error TS" in line
    }
    assert done.returncode != 0 and found == marked, done.stdout[-3000:]


async def test_rolling_restart_node_subscribers_get_every_offset_once_in_order(
    procs: Procs, redis_server: BrokerServer
) -> None:
    node = node_with_packages()
    cluster = Cluster(procs, redis_server.url)
    steps = plan(TOTAL)
    channel = f"roll-js-{uuid.uuid4().hex[:8]}"
    browser = await start_page_peer(cluster.url, channel, procs.tmp)
    try:
        if browser is not None:  # joined before anything is published
            assert (await read_json(browser, 40)).get("step") == "joined"
        peer = await asyncio.create_subprocess_exec(
            node, str(HERE / "peers.mjs"), cluster.url, channel, str(TOTAL),
            ",".join(str(s.at) for s in steps),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=HERE,
            start_new_session=True,
        )  # fmt: skip
    except BaseException:
        await stop(browser)
        raise
    assert peer.stdin is not None and peer.stdout is not None

    async def expect(event: str, timeout: float = 40) -> dict[str, Any]:
        assert peer.stdout is not None
        while True:
            line = await asyncio.wait_for(peer.stdout.readline(), timeout)
            assert line, "the node peers exited"
            reply: dict[str, Any] = json.loads(line)
            if reply["event"] == event:
                return reply

    async def at_gate(n: int) -> None:
        assert (await expect("gate"))["n"] == n

    def release() -> None:
        assert peer.stdin is not None
        peer.stdin.write(b"go\n")

    try:
        await expect("ready", 30)
        await asyncio.wait_for(cluster.run(steps, at_gate, release), 50)
        done = await expect("done", 70)
        page = await read_json(browser, 120) if browser is not None else None
    finally:
        await stop(peer)
        await stop(browser)

    everything = list(range(1, TOTAL + 1))
    assert sorted(done["acks"]) == everything, "each publish stored once"
    for record in done["subs"]:
        assert record["offsets"] == everything
        assert record["data"] == list(range(TOTAL))
        assert record["gaps"] == []
        assert record["connects"] >= 3
    assert cluster.done == [s.what for s in steps]
    if page is not None:  # the browser: limpet-client as the chat page uses it
        assert page["errors"] == [], page
        assert page["offsets"] == everything, page["offsets"][:50]
        assert any("rejoined" in note for note in page["notes"]), page["notes"]
        assert not any("could not be recovered" in note for note in page["notes"]), page["notes"]
    twin = done["twin"]
    assert set(everything) - set(twin), "the plain socket.io client missed nothing?"


def test_promises_and_errors_against_one_hub(procs: Procs) -> None:
    """Refusals reject `ready` / publish with a LimpetError naming the cause; a repeated key is
    stored once; a saved position from a lost epoch is a gap; a publish nobody acknowledges times
    out; close() rejects what is pending; a throwing callback does not stop delivery."""
    node = node_with_packages()
    port = free_port()
    procs.limpet("hub", "--listen", f"127.0.0.1:{port}", wait_for=("127.0.0.1", port))
    done = subprocess.run(
        [node, str(HERE / "contract.mjs"), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60, cwd=HERE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    refused = seen["refusedChannel"]
    assert refused["isLimpetError"] and refused["code"] == "refused", refused
    assert "channel" in refused["message"] and refused["onError"] == ["refused"]
    assert seen["tooLarge"]["code"] == "refused" and "too large" in seen["tooLarge"]["message"]
    twice = seen["sameKeyTwice"]
    assert twice["second"]["duplicate"] is True
    assert twice["second"]["offset"] == twice["first"]["offset"]
    [gap] = seen["otherEpoch"]["gaps"]
    assert gap["reason"] == "epoch-changed" and gap["from"] == {"epoch": "gone", "offset": 5}
    assert gap["to"] == seen["otherEpoch"]["position"]
    assert seen["alreadySubscribed"]["code"] == "subscribed"
    assert seen["unreachableTimesOut"]["code"] == "timeout"
    assert seen["closeRejectsPending"]["code"] == "closed"
    callback = seen["throwingCallbackDoesNotStopDelivery"]
    assert callback["got"] == [1, 2] and "boom" in callback["errors"][0]
