"""I/O: TLS termination on a listener: certificates picked by SNI, re-read when their files change.

The protocol classes never see TLS: the listener is created with the ``SSLContext`` this module
builds (``loop.create_server(..., ssl=...)``), so every byte they get is already plaintext.

- TLS 1.2 and later only, Python's secure defaults (``create_default_context``: no compression,
  forward-secret AEAD ciphers first), no renegotiation, ALPN ``h2`` then ``http/1.1`` (the
  listener's ``h2: false`` offers ``http/1.1`` alone; limpet.proxy.accept hands an h2
  connection to limpet.proxy.h2).
- SNI: each certificate serves the DNS names of its subjectAltName (``*.example.com`` matches one
  label); a name nobody serves, or no SNI at all, gets the first pair.
- Rotation: cert-manager and friends replace the files in place. A stat of each file every
  ``RELOAD_INTERVAL`` seconds notices it; new contexts are built and swapped in for new
  handshakes, while open connections keep the session they negotiated. A pair that fails to load
  (half-written files) keeps the previous one and is retried on the next change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from limpet.config.model import TlsPair
from limpet.errors import UsageError

if TYPE_CHECKING:
    from limpet.config.model import ListenerConfig

log = logging.getLogger("limpet.tls")

RELOAD_INTERVAL = 2.0


#: ALPN protocol ids (RFC 7301) a TLS listener offers, in our order of preference
ALPN_H2 = ("h2", "http/1.1")
ALPN_HTTP1 = ("http/1.1",)


def new_context(pair: TlsPair, alpn: Sequence[str] = ALPN_H2) -> ssl.SSLContext:
    """A server context for one certificate/key pair with limpet's TLS settings."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(list(alpn))
    try:
        ctx.load_cert_chain(pair.cert, pair.key)
    except ssl.SSLError as exc:
        raise UsageError(
            f"TLS certificate {pair.cert} / key {pair.key}: not a PEM certificate chain and its "
            f"private key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise UsageError(f"TLS certificate {pair.cert} / key {pair.key}: {exc.strerror}") from None
    return ctx


def backend_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context for https:// backends: their certificate is verified against
    ``ca_file`` (or the system's trust store) and must name the URL's host (SNI and the
    hostname check use it), TLS 1.2+, ALPN http/1.1."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"backend CA file {ca_file!r}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def dns_names(cert_file: str) -> list[str]:
    """The DNS names a PEM certificate serves (subjectAltName, else its common name)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [
            str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]


def _stamp(pair: TlsPair) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in (pair.cert, pair.key):
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class CertStore:
    """The certificates of one listener; ``context`` goes to ``create_server``."""

    def __init__(self, pairs: Sequence[TlsPair], alpn: Sequence[str] = ALPN_H2) -> None:
        if not pairs:
            raise UsageError("a TLS listener needs at least one certificate and key")
        self.pairs = tuple(pairs)
        self.alpn = tuple(alpn)
        self.stamps = [_stamp(p) for p in self.pairs]
        self.contexts = [new_context(p, alpn) for p in self.pairs]
        self.names = [dns_names(p.cert) for p in self.pairs]
        self.reloads = 0
        # the context handed to the listener only routes each handshake to a current context
        self.context = new_context(self.pairs[0], alpn)
        self.context.sni_callback = self._sni

    def pick(self, server_name: str | None) -> ssl.SSLContext:
        """The context whose certificate serves ``server_name`` (the first one otherwise)."""
        if server_name:
            name = server_name.lower().rstrip(".")
            wildcard = "*." + name.partition(".")[2]
            for names, ctx in zip(self.names, self.contexts, strict=True):
                if name in names:
                    return ctx
            for names, ctx in zip(self.names, self.contexts, strict=True):
                if wildcard in names:
                    return ctx
        return self.contexts[0]

    def _sni(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self.pick(server_name)

    def reload_if_changed(self) -> bool:
        """Re-read the pairs whose files changed; True when any was replaced."""
        changed = False
        for i, pair in enumerate(self.pairs):
            stamp = _stamp(pair)
            if stamp == self.stamps[i]:
                continue
            self.stamps[i] = stamp
            try:
                ctx, names = new_context(pair, self.alpn), dns_names(pair.cert)
            except (UsageError, ValueError, OSError) as exc:
                log.warning("TLS: keeping the previous certificate for %s: %s", pair.cert, exc)
                continue
            self.contexts[i], self.names[i] = ctx, names
            self.reloads += 1
            changed = True
            log.warning("TLS: re-read %s (%s)", pair.cert, ", ".join(names))
        return changed


async def watch(stores: Sequence[CertStore], interval: float = RELOAD_INTERVAL) -> None:
    """Poll the certificate files of every TLS listener (a stat each, off the hot path)."""
    while True:
        await asyncio.sleep(interval)
        for store in stores:
            store.reload_if_changed()


def check(listeners: Sequence[ListenerConfig]) -> None:
    """Load every listener's pairs once, so a bad file stops the proxy before it listens."""
    for listener in listeners:
        if listener.tls:
            CertStore(listener.tls)


def listener_ssl(server: Any, listener: ListenerConfig) -> ssl.SSLContext | None:
    """The ``ssl=`` argument of a listener's ``create_server`` (None: plain TCP). The first TLS
    listener of a server also starts the reload watcher in the server's task group."""
    if not listener.tls:
        return None
    # (a --mode tcp listener relays bytes: it never offers h2, whose frames it cannot route)
    h2 = listener.h2 and listener.mode != "tcp"
    store = CertStore(listener.tls, ALPN_H2 if h2 else ALPN_HTTP1)
    stores: list[CertStore] | None = getattr(server, "tls_stores", None)
    if stores is None:
        stores = []
        server.tls_stores = stores
        server.spawn(watch(stores))
    stores.append(store)
    return store.context
