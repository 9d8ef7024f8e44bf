"""The certificates of one real cluster, as a kubeadm cluster has them: one CA signing the
API server's serving certificate and the client certificates of the admin (group
`system:masters`) and of the controller-manager, and an RSA key for service-account tokens."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVING_NAMES = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.0.0.1",
)
VALIDITY = dt.timedelta(days=365)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    """File paths of one cluster's certificates and keys (all PEM)."""

    folder: Path

    ca = property(lambda self: self.folder / "ca.crt")
    serving_cert = property(lambda self: self.folder / "apiserver.crt")
    serving_key = property(lambda self: self.folder / "apiserver.key")
    admin_cert = property(lambda self: self.folder / "admin.crt")
    admin_key = property(lambda self: self.folder / "admin.key")
    controller_manager_cert = property(lambda self: self.folder / "controller-manager.crt")
    controller_manager_key = property(lambda self: self.folder / "controller-manager.key")
    service_account_key = property(lambda self: self.folder / "sa.key")
    service_account_pub = property(lambda self: self.folder / "sa.pub")


def make_pki(folder: Path, cluster: str) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster}-kubernetes-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(pki.ca, _pem_cert(ca_cert))

    def issue(
        cert_path: Path,
        key_path: Path,
        common_name: str,
        *,
        organization: str = "",
        server: bool = False,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            names: list[x509.GeneralName] = []
            for host in SERVING_NAMES:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write(cert_path, _pem_cert(builder.sign(ca_key, hashes.SHA256())))
        _write(key_path, _pem_key(key))

    issue(pki.serving_cert, pki.serving_key, "kube-apiserver", server=True)
    issue(pki.admin_cert, pki.admin_key, "kubernetes-admin", organization="system:masters")
    issue(pki.controller_manager_cert, pki.controller_manager_key, "system:kube-controller-manager")
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.service_account_key, _pem_key(sa_key))
    _write(
        pki.service_account_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def _write(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)
