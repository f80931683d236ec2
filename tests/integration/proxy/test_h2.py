"""HTTP/2 at the front door with real clients: curl (--http2 over TLS, --http2-prior-knowledge on
h2c) and nghttp (many streams on one connection), through a real proxy to whoami backends.

curl 7.88 cannot reuse an h2c prior-knowledge connection for a second URL (curl/curl#10634,
fixed in 8.0), so curl makes one request per run here and nghttp carries the multi-stream
cases.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.certs import TestCA
from tests.support.procs import Procs, which_or_skip


@pytest.fixture(scope="module", params=["compiled"])
def wire_core(request: pytest.FixtureRequest) -> Iterator[str]:
    """The default build here; test_the_pure_python_build_serves_h2_too runs the other one
    (LIMPET_NO_EXTENSIONS=1) once, to keep the suite lean."""
    yield request.param


@pytest.fixture(scope="module")
def ca() -> Iterator[TestCA]:
    owner = Procs()
    try:
        yield TestCA(owner.tmp / "pki")
    finally:
        owner.close()


def curl(url: str, *extra: str, ca: TestCA | None = None) -> tuple[str, str]:
    """One request: (the HTTP version curl used, the body)."""
    exe = which_or_skip("curl")
    args = [exe, "-sS", "--max-time", "10", "-w", "\n%{http_version}"]
    if ca is not None:
        port = url.rsplit(":", 1)[1].split("/")[0]
        args += ["--cacert", str(ca.path), "--resolve", f"a.test:{port}:127.0.0.1"]
    done = subprocess.run([*args, *extra, url], capture_output=True, text=True, timeout=20)
    body, _, version = done.stdout.rpartition("\n")
    return (version if done.returncode == 0 else f"error: {done.stderr.strip()}"), body


def nghttp(urls: list[str], *headers: str) -> list[str]:
    """Every URL as one stream of one h2c connection; the backend of each (the first body line)."""
    exe = which_or_skip("nghttp")
    args = [exe, "--no-dep", "-t", "10"]
    for h in headers:
        args += ["-H", h]
    done = subprocess.run([*args, *urls], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return re.findall(r"^(alpha|beta|gamma)$", done.stdout, re.M)


def metric(proxy: Proxy, name: str, label: str) -> float:
    found = re.findall(
        rf'^{name}_total\{{protocol="{re.escape(label)}"\}} (\S+)$', proxy.metrics(), re.M
    )
    return float(found[0]) if found else 0.0


def test_h2c_and_http11_share_a_port(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--h2c")
    version, body = curl(f"{proxy.url}/x", "--http2-prior-knowledge")
    assert version == "2" and body.splitlines()[0] in three, body
    assert "Via: 2 limpet" in body  # the backend hears HTTP/1.1 of a request that came over h2
    version, body = curl(f"{proxy.url}/y", "--http1.1")
    assert version == "1.1" and body.splitlines()[0] in three
    version, head = curl(f"{proxy.url}/h", "--http2-prior-knowledge", "--head")
    assert version == "2" and head.startswith("HTTP/2 200") and "content-length" in head, head
    assert metric(proxy, "limpet_protocol_connections", "h2c") == 2
    assert metric(proxy, "limpet_protocol_connections", "http/1.1") == 1
    assert metric(proxy, "limpet_protocol_requests", "h2") == 2
    status = proxy.status()  # what the dashboard shows
    assert status["totals"]["h2_requests"] == 2 and status["totals"]["requests"] == 3
    assert status["listeners"][0]["h2c"] is True


def test_twin_without_h2c_prior_knowledge_is_refused(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    version, _ = curl(f"{proxy.url}/x", "--http2-prior-knowledge")
    assert version.startswith("error"), version
    assert curl(f"{proxy.url}/x", "--http1.1")[0] == "1.1"


def test_tls_offers_h2_by_alpn(procs: Procs, three: dict[str, str], ca: TestCA) -> None:
    leaf = ca.leaf("a.test")
    proxy = start_proxy(procs, three, "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key))
    url = f"https://a.test:{proxy.port}/"
    version, body = curl(url, "--http2", ca=ca)
    assert version == "2", version
    assert "X-Forwarded-Proto: https" in body
    assert curl(url, "--http1.1", ca=ca)[0] == "1.1"  # a client that asks for 1.1 gets it
    assert metric(proxy, "limpet_protocol_connections", "h2") == 1


def test_twin_no_h2_offers_only_http11(procs: Procs, three: dict[str, str], ca: TestCA) -> None:
    leaf = ca.leaf("a.test")
    proxy = start_proxy(
        procs, three, "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key), "--no-h2"
    )
    assert curl(f"https://a.test:{proxy.port}/", "--http2", ca=ca)[0] == "1.1"


def test_bodies_with_and_without_length(
    procs: Procs, three: dict[str, str], tmp_path: object
) -> None:
    proxy = start_proxy(procs, three, "--h2c")
    data = b"x" * 300_000  # past the client's initial window: the proxy must acknowledge it
    exe = which_or_skip("curl")
    for extra in (["--data-binary", "@-"], ["-T", "-"]):  # Content-Length, then none (streamed)
        done = subprocess.run(
            [exe, "-sS", "--max-time", "10", "--http2-prior-knowledge", *extra, f"{proxy.url}/up"],
            input=data,
            capture_output=True,
            timeout=20,
        )
        assert done.returncode == 0, done.stderr
        assert b"body-bytes: 300000" in done.stdout, done.stdout[:300]


AFFINITY = [
    ("cookie", []),  # the cookie comes from the first answer
    ("client-ip", []),
    ("hash:header:X-User", ["x-user: ada"]),
]


@pytest.mark.parametrize(("affinity", "headers"), AFFINITY, ids=[a[0] for a in AFFINITY])
def test_every_stream_keeps_its_pin(
    procs: Procs, three: dict[str, str], affinity: str, headers: list[str]
) -> None:
    proxy = start_proxy(procs, three, "--h2c", "--affinity", affinity)
    urls = [f"{proxy.url}/s{i}" for i in range(9)]
    if affinity == "cookie":
        exe = which_or_skip("curl")
        head = subprocess.run(
            [exe, "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge", urls[0]],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
        cookie = re.search(r"set-cookie: ([^;]+)", head, re.I)
        assert cookie is not None, head
        headers = [f"cookie: {cookie.group(1)}"]
    seen = nghttp(urls, *headers)
    assert len(seen) == 9 and len(set(seen)) == 1, seen


@pytest.mark.parametrize("affinity", ["none"])
def test_twin_without_affinity_streams_spread(
    procs: Procs, three: dict[str, str], affinity: str
) -> None:
    proxy = start_proxy(procs, three, "--h2c", "--affinity", affinity)
    seen = nghttp([f"{proxy.url}/s{i}" for i in range(9)], "x-user: ada")
    assert len(seen) == 9 and len(set(seen)) > 1, seen


@pytest.mark.parametrize("affinity", ["engineio", "none"], ids=["engineio", "twin-none"])
def test_engineio_polling_session_per_stream(
    procs: Procs, three: dict[str, str], affinity: str
) -> None:
    """An Engine.IO polling session over h2: its POSTs, six streams at once on one connection,
    all reach the backend that knows the session (200 "ok"); without affinity some land on
    replicas that answer 400 (unknown sid)."""
    proxy = start_proxy(procs, three, "--h2c", "--affinity", affinity)
    version, body = curl(
        f"{proxy.url}/socket.io/?EIO=4&transport=polling", "--http2-prior-knowledge"
    )
    assert version == "2", version
    sid = re.search(r'"sid":"([^"]+)"', body)
    assert sid is not None, body
    exe = which_or_skip("nghttp")
    noop = procs.tmp / "noop"
    noop.write_bytes(b"3")  # an Engine.IO pong packet (answered "ok", changes nothing)
    url = f"{proxy.url}/socket.io/?EIO=4&transport=polling&sid={sid.group(1)}"
    done = subprocess.run(
        [exe, "-v", "--no-dep", "-t", "10", "-d", str(noop), *[f"{url}&n={i}" for i in range(6)]],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    statuses = re.findall(r":status: (\d+)", done.stdout)
    assert len(statuses) == 6, done.stdout[-2000:]
    if affinity == "engineio":
        assert set(statuses) == {"200"}, statuses
    else:
        assert "400" in statuses, statuses


def test_the_pure_python_build_serves_h2_too(procs: Procs, three: dict[str, str]) -> None:
    """The stream takes the selected build's Exchange and response parser: the reference one
    under LIMPET_NO_EXTENSIONS=1 carries streams, bodies and the pin the same way."""
    proxy = start_proxy(procs, three, "--h2c", env={"LIMPET_NO_EXTENSIONS": "1"})
    version, body = curl(f"{proxy.url}/py", "--http2-prior-knowledge", "--data-binary", "abc")
    assert version == "2" and "body-bytes: 3" in body, body
    cookie = re.search(r"^Cookie: (.*)$", body, re.M)
    assert cookie is None  # a first request carries none; the pin comes back as Set-Cookie
    exe = which_or_skip("curl")
    head = subprocess.run(
        [exe, "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge", f"{proxy.url}/"],
        capture_output=True, text=True, timeout=20,
    ).stdout  # fmt: skip
    pin = re.search(r"set-cookie: ([^;]+)", head, re.I)
    assert pin is not None, head
    seen = nghttp([f"{proxy.url}/p{i}" for i in range(6)], f"cookie: {pin.group(1)}")
    assert len(seen) == 6 and len(set(seen)) == 1, seen
