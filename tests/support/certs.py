"""Certificates made in the test: a CA and leaf certificates for DNS names (cryptography).

They carry the extensions RFC 5280 asks for (section 4.2.1.1: an Authority Key Identifier on every
certificate a CA issues; 4.2.1.2: a Subject Key Identifier on the CA; 4.2.1.9: basicConstraints
critical on the CA; 4.2.1.3: keyUsage keyCertSign on the CA): Python 3.13's default context sets
VERIFY_X509_STRICT, which refuses a chain without them ("Missing Authority Key Identifier").
docs/operations.md says the same to users whose private CA is made the way these once were.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> Any:
    """keyUsage with the given bits set and every other one clear."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=digital_signature,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Leaf:
    cert: Path
    key: Path
    serial: int


class TestCA:
    """A throwaway certificate authority writing PEM files under ``directory``."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, *, strict: bool = True) -> None:
        """``strict=False`` leaves out the key identifiers (a CA made as many private CAs are),
        for the tests that show what Python 3.13's strict verification says about one."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.dir = directory
        self.strict = strict
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "limpet test CA")])
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
            )
        )
        if strict:
            ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
            builder = builder.add_extension(ski, critical=False).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        self.cert = builder.sign(self.key, hashes.SHA256())
        self.path = self.dir / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, *names: str, stem: str | None = None) -> Leaf:
        """A server certificate for DNS names (and IP addresses) signed by this CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(key_usage(digital_signature=True), critical=True)
            .add_extension(
                # client too: servers that also dial each other (a Redis Cluster bus) present it
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if self.strict:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = stem or names[0].replace("*", "star")
        cert_path, key_path = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        # write next to the target, then rename: a reader never sees a half-written file
        for path, data in (
            (
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return Leaf(cert_path, key_path, serial)
