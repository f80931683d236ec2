"""What to tell a user whose CA fails Python 3.13's strict certificate verification.

Python 3.13's ``ssl.create_default_context()`` sets ``VERIFY_X509_STRICT``: OpenSSL then refuses
a chain that lacks what RFC 5280 asks for (section 4.2.1.1: an Authority Key Identifier on every
certificate a CA issues; 4.2.1.2: a Subject Key Identifier on the CA; 4.2.1.9: basicConstraints
marked critical on a CA; 4.2.1.3: keyUsage with keyCertSign on a CA). Private CAs made by hand
often lack them, and worked on 3.11 and 3.12. OpenSSL's message ("Missing Authority Key
Identifier") does not say why it appeared after an upgrade; ``strict_hint`` adds that, for the
places that report a failed TLS connection to a backend or a broker (``--backend-ca``,
``--broker-ca``). Plain text in, text out: no I/O.
"""

from __future__ import annotations

#: OpenSSL's verify messages that only X509_V_FLAG_X509_STRICT produces (crypto/x509/x509_txt.c)
STRICT_ONLY = (
    "Missing Authority Key Identifier",
    "Missing Subject Key Identifier",
    "Basic Constraints of CA cert not marked critical",
    "CA cert does not include key usage extension",
    "Authority Key Identifier marked critical",
    "Subject Key Identifier marked critical",
    "Empty Subject Alternative Name extension",
    "Certificate version is not 3",
)

HINT = (
    " (Python 3.13 and later verify certificates strictly, as RFC 5280 asks: the CA certificate "
    "needs basicConstraints CA:TRUE marked critical, keyUsage keyCertSign and a Subject Key "
    "Identifier, and every certificate it signs an Authority Key Identifier; reissue them, "
    "see docs/operations.md#a-private-ca-on-python-313)"
)


def strict_hint(message: str) -> str:
    """``message`` (a TLS failure, as text), followed by HINT when it is one that only strict
    verification gives; unchanged otherwise."""
    if any(reason in message for reason in STRICT_ONLY):
        return message + HINT
    return message
