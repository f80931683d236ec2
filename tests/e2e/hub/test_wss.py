"""The official socket.io client over https:// and wss:// through the proxy's TLS termination."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.hub.test_js_client import NodePeer
from tests.integration.proxy.conftest import start_proxy
from tests.support.certs import TestCA
from tests.support.procs import Procs, free_port

pytestmark = pytest.mark.e2e


def tls_hub(procs: Procs) -> tuple[str, TestCA]:
    port = free_port()
    procs.limpet("hub", "--listen", f"127.0.0.1:{port}", "--broker", "memory", "--name", "h1",
                 wait_for=("127.0.0.1", port))  # fmt: skip
    ca = TestCA(procs.tmp / "pki")
    leaf = ca.leaf("hub.test", "127.0.0.1")
    proxy = start_proxy(
        procs, {"h1": f"http://127.0.0.1:{port}"}, "--affinity", "engineio",
        "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key),
    )  # fmt: skip
    return f"https://127.0.0.1:{proxy.port}", ca


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
async def test_socketio_client_over_wss(
    node_client_dir: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch, transports: list[str]
) -> None:
    url, ca = tls_hub(procs)
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(ca.path))  # node trusts the test CA
    channel = f"wss-{uuid.uuid4().hex[:8]}"
    peer = await NodePeer.start(node_client_dir, channel)
    try:
        await peer.send(op="connect", url=url, transports=transports)
        connected = await peer.expect("connected")
        assert connected["transport"] in transports
        await peer.send(op="subscribe")
        await peer.expect("ack")
        await peer.send(op="publish", data={"over": "tls"})
        assert (await peer.expect("published"))["ack"]["offset"] == 1
        await peer.send(op="wait", count=1)
        assert (await peer.expect("received"))["messages"][0]["data"] == {"over": "tls"}
    finally:
        await peer.close()


async def test_twin_without_the_ca_the_client_refuses_the_certificate(
    node_client_dir: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = tls_hub(procs)
    monkeypatch.delenv("NODE_EXTRA_CA_CERTS", raising=False)
    peer = await NodePeer.start(node_client_dir, "x")
    try:
        await peer.send(op="connect", url=url, transports=["websocket"])
        with pytest.raises(AssertionError, match="connect_error"):
            await peer.expect("connected")
    finally:
        await peer.close()
