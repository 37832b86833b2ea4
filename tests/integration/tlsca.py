"""A throwaway certificate authority for the TLS tests, made at test time
with python3-cryptography (never committed, never trusted outside the test).

    ca = TestCA(directory)                    # the CA: ca.cert_path (PEM)
    leaf = ca.issue("localhost", key="ec")    # leaf.cert_path (chain: leaf, CA), leaf.key_path
    leaf = ca.issue("localhost", key="rsa", days=2)

Leaves carry subjectAltName DNS:<name> plus IP:127.0.0.1 and are valid from
an hour ago for `days` days, so clocks a little apart do not matter.
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _new_key(kind: str):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key kind {kind!r}: ec or rsa")


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Leaf:
    name: str
    cert_path: pathlib.Path  # leaf then CA, PEM
    key_path: pathlib.Path
    not_after: datetime.datetime


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory: pathlib.Path, name: str = "ringgate test CA"):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = _new_key("ec")
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.cert_path = self.dir / "ca.pem"
        self.cert_path.write_bytes(self.cert_pem)
        self._issued = 0

    def issue(self, name: str = "localhost", key: str = "ec", days: int = 20) -> Leaf:
        leaf_key = _new_key(key)
        now = datetime.datetime.now(datetime.timezone.utc)
        not_after = now + datetime.timedelta(days=days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self._issued += 1
        stem = f"{name}-{key}-{self._issued}"
        cert_path = self.dir / f"{stem}.pem"
        key_path = self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem)
        key_path.write_bytes(_pem_key(leaf_key))
        key_path.chmod(0o600)
        return Leaf(name, cert_path, key_path, not_after)
