"""Certificates made in the test (trustme), web config files and HTTPS clients for the web tests."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import trustme

# Cost 4 (the minimum) keeps tests fast; the exporter accepts any cost the toolkit accepts.
TEST_COST = 4


class CountingCheck:
    """bcrypt.checkpw that counts its calls, to prove verified credentials are cached."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return bcrypt.checkpw(password, hashed)


def bcrypt_hash(password: str, cost: int = TEST_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


@dataclass
class Pki:
    """A CA, the exporter's certificate and key as files, and a client certificate signed by the CA."""

    directory: Path
    ca: trustme.CA

    @classmethod
    def create(cls, directory: Path) -> "Pki":
        pki = cls(directory, trustme.CA())
        pki.ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        pki.issue_server("server")
        return pki

    def issue_server(self, name: str, ca: trustme.CA | None = None) -> tuple[Path, Path]:
        leaf = (ca or self.ca).issue_cert("127.0.0.1", "::1", "localhost", common_name=f"htap-exporter {name}")
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        # Written over the old files in place, as a certificate renewal tool would.
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    def client_cert(self, name: str, ca: trustme.CA | None = None, *sans: str) -> tuple[Path, Path]:
        leaf = (ca or self.ca).issue_cert(*(sans or (f"{name}@example.com",)), common_name=name)
        cert, key = self.directory / f"client-{name}.crt", self.directory / f"client-{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def client_context(self, client: tuple[Path, Path] | None = None, ca: trustme.CA | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        (ca or self.ca).configure_trust(context)
        if client is not None:
            context.load_cert_chain(str(client[0]), str(client[1]))
        return context


def certificate_cn(der: bytes) -> str:
    """The common name of a DER certificate (cryptography comes with trustme)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
