"""Certificates as Go's crypto/x509 and client-go judge them: which CA data loads, and the words
of a failed verification (OpenSSL does the verifying; Go's messages are put on its verdicts)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
import socket
import ssl

from cryptography import x509

_PEM = re.compile(
    r"-----BEGIN (?P<type>[^-\r\n]+)-----\r?\n(?P<body>.*?)-----END (?P=type)-----", re.S
)
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21}
_TIME = {9, 10}
_NAME = {62, 64}


def ca_pool(data: str) -> tuple[str, str]:
    """(the certificates client-go trusts from `data`, "" or why it refuses all of it).

    As AppendCertsFromPEM: blocks of other types, with headers or that do not parse are
    skipped; only when none is left does the error name the first problem."""
    good: list[str] = []
    problem = ""
    rest = data
    while rest:
        block = _PEM.search(rest)
        if block is None:
            problem = problem or "unable to parse bytes as PEM block"
            break
        rest = rest[block.end() :]
        if block["type"] != "CERTIFICATE" or ":" in block["body"].split("\n", 1)[0]:
            continue
        try:
            x509.load_pem_x509_certificate(block.group(0).encode())
        except ValueError as err:
            problem = problem or f"failed to parse certificate: x509: {err}"
            continue
        good.append(block.group(0))
        if not rest.strip():
            break
    if good:
        return "\n".join(good) + "\n", ""
    return "", problem or "no valid certificate authority data seen"


def verify_failure(err: ssl.SSLCertVerificationError, host: str, port: int, timeout: float) -> str:
    """What Go's verifier says where OpenSSL refused the server's certificate."""
    code = err.verify_code
    if code in _UNKNOWN_AUTHORITY:
        return "x509: certificate signed by unknown authority"
    leaf = _peer_certificate(host, port, timeout) if code in _TIME | _NAME else None
    if leaf is not None and code in _TIME:
        now = dt.datetime.now(dt.UTC)
        if now > leaf.not_valid_after_utc:
            return (
                "x509: certificate has expired or is not yet valid: current time "
                f"{_go_time(now)} is after {_go_time(leaf.not_valid_after_utc)}"
            )
        return (
            "x509: certificate has expired or is not yet valid: current time "
            f"{_go_time(now)} is before {_go_time(leaf.not_valid_before_utc)}"
        )
    if leaf is not None and code in _NAME:
        return _hostname_error(leaf, host)
    return f"x509: {err.verify_message}"


def _go_time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _peer_certificate(host: str, port: int, timeout: float) -> x509.Certificate | None:
    """The server's certificate, fetched without verification only to word the error."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(OSError, ValueError):
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        if der:
            return x509.load_der_x509_certificate(der)
    return None


def _hostname_error(leaf: x509.Certificate, host: str) -> str:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "x509: certificate relies on legacy Common Name field, use SANs instead"
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        valid = ", ".join(names.get_values_for_type(x509.DNSName))
    else:
        addresses = names.get_values_for_type(x509.IPAddress)
        if not addresses:
            return (
                f"x509: cannot validate certificate for {host} because it doesn't contain any "
                "IP SANs"
            )
        valid = ", ".join(str(a) for a in addresses)
    if not valid:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {valid}, not {host}"
