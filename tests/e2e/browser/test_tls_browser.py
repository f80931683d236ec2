"""Chromium over https:// and wss:// through the proxy's TLS termination (SNI, Secure cookie)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.proxy.conftest import start_proxy
from tests.support.certs import TestCA
from tests.support.procs import Procs, which_or_skip

HERE = Path(__file__).parent

pytestmark = pytest.mark.e2e


def spki_hash(cert: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def run_browser(url: str, spki: str, home: Path, script: str = "tls.mjs") -> dict[str, object]:
    """Run a page driver of this folder against ``url``, trusting the key ``spki``."""
    node = which_or_skip("node")
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    for package in ("playwright-core", "socket.io-client"):
        if not (HERE / "node_modules" / package).exists():
            pytest.skip(f"{package} not installed (scripts/bootstrap installs it)")
    done = subprocess.run(
        [node, str(HERE / script), url, spki],
        capture_output=True, text=True, timeout=90,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(home)},
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_chromium_over_https_and_wss(procs: Procs) -> None:
    ca = TestCA(procs.tmp / "pki")
    other, mine = ca.leaf("other.test"), ca.leaf("app.test")
    backends = {"alpha": procs.whoami("alpha", "127.0.0.1", None, "--no-socketio")}
    proxy = start_proxy(
        procs, backends,
        "--tls-cert", str(other.cert), "--tls-key", str(other.key),
        "--tls-cert", str(mine.cert), "--tls-key", str(mine.key),
    )  # fmt: skip
    result = run_browser(f"https://app.test:{proxy.port}/", spki_hash(mine.cert), procs.tmp)
    assert result["errors"] == [], result
    assert result["backend"] == "alpha"
    assert result["secureCookie"] is True
    assert result["echo"] == "alpha: hello over wss"
    # twin: trusting only the other certificate, SNI still serves app.test's: the page fails
    result = run_browser(f"https://app.test:{proxy.port}/", spki_hash(other.cert), procs.tmp)
    assert result["errors"], result
