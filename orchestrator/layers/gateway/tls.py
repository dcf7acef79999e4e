"""TLS Secrets (type kubernetes.io/tls) as the proxy serves them (pure): checked when applied as `kubectl create
secret tls` checks them (a PEM certificate chain in tls.crt, a PEM private key in tls.key, the key the
certificate's), and handed to a gateway pod as one PEM file named by a digest of its content (in its folder's
tls/), so that a changed
certificate is a changed nginx.conf, and so a graceful reload."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from orchestrator.core.errors import field_error

SECRET_KIND, TLS_TYPE = "Secret", "kubernetes.io/tls"
CERT_KEY, PRIVATE_KEY = "tls.crt", "tls.key"


@dataclass(frozen=True)
class TLSPair:
    """A certificate chain and its private key, PEM."""

    certificate: str
    key: str

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the first certificate (DER), as `openssl x509 -noout -fingerprint -sha256` shows it, lower
        case without colons: what a client sees the proxy serve."""
        return x509.load_pem_x509_certificates(self.certificate.encode())[0].fingerprint(hashes.SHA256()).hex()

    @property
    def file_name(self) -> str:
        return hashlib.sha256((self.certificate + self.key).encode()).hexdigest()[:20] + ".pem"

    @property
    def bundle(self) -> str:
        """One file for nginx's ssl_certificate and ssl_certificate_key."""
        return self.certificate.rstrip("\n") + "\n" + self.key.rstrip("\n") + "\n"


def decoded(data: Mapping[str, Any], source: str) -> dict[str, bytes]:
    """A Secret's `data` (base64 values), decoded; a value that is not base64 is an error naming it."""
    out = {}
    for name, value in data.items():
        try:
            out[name] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise field_error(source, f"data.{name}", "is not base64", "encode it with `base64 -w0`, or give it "
                              "as text under stringData") from None
    return out


def check_tls(data: Mapping[str, bytes], source: str) -> TLSPair:
    """The pair a kubernetes.io/tls Secret holds, checked: each part parses, and the key is the certificate's."""
    for name in (CERT_KEY, PRIVATE_KEY):
        if name not in data:
            raise field_error(source, f"data.{name}", "missing", "a kubernetes.io/tls Secret holds tls.crt and "
                              "tls.key (lab create secret tls NAME --cert FILE --key FILE)")
    try:
        chain = x509.load_pem_x509_certificates(data[CERT_KEY])
    except ValueError:
        raise field_error(source, f"data.{CERT_KEY}", "is not a PEM certificate", "give the certificate file "
                          "(-----BEGIN CERTIFICATE-----)") from None
    try:
        key = serialization.load_pem_private_key(data[PRIVATE_KEY], password=None)
    except TypeError:
        raise field_error(source, f"data.{PRIVATE_KEY}", "the private key is encrypted", "give it unencrypted "
                          "(openssl pkey -in KEY -out PLAIN), as a proxy reads it") from None
    except (ValueError, UnsupportedAlgorithm):
        raise field_error(source, f"data.{PRIVATE_KEY}", "is not a PEM private key", "give the key file "
                          "(-----BEGIN PRIVATE KEY-----)") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise field_error(source, f"data.{PRIVATE_KEY}", f"the private key does not match the certificate in "
                          f"data.{CERT_KEY}", "give the key the certificate was made with")
    return TLSPair(data[CERT_KEY].decode(), data[PRIVATE_KEY].decode())


def tls_pair(data: Mapping[str, Any]) -> TLSPair:
    """The pair of a Secret checked when it was applied."""
    raw = {name: base64.b64decode(str(value)) for name, value in data.items()}
    return TLSPair(raw[CERT_KEY].decode(), raw[PRIVATE_KEY].decode())


def certificate_summary(pair: TLSPair) -> str:
    """Subject, names and expiry, for `lab describe secret`."""
    cert = x509.load_pem_x509_certificates(pair.certificate.encode())[0]
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return (f"{cert.subject.rfc4514_string()}; DNS names {', '.join(names) or '<none>'}; "
            f"valid until {cert.not_valid_after_utc:%Y-%m-%d}; sha256 {pair.fingerprint[:16]}...")
