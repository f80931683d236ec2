"""Strict X.509 verification (Python 3.13's default) on every Python: the test CA passes it, a
CA without the RFC 5280 key identifiers fails it, and the failure's message says why.

The handshakes run in memory (ssl.MemoryBIO), so no socket is opened; the client context sets
VERIFY_X509_STRICT itself, which 3.11 and 3.12 honour too, so the result is the same on each."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import pytest

from limpet.tlsverify import HINT, strict_hint
from tests.support.certs import TestCA


def handshake(ca: TestCA, *, strict: bool) -> None:
    """One TLS handshake against a leaf of ``ca``; raises what the client's verification says."""
    leaf = ca.leaf("backend.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(leaf.cert, leaf.key)
    client_ctx = ssl.create_default_context(cafile=str(ca.path))
    if strict:
        client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    else:
        client_ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="backend.test")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):  # a TLS 1.3 handshake takes two flights each way
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("the in-memory handshake did not finish")


def test_the_test_ca_passes_strict_verification(tmp_path: Path) -> None:
    handshake(TestCA(tmp_path), strict=True)


def test_a_ca_without_key_identifiers_fails_strict_verification(tmp_path: Path) -> None:
    """The twin: the certificates made as before (no key identifiers) verify without the flag and
    fail with it, with OpenSSL's own reason, which strict_hint then explains."""
    ca = TestCA(tmp_path, strict=False)
    handshake(ca, strict=False)
    with pytest.raises(ssl.SSLCertVerificationError) as failed:
        handshake(ca, strict=True)
    assert "Key Identifier" in str(failed.value)
    said = strict_hint(f"redis connect failed: {failed.value}")
    assert said.endswith(HINT) and "Python 3.13" in said and "Authority Key Identifier" in said


def test_the_default_context_of_this_python() -> None:
    """What create_default_context does here: strict from 3.13 on (why the hint exists)."""
    strict = bool(ssl.create_default_context().verify_flags & ssl.VERIFY_X509_STRICT)
    assert strict == (sys.version_info >= (3, 13))


@pytest.mark.parametrize(
    "message",
    [
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate",
        "Connection refused",
        "",
    ],
)
def test_other_failures_are_left_as_they_are(message: str) -> None:
    assert strict_hint(message) == message
