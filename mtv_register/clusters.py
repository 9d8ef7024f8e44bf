"""Kubeconfig contexts to API clients; a cluster's API URL and CA; the TLS proof.

One credential order, written down once: `--kubeconfig`, then `$KUBECONFIG` (first file of the
list), then `~/.kube/config`; `--in-cluster` uses the pod's service account instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from mtv_register import errors
from mtv_register.api_kube import ApiKube
from mtv_register.kube import CONFIG_MAP, INFRASTRUCTURE, Kube
from mtv_register.timing import Timing

CA_SOURCES = ("root", "kubeconfig", "system")  # plus "file:PATH"
BACKENDS = ("kubernetes", "oc")  # the `kubernetes` client; the oc/kubectl binary (oc_backend)
URL_SOURCES = ("kubeconfig", "infrastructure")


@dataclass(frozen=True)
class Kubeconfig:
    path: Path
    data: dict[str, Any]

    @property
    def contexts(self) -> list[str]:
        return [c["name"] for c in self.data.get("contexts") or [] if c.get("name")]

    def _entry(self, section: str, name: str) -> dict[str, Any]:
        for entry in self.data.get(section) or []:
            if entry.get("name") == name:
                return dict(entry.get(section[:-1]) or {})
        return {}

    def cluster_of(self, context: str) -> dict[str, Any]:
        return self._entry("clusters", self._entry("contexts", context).get("cluster", ""))

    def user_of(self, context: str) -> dict[str, Any]:
        return self._entry("users", self._entry("contexts", context).get("user", ""))

    def host_or_current(self, host: str | None, fix: str = "pass --host CONTEXT") -> str:
        """The MTV host's context: `host` as given, else the kubeconfig's current-context."""
        context = host or self.data.get("current-context")
        if not context:
            raise errors.UsageError("no --host and no current-context in the kubeconfig", fix=fix)
        return str(context)


# What a kubeconfig user may authenticate with; with none, requests go as system:anonymous.
CREDENTIAL_KEYS = (
    "token",
    "tokenFile",
    "client-certificate",
    "client-certificate-data",
    "exec",
    "auth-provider",
    "username",
)


def kubeconfig_path(explicit: str | Path | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def load_kubeconfig(explicit: str | Path | None = None) -> Kubeconfig:
    path = kubeconfig_path(explicit)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise errors.KubeconfigError(
            f"kubeconfig {path} {what}", fix="pass --kubeconfig PATH or set KUBECONFIG"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise errors.KubeconfigError(
            f"kubeconfig {path} is not valid YAML{where}",
            fix="repair the file or pass another with --kubeconfig",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), list):
        raise errors.KubeconfigError(
            f"kubeconfig {path} has no contexts",
            fix="pass a kubeconfig with contexts via --kubeconfig",
        )
    return Kubeconfig(path, data)


@dataclass(frozen=True)
class Connector:
    """How one run makes its API clients: the backend (the `kubernetes` client, or `oc` with its
    binary: `oc_path`, default oc, else kubectl) and the `Timing` every client retries and waits
    with. Every client tells the connector that made it (`kube.connector`), so the clients a
    step makes from one (a token to prove, a Provider's credentials to test) speak the same way.
    No request is made until a client is used."""

    backend: str = "kubernetes"
    oc_path: str | None = None
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise errors.UsageError(
                f'--client "{self.backend}" is not known', fix=f"use {' or '.join(BACKENDS)}"
            )

    def connect(self, kubeconfig: Kubeconfig, context: str) -> Kube:
        """A client for a kubeconfig context, with its credentials."""
        if context not in kubeconfig.contexts:
            known = ", ".join(kubeconfig.contexts) or "none"
            raise errors.KubeconfigError(
                f'context "{context}" is not in {kubeconfig.path}', fix=f"use one of: {known}"
            )
        url = str(kubeconfig.cluster_of(context).get("server", ""))
        if not any(kubeconfig.user_of(context).get(key) for key in CREDENTIAL_KEYS):
            raise errors.KubeconfigError(
                f'context "{context}" in {kubeconfig.path} has no credentials (its user has no '
                "token, client certificate, exec plugin or auth provider): every request would "
                "go as system:anonymous",
                fix=f"log in to that cluster (oc login, or your provider's CLI) to fill the "
                f'credentials of context "{context}"',
            )
        kube: Kube
        if self.backend == "oc":
            from mtv_register import oc_backend  # only now: the default never loads it

            kube = oc_backend.OcKube(
                os.path.abspath(kubeconfig.path),
                context=context,
                url=url,
                oc_path=self._binary(),
                timing=self.timing,
            )
        else:
            from kubernetes import config as k8s_config

            try:
                api_client = k8s_config.new_client_from_config_dict(
                    kubeconfig.data, context=context
                )
            except (k8s_config.ConfigException, ValueError, KeyError, TypeError) as err:
                raise errors.KubeconfigError(
                    f'context "{context}" in {kubeconfig.path} cannot be used: {err}',
                    fix="repair that context (cluster, user and credentials)",
                ) from None
            kube = ApiKube(api_client, context=context, url=url, timing=self.timing)
        kube.tls_fix = _kubeconfig_tls_fix(context, url)
        return kube

    def with_token(
        self, url: str, token: str, *, ca_pem: str | None, insecure: bool = False, context: str
    ) -> Kube:
        """A client holding a service account's token, at `url`, trusting `ca_pem`."""
        if self.backend == "oc":
            from mtv_register import oc_backend

            return oc_backend.OcKube.from_token(
                url,
                token,
                ca_pem=ca_pem,
                insecure=insecure,
                context=context,
                oc_path=self._binary(),
                timing=self.timing,
            )
        return ApiKube.from_token(
            url, token, ca_pem=ca_pem, insecure=insecure, context=context, timing=self.timing
        )

    def in_cluster(self) -> Kube:
        """The pod's own service account (the scheduled rotation's CronJob).

        `$MTV_REGISTER_SERVICEACCOUNT_DIR` replaces the mounted folder (token, ca.crt) where
        the token is projected elsewhere; the API address comes from
        KUBERNETES_SERVICE_HOST/PORT."""
        folder = Path(os.environ.get("MTV_REGISTER_SERVICEACCOUNT_DIR", SERVICE_ACCOUNT_DIR))
        if self.backend == "oc":
            from mtv_register import oc_backend

            address = os.environ.get("KUBERNETES_SERVICE_HOST", "")
            if not address or not (folder / "token").is_file():
                raise errors.KubeconfigError(
                    "--in-cluster: not running in a pod (no KUBERNETES_SERVICE_HOST or no token)",
                    fix="drop --in-cluster and pass --host CONTEXT",
                )
            address = f"[{address}]" if ":" in address else address
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            return oc_backend.OcKube.from_service_account(
                f"https://{address}:{port}", str(folder), oc_path=self._binary(), timing=self.timing
            )
        from kubernetes import client as k8s
        from kubernetes.config import incluster_config

        configuration = k8s.Configuration()
        try:
            incluster_config.InClusterConfigLoader(
                token_filename=str(folder / "token"),
                cert_filename=str(folder / "ca.crt"),
                environ=os.environ,
            ).load_and_set(configuration)
        except incluster_config.ConfigException as err:
            raise errors.KubeconfigError(
                f"--in-cluster: not running in a pod ({err})",
                fix="drop --in-cluster and pass --host CONTEXT",
            ) from None
        return ApiKube(
            k8s.ApiClient(configuration),
            context="in-cluster",
            url=configuration.host,
            timing=self.timing,
        )

    def _binary(self) -> str:
        from mtv_register import oc_backend

        return oc_backend.resolve_binary(self.oc_path)


def _kubeconfig_tls_fix(context: str, url: str) -> str:
    return (
        f"the kubeconfig's certificate-authority for context {context} does not verify {url}: "
        "refresh the kubeconfig (oc login, or your provider's CLI); --ca-source does not apply "
        "to the kubeconfig's own connection"
    )


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# -- URL and CA --------------------------------------------------------------------------------


def kubeconfig_ca(kubeconfig: Kubeconfig, context: str) -> str | None:
    cluster = kubeconfig.cluster_of(context)
    if cluster.get("certificate-authority-data"):
        return base64.b64decode(cluster["certificate-authority-data"]).decode()
    if cluster.get("certificate-authority"):
        ca_path = Path(cluster["certificate-authority"]).expanduser()
        if not ca_path.is_absolute():
            ca_path = kubeconfig.path.parent / ca_path
        return read_pem(ca_path)
    return None


def read_pem(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as err:
        raise errors.UsageError(
            f"CA file {path} cannot be read: {err.strerror}",
            fix="pass a readable PEM file with --ca-source file:PATH",
        ) from None
    check_pem(text, str(path))
    return text


def check_pem(text: str, origin: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise errors.UsageError(
            f"the CA from {origin} is not a PEM certificate",
            fix="give a PEM file (-----BEGIN CERTIFICATE-----)",
        ) from None
    return certificates


def ca_expiry(pem: str) -> dt.datetime:
    """The earliest notAfter in a bundle."""
    return min(cert.not_valid_after_utc for cert in check_pem(pem, "the bundle"))


def check_not_expired(pem: str, origin: str) -> None:
    now = dt.datetime.now(dt.UTC)
    for cert in check_pem(pem, origin):
        if cert.not_valid_after_utc <= now:
            raise errors.TlsError(
                f"the CA from {origin} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                fix="renew the cluster CA or pass a current one with --ca-source file:PATH",
            )


def root_ca(kube: Kube) -> str:
    """The cluster's root CA, as the seed reads it: `kube-root-ca.crt`, key `ca.crt`."""
    config_map = kube.get(CONFIG_MAP, "kube-root-ca.crt", "default")
    pem = ((config_map or {}).get("data") or {}).get("ca.crt", "")
    if not pem:
        raise errors.PreflightError(
            f"context {kube.context} has no kube-root-ca.crt ConfigMap in namespace default",
            fix="use --ca-source kubeconfig or --ca-source file:PATH",
        )
    return str(pem)


def infrastructure_url(kube: Kube) -> str:
    infrastructure = kube.get(INFRASTRUCTURE, "cluster")
    url = ((infrastructure or {}).get("status") or {}).get("apiServerURL", "")
    if not url:
        raise errors.PreflightError(
            f"context {kube.context} has no infrastructures.config.openshift.io/cluster "
            "apiServerURL (not OpenShift?)",
            fix="use --url-source kubeconfig or pass the URL with --source-url/--destination-url",
        )
    return str(url)


def prove_tls(
    url: str, ca_pem: str | None, *, insecure: bool, origin: str, timeout: float = 10.0
) -> None:
    """A TLS handshake to `url` trusting only `ca_pem` (or the system store when None)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise errors.UsageError(
            f'API URL "{url}" is not an https:// URL',
            fix="pass the API server URL, e.g. https://api.example:6443",
        )
    if insecure:
        return
    context = (
        ssl.create_default_context(cadata=ca_pem) if ca_pem else (ssl.create_default_context())
    )
    try:
        address = (parts.hostname, parts.port or 443)
        with (
            socket.create_connection(address, timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=parts.hostname),
        ):
            pass
    except ssl.SSLCertVerificationError as err:
        raise errors.TlsError(
            f"the CA from {origin} does not verify {url}: {err.verify_message}",
            fix=_tls_fix(origin),
        ) from None
    except ssl.SSLError as err:
        raise errors.TlsError(
            f"TLS handshake with {url} failed: {err.reason}", fix="check the URL and the CA"
        ) from None
    except OSError as err:
        raise errors.UnreachableError(
            f"cannot reach {url}: {err.strerror or err}",
            fix="check the URL and that the cluster is up",
        ) from None


def _tls_fix(origin: str) -> str:
    if origin.startswith("kube-root-ca.crt"):
        return (
            "the API serves a certificate not signed by the cluster's root CA (a custom "
            "named certificate?): use --ca-source kubeconfig or --ca-source file:PATH"
        )
    return "pass the CA that signs the API certificate with --ca-source file:PATH"
