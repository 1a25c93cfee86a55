"""A development certificate authority for the bus's TLS: made locally, kept in one folder.

`just up --tls` (NATS_TLS=1) and the tests make, in DATA_DIR/tls (folder 0700, every file
0600, made once and kept):

- `ca.pem`, `ca.key`: the CA (ECDSA P-256, valid 5 years) that every client trusts;
- `server.pem`, `server.key`: the nats-server's certificate for `localhost`, `127.0.0.1`,
  `::1` and any extra host names (NATS_TLS_HOSTS: the nodes of a cluster), usable both ways
  (a cluster route is a client of the node it connects to);
- `<role>.pem`, `<role>.key`: one client certificate per bus role (aitbc_infra.bus_roles),
  for mutual TLS; its common name is the role.

ECDSA P-256: what nats-server (Go's crypto/tls) and Python's ssl (OpenSSL) both take without
any option. Leaf certificates last a year; `provision()` reissues one that is missing, expires
within 30 days, names other hosts, or was not signed by the CA in the folder (a new CA
reissues everything). Production uses certificates of its own: docs/security.md, "TLS".

`python -m aitbc_infra.dev_ca FOLDER [HOST...]` makes the same set for a cluster's nodes.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aitbc_infra.bus_config import write_private
from aitbc_infra.bus_roles import ROLES

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_LIFETIME = timedelta(days=5 * 365)
LEAF_LIFETIME = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)  # a certificate this close to its end is reissued
BACKDATE = timedelta(minutes=5)  # clocks of the machines that check it may lag a little
SERVER = "server"

Signer = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AITBC development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alternative_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, life: timedelta
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + life)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca() -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = "AITBC development CA"
    certificate = (
        _builder(subject, _name(subject), key, CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(_usage(signs_certificates=True), True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue(
    ca: Signer, subject: str, hosts: Iterable[str] = (), *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate signed by `ca`: for a server (`hosts` as its alternative names;
    also a client, for cluster routes) or for a client only."""
    ca_key, ca_certificate = ca
    key = ec.generate_private_key(ec.SECP256R1())
    purposes = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        purposes.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        _builder(subject, ca_certificate.subject, key, LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_usage(signs_certificates=False), True)
        .add_extension(x509.ExtendedKeyUsage(purposes), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if server:
        names = [_alternative_name(host) for host in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _still_good(certificate: x509.Certificate, ca: x509.Certificate | None) -> bool:
    """Not too close to its end, and (for a leaf) signed by `ca`."""
    if certificate.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return False
    if ca is None:
        return True
    try:
        certificate.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _hosts_of(certificate: x509.Certificate) -> set[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return {str(name.value) for name in names.value}


@dataclass(frozen=True)
class DevCA:
    """The development CA and the certificates it signed, in `folder`; `hosts`: names the
    server certificate holds besides the local ones."""

    folder: Path
    hosts: tuple[str, ...] = ()

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def cert_file(self, holder: str) -> Path:
        """`server`, or a bus role: the certificate it presents."""
        return self.folder / f"{self._holder(holder)}.pem"

    def key_file(self, holder: str) -> Path:
        return self.folder / f"{self._holder(holder)}.key"

    @staticmethod
    def _holder(holder: str) -> str:
        if holder != SERVER and holder not in ROLES:
            raise KeyError(f"no such bus role: {holder!r} (one of {', '.join(ROLES)})")
        return holder

    @property
    def server_hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*LOCAL_HOSTS, *self.hosts)))

    def provision(self) -> DevCA:
        """Make what is missing or due (see the module's doc); keep the rest."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        ca = self._ca()
        wanted = {str(_alternative_name(h).value) for h in self.server_hosts}
        server = self._read(SERVER)
        if server is None or not _still_good(server, ca[1]) or _hosts_of(server) != wanted:
            self._write(SERVER, issue(ca, SERVER, self.server_hosts, server=True))
        for role in ROLES:
            client = self._read(role)
            if client is None or not _still_good(client, ca[1]):
                self._write(role, issue(ca, role, server=False))
        return self

    def _ca(self) -> Signer:
        key_file = self.folder / "ca.key"
        if self.ca_file.exists() and key_file.exists():
            certificate = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            if isinstance(key, ec.EllipticCurvePrivateKey) and _still_good(certificate, None):
                return key, certificate
        key, certificate = new_ca()
        write_private(key_file, _pem_key(key))
        write_private(self.ca_file, _pem(certificate))
        return key, certificate

    def _read(self, holder: str) -> x509.Certificate | None:
        """The holder's certificate, None where it or its key is missing or they differ (a
        write cut short)."""
        if not (self.cert_file(holder).exists() and self.key_file(holder).exists()):
            return None
        certificate = x509.load_pem_x509_certificate(self.cert_file(holder).read_bytes())
        key = serialization.load_pem_private_key(self.key_file(holder).read_bytes(), None)
        if key.public_key() != certificate.public_key():
            return None
        return certificate

    def _write(
        self, holder: str, made: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
    ) -> None:
        key, certificate = made
        write_private(self.key_file(holder), _pem_key(key))  # the key first: never a cert
        write_private(self.cert_file(holder), _pem(certificate))  # without its own key


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m aitbc_infra.dev_ca FOLDER [HOST...]", file=sys.stderr)
        return 2
    ca = DevCA(Path(argv[0]), tuple(argv[1:])).provision()
    print(f"CA {ca.ca_file}; server certificate for {', '.join(ca.server_hosts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
