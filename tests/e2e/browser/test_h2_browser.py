"""The official socket.io client in Chromium over TLS to limpet: HTTP/2 for the page and the
polling requests, WebSocket over an HTTP/2 stream (RFC 8441), sticky with --affinity engineio.
The proxy's metrics say which protocol the browser used; the twin (--no-h2) shows the same
page on HTTP/1.1 with a WebSocket of its own connection."""

from __future__ import annotations

import re

import pytest

from tests.e2e.browser.test_tls_browser import run_browser, spki_hash
from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.certs import TestCA
from tests.support.procs import Procs

pytestmark = pytest.mark.e2e


def count(proxy: Proxy, name: str, label: str | None = None) -> float:
    where = rf'\{{protocol="{re.escape(label)}"\}}' if label else ""
    found = re.findall(rf"^{name}_total{where} (\S+)$", proxy.metrics(), re.M)
    return float(found[0]) if found else 0.0


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "twin-http11"])
def test_socketio_in_chromium_over_h2_is_sticky(procs: Procs, h2: bool) -> None:
    ca = TestCA(procs.tmp / "pki")
    leaf = ca.leaf("app.test")
    backends = {name: procs.whoami(name) for name in ("alpha", "beta", "gamma")}
    extra = [] if h2 else ["--no-h2"]
    proxy = start_proxy(
        procs, backends, "--affinity", "engineio",
        "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key), *extra,
    )  # fmt: skip
    url = f"https://app.test:{proxy.port}/"
    result = run_browser(url, spki_hash(leaf.cert), procs.tmp, "h2.mjs")
    assert result["errors"] == [], result
    names = result["backends"]
    assert isinstance(names, list) and len(names) >= 5, names
    assert len(set(names)) == 1, names  # every answer, polling and websocket, from one replica
    assert result["transport"] == "websocket"
    websockets_on_streams = count(proxy, "limpet_h2_websockets")
    print("page:", result["pageProtocol"], "websockets over h2:", websockets_on_streams)
    if h2:
        assert result["pageProtocol"] == "h2"
        assert count(proxy, "limpet_protocol_requests", "h2") >= 4  # page + polling requests
        assert count(proxy, "limpet_protocol_requests", "h2-websocket") == 1
        assert websockets_on_streams == 1
    else:
        assert result["pageProtocol"] == "http/1.1"
        assert count(proxy, "limpet_protocol_requests", "h2") == 0
        assert websockets_on_streams == 0
