"""TLS to the broker with a private CA (``--broker-ca``): a redis-server and a nats-server with
certificates made in the test; the hub verifies them against that CA, and without it refuses to
start with one line (the twin)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from tests.integration.hub.conftest import http_publish
from tests.support.certs import TestCA
from tests.support.procs import Procs, free_port, wait_listening, which_or_skip

HOST = "127.0.0.1"


def tls_broker(procs: Procs, kind: str, ca: TestCA) -> str:
    """A TLS-only redis-server or nats-server (with JetStream) on a free port; its URL."""
    leaf = ca.leaf(HOST, stem=kind)
    port = free_port()
    if kind == "redis":
        exe = which_or_skip("redis-server", "/usr/bin/redis-server")
        argv = [exe, "--port", "0", "--tls-port", str(port), "--bind", HOST,
                "--tls-cert-file", str(leaf.cert), "--tls-key-file", str(leaf.key),
                "--tls-ca-cert-file", str(ca.path), "--tls-auth-clients", "no",
                "--save", "", "--appendonly", "no", "--dir", str(procs.tmp)]  # fmt: skip
        url = f"rediss://{HOST}:{port}"
    else:
        exe = which_or_skip("nats-server")
        argv = [exe, "-a", HOST, "-p", str(port), "-js", "-sd", str(procs.tmp / "nats-tls"),
                "--tls", "--tlscert", str(leaf.cert), "--tlskey", str(leaf.key)]  # fmt: skip
        url = f"tls://{HOST}:{port}"
    procs.start(argv, wait_for=(HOST, port))
    return url


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_hub_verifies_a_tls_broker_against_broker_ca(
    kind: str, procs: Procs, http: aiohttp.ClientSession
) -> None:
    ca = TestCA(procs.tmp / "pki")
    url = tls_broker(procs, kind, ca)
    port = free_port()
    hub = procs.limpet(
        "hub", "--listen", f"{HOST}:{port}", "--broker", url, "--broker-ca", str(ca.path)
    )
    wait_listening(HOST, port, proc=hub, timeout=30)
    channel = f"tls-{uuid.uuid4().hex[:8]}"
    status, body = await http_publish(http, f"http://{HOST}:{port}", channel, {"n": 1})
    assert status == 201, body
    async with http.get(f"http://{HOST}:{port}/api/channels/{channel}/messages?since=0") as r:
        page = await r.json()
    assert [m["data"] for m in page["messages"]] == [{"n": 1}]


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_twin_without_broker_ca_the_certificate_is_refused(kind: str, procs: Procs) -> None:
    ca = TestCA(procs.tmp / "pki")
    url = tls_broker(procs, kind, ca)
    hub = procs.limpet("hub", "--listen", f"{HOST}:{free_port()}", "--broker", url)
    assert hub.wait(timeout=30) == 1
    out = procs.output(hub)
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("limpet hub: error:")]
    assert len(errors) == 1 and "certificate verify failed" in errors[0], out


def test_broker_ca_on_a_plain_url_is_a_usage_error(procs: Procs) -> None:
    ca = TestCA(procs.tmp / "pki")
    hub = procs.limpet(
        "hub", "--listen", f"{HOST}:{free_port()}", "--broker", "redis://127.0.0.1:6379",
        "--broker-ca", str(ca.path),
    )  # fmt: skip
    assert hub.wait(timeout=30) == 2
    assert "--broker-ca is for a TLS broker URL" in procs.output(hub)
