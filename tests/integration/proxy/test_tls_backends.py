"""TLS to backends: an ``https://`` backend URL, its certificate verified against
``--backend-ca`` with the URL's host as SNI and expected name; a real whoami app served over TLS
with a certificate made in the test."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.proxy.conftest import start_proxy
from tests.support.certs import TestCA
from tests.support.procs import Procs, free_port

#: `limpet whoami`'s app served over TLS (whoami itself speaks plain HTTP only)
TLS_WHOAMI = """
import ssl, sys
from aiohttp import web
from limpet.tools.whoami import build_app

cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
app = build_app("secure", socketio=False)
sni_seen = {"name": None}  # the server name the last handshake asked for


def on_sni(sslobj, name, context):
    sni_seen["name"] = name


ctx.sni_callback = on_sni


@web.middleware
async def sni(request, handler):
    response = await handler(request)
    response.headers["X-SNI"] = str(sni_seen["name"])
    return response


app.middlewares.append(sni)
web.run_app(app, host="127.0.0.1", port=port, ssl_context=ctx, print=None)
"""


@pytest.fixture
def ca(procs: Procs) -> TestCA:
    return TestCA(procs.tmp / "pki")


@pytest.fixture
def tls_backend(procs: Procs, ca: TestCA) -> str:
    leaf = ca.leaf("localhost")
    script = procs.tmp / "tls_whoami.py"
    script.write_text(TLS_WHOAMI)
    port = free_port()
    procs.start(
        [sys.executable, str(script), str(leaf.cert), str(leaf.key), str(port)],
        wait_for=("127.0.0.1", port),
    )
    return f"https://localhost:{port}"


def get(url: str) -> tuple[int, str]:
    status, body, _ = get_with_headers(url)
    return status, body


def get_with_headers(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def wait_state(proxy: object, state: str) -> None:
    """Until the proxy's /status says the backend is ``state`` (its probes decide)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        backends = proxy.status()["pools"][0]["backends"]  # type: ignore[attr-defined]
        if backends[0]["state"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"backend never {state}: {backends}")


def test_an_https_backend_verified_against_the_backend_ca(
    procs: Procs, ca: TestCA, tls_backend: str
) -> None:
    proxy = start_proxy(procs, {"secure": tls_backend}, "--backend-ca", str(ca.path))
    wait_state(proxy, "healthy")  # the health probes speak TLS too
    status, body, headers = get_with_headers(proxy.url + "/hello")
    assert status == 200, body
    assert headers.get("X-SNI") == "localhost"  # SNI is the URL's host
    lines = body.lower().splitlines()
    assert lines[0] == "secure" and "get /hello http/1.1" in lines
    assert "x-forwarded-proto: http" in lines  # the client's scheme, not the backend's


def test_twin_a_backend_certificate_from_another_ca_is_never_sent_a_request(
    procs: Procs, ca: TestCA, tls_backend: str
) -> None:
    """The handshake fails verification: a connect failure (counted), the request is tried on
    another backend (none here: 503) or, after three, answered 502; nothing reaches it."""
    other = TestCA(procs.tmp / "other-pki")
    proxy = start_proxy(
        procs, {"secure": tls_backend}, "--backend-ca", str(other.path), "--no-health"
    )
    status, body = get(proxy.url + "/hello")
    assert status == 503 and "secure" not in body, body
    assert 'limpet_upstream_connect_failures_total{backend="secure",pool="default"} 1.0' in (
        proxy.metrics()
    )
    named = {f"s{i}": tls_backend for i in range(3)}  # three names, the same wrong certificate
    proxy = start_proxy(procs, named, "--backend-ca", str(other.path), "--no-health")
    status, body = get(proxy.url + "/hello")
    assert status == 502 and "unreachable" in body, body


def test_twin_a_plain_http_url_to_the_tls_backend_is_no_answer(
    procs: Procs, ca: TestCA, tls_backend: str
) -> None:
    plain = tls_backend.replace("https://", "http://")
    proxy = start_proxy(procs, {"secure": plain}, "--no-health")
    status, body = get(proxy.url + "/hello")
    assert status == 503 and "secure" not in body, body


def test_a_missing_backend_ca_file_stops_the_proxy_with_a_clear_error(procs: Procs) -> None:
    missing = Path(procs.tmp) / "no-such-ca.pem"
    proc = procs.limpet(
        "proxy", "--listen", f"127.0.0.1:{free_port()}", "--secret", "s",
        "--backend", "b=https://localhost:9", "--backend-ca", str(missing),
    )  # fmt: skip
    assert proc.wait(timeout=15) == 2
    out = procs.output(proc)
    assert "backend CA file" in out and "Traceback" not in out
