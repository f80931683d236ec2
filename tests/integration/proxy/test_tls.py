"""TLS termination with certificates made in the test: curl and openssl against a real proxy."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from tests.integration.proxy.conftest import start_proxy
from tests.support.certs import TestCA
from tests.support.procs import Procs, which_or_skip


@pytest.fixture
def ca(procs: Procs) -> TestCA:
    return TestCA(procs.tmp / "pki")


def curl(proxy: object, name: str, ca: TestCA, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = which_or_skip("curl")
    port = proxy.port  # type: ignore[attr-defined]
    return subprocess.run(
        [
            exe,
            "-sS",
            "-i",
            "--max-time",
            "10",
            "--cacert",
            str(ca.path),
            "--resolve",
            f"{name}:{port}:127.0.0.1",
            *extra,
            f"https://{name}:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )


def tls_args(*leaves: object) -> list[str]:
    out: list[str] = []
    for leaf in leaves:
        out += ["--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key)]  # type: ignore[attr-defined]
    return out


def peer_serial(port: int, name: str, ca: TestCA) -> int:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as s,
    ):
        der = s.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def test_curl_over_tls_with_sni_and_a_secure_cookie(
    procs: Procs, three: dict[str, str], ca: TestCA
) -> None:
    a, b = ca.leaf("a.test"), ca.leaf("b.test", "*.b.test")
    proxy = start_proxy(procs, three, *tls_args(a, b))
    for name in ("a.test", "b.test", "x.b.test"):
        done = curl(proxy, name, ca)
        assert done.returncode == 0, (name, done.stderr)
        head, _, body = done.stdout.partition("\n\n")  # text mode: CRLF reads as LF
        assert head.startswith("HTTP/2 200"), head  # curl takes h2 by ALPN (the default)
        assert body.splitlines()[0] in three
        cookie = [line for line in head.splitlines() if line.lower().startswith("set-cookie:")]
        assert cookie and "Secure" in cookie[0], head
    assert peer_serial(proxy.port, "b.test", ca) == b.serial
    assert peer_serial(proxy.port, "a.test", ca) == a.serial
    # twin: a name no certificate serves gets the first one, which curl refuses for that name
    done = curl(proxy, "c.test", ca)
    assert done.returncode == 60, done.stderr  # CURLE_PEER_FAILED_VERIFICATION


def test_tls12_and_later_only_with_alpn_h2_then_http11(
    procs: Procs, three: dict[str, str], ca: TestCA
) -> None:
    openssl = which_or_skip("openssl")
    leaf = ca.leaf("a.test")
    proxy = start_proxy(procs, three, *tls_args(leaf))

    def s_client(*flags: str) -> str:
        done = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{proxy.port}",
                "-servername",
                "a.test",
                "-CAfile",
                str(ca.path),
                *flags,
            ],
            input="",
            capture_output=True,
            text=True,
            errors="replace",  # an h2 server sends its binary SETTINGS right after the handshake
            timeout=20,
        )
        return done.stdout + done.stderr

    out = s_client("-tls1_2", "-alpn", "h2,http/1.1")
    assert "Verify return code: 0 (ok)" in out and "ALPN protocol: h2" in out, out
    assert "ALPN protocol: http/1.1" in s_client("-alpn", "http/1.1")  # an HTTP/1.1-only client
    assert "Protocol  : TLSv1.2" in out or "TLSv1.2" in out
    assert "TLSv1.3" in s_client("-tls1_3")
    out = s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Cipher is (NONE)" in out or "no protocols available" in out or "alert" in out, out


def test_a_rotated_certificate_is_served_without_dropping_connections(
    procs: Procs, three: dict[str, str], ca: TestCA
) -> None:
    first = ca.leaf("a.test")
    proxy = start_proxy(procs, three, *tls_args(first))
    ctx = ssl.create_default_context(cafile=str(ca.path))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.sock = ctx.wrap_socket(  # TLS to 127.0.0.1 with the SNI name a.test
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10), server_hostname="a.test"
    )
    conn.request("GET", "/", headers={"Host": "a.test"})
    assert conn.getresponse().read().decode().splitlines()[0] in three
    second = ca.leaf("a.test")  # the same files, replaced in place as cert-manager does
    assert second.serial != first.serial
    deadline = time.monotonic() + 15
    while peer_serial(proxy.port, "a.test", ca) != second.serial:
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.2)
    # the connection opened before the rotation carries on
    conn.request("GET", "/", headers={"Host": "a.test"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read().decode().splitlines()[0] in three
    conn.close()


def test_a_bad_certificate_stops_the_proxy_before_it_listens(procs: Procs, ca: TestCA) -> None:
    import sys

    from tests.support.procs import free_port, limpet_env

    leaf = ca.leaf("a.test")
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "limpet",
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--backend",
            "http://127.0.0.1:1",
            "--tls-cert",
            str(leaf.cert),
            "--tls-key",
            str(ca.path),
        ],
        env=limpet_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "TLS certificate" in done.stderr, done.stderr


def test_a_backend_behind_a_tls_listener_is_told_https(
    procs: Procs, three: dict[str, str], ca: TestCA
) -> None:
    """X-Forwarded-Proto names the client's scheme (whoami echoes the headers it got); the
    twin is the plain listener of the same proxy build, which says http."""
    proxy = start_proxy(procs, three, *tls_args(ca.leaf("a.test")))
    claims = ["X-Forwarded-Proto: http", "Forwarded: proto=http", "X-Forwarded-Port: 80"]
    done = curl(proxy, "a.test", ca, *[a for c in claims for a in ("-H", c)])  # not kept
    assert done.returncode == 0, done.stderr
    echoed = [line.lower() for line in done.stdout.splitlines()]
    assert echoed.count("x-forwarded-proto: https") == 1, done.stdout
    assert "x-forwarded-proto: http" not in echoed
    assert not [line for line in echoed if line.startswith(("forwarded:", "x-forwarded-port:"))]
    plain = start_proxy(procs, three)
    with urllib.request.urlopen(plain.url + "/", timeout=10) as r:
        assert "x-forwarded-proto: http" in r.read().decode().lower().splitlines()
