"""One real cluster: etcd, kube-apiserver and kube-controller-manager on loopback.

Started in that order, each only once the one before is ready; stopped in the reverse order.
Every cluster gets a fresh data folder and free ports; flags stay the same run to run (a
reused etcd with another service range fails, CONTROLPLANE.md).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.realstack import procs
from tests.realstack.api import Admin, ApiError, wait_until
from tests.realstack.build import Built
from tests.realstack.pki import Pki, make_pki

# The controllers the tool relies on (stable IDs): token Secrets filled, `default` service
# accounts (admission needs them), kube-root-ca.crt published, owner references collected,
# namespaces emptied, legacy tokens tracked, and the aggregated admin/edit/view roles.
CONTROLLERS = (
    "serviceaccount-token",
    "serviceaccount",
    "root-ca-cert-publisher",
    "garbagecollector",
    "namespace",
    "legacy-service-account-token-cleaner",
    "clusterrole-aggregation",
)
SERVICE_CIDR = "10.0.0.0/24"
# One audit event per request, at Metadata level: who, verb, URI, code and timestamps, never
# a body (so never a token).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControlPlane:
    """One cluster by context name, its folder, and the audit log path."""

    context: str
    binaries: Built
    folder: Path
    audit_log: Path
    processes: list[tuple[str, subprocess.Popen[str]]] = field(default_factory=list)
    pki: Pki | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def admin(self) -> Admin:
        assert self.pki is not None
        return Admin(self.url, self.pki)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.folder / "pki", self.context)
        self._start_etcd()
        self._start_apiserver()
        self._start_controller_manager()

    def stop(self) -> None:
        """Controller-manager, API server, then etcd (the reverse of starting)."""
        for _, process in reversed(self.processes):
            procs.stop(process)
        self.processes.clear()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[str]:
        process = procs.spawn(argv, log=self.folder / f"{name}.log")
        self.processes.append((name, process))
        return process

    def _log_tail(self, name: str, lines: int = 15) -> str:
        path = self.folder / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self, name: str) -> None:
        for started, process in self.processes:
            if started == name and process.poll() is not None:
                tail = self._log_tail(name)
                raise RuntimeError(
                    f"{name} of {self.context} exited ({process.returncode}):\n{tail}"
                )

    # -- etcd ------------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                f"--name={self.context}",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster={self.context}=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--watch-progress-notify-interval=5s",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            self._check_alive("etcd")
            connection = http.client.HTTPConnection("127.0.0.1", client, timeout=2)
            try:
                connection.request("GET", "/health")
                return bool(json.loads(connection.getresponse().read()).get("health") == "true")
            finally:
                connection.close()

        wait_until(
            healthy,
            timeout=START_TIMEOUT,
            what=f"etcd of {self.context} to be healthy",
            detail=lambda: self._log_tail("etcd"),
        )

    # -- kube-apiserver --------------------------------------------------------------------

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        pki = self.pki
        self.port = free_port()
        policy = self.folder / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.folder / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={self.url}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--v=1",
            ],
        )
        admin = self.admin()

        def ready() -> bool:
            self._check_alive("kube-apiserver")
            admin.request("GET", "/readyz", timeout=5)
            return True

        def why() -> str:
            try:
                answer = admin.request("GET", "/readyz?verbose", timeout=5).get("text", "")
            except ApiError as error:
                answer = str(error)
            except OSError as error:
                answer = f"no answer ({error})"
            return f"{answer}\n{self._log_tail('kube-apiserver')}"

        wait_until(
            ready,
            timeout=START_TIMEOUT,
            what=f"kube-apiserver of {self.context} to be ready",
            detail=why,
        )

    # -- kube-controller-manager -----------------------------------------------------------

    def _start_controller_manager(self) -> None:
        assert self.pki is not None
        pki = self.pki
        kubeconfig = self.folder / "controller-manager.kubeconfig"
        write_kubeconfig(
            kubeconfig,
            {
                self.context: (
                    self.url,
                    pki.ca,
                    pki.controller_manager_cert,
                    pki.controller_manager_key,
                )
            },
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--use-service-account-credentials",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.folder / 'controller-manager-certs'}",
                "--v=1",
            ],
        )
        self._wait_controllers()

    def _wait_controllers(self) -> None:
        """Ready once `kube-root-ca.crt` is published and a new token Secret gets its token."""
        admin = self.admin()

        def published() -> bool:
            self._check_alive("kube-controller-manager")
            return admin.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt") is not None

        wait_until(
            published,
            timeout=START_TIMEOUT,
            what=f"kube-root-ca.crt on {self.context}",
            detail=lambda: self._log_tail("kube-controller-manager"),
        )

        def default_account() -> bool:
            return admin.get("/api/v1/namespaces/default/serviceaccounts/default") is not None

        wait_until(
            default_account,
            timeout=START_TIMEOUT,
            what=f"the default service account on {self.context}",
            detail=lambda: self._log_tail("kube-controller-manager"),
        )
        probe = "/api/v1/namespaces/default/secrets/realstack-token-probe"
        admin.apply(
            "/api/v1/namespaces/default/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "realstack-token-probe",
                    "annotations": {"kubernetes.io/service-account.name": "default"},
                },
                "type": "kubernetes.io/service-account-token",
            },
        )

        def filled() -> bool:
            self._check_alive("kube-controller-manager")
            secret = admin.get(probe) or {}
            return bool((secret.get("data") or {}).get("token"))

        wait_until(
            filled,
            timeout=START_TIMEOUT,
            what=f"the token controller on {self.context}",
            detail=lambda: self._log_tail("kube-controller-manager"),
        )
        admin.request("DELETE", probe)
        wait_until(lambda: admin.get(probe) is None, timeout=30, what="the probe Secret to go")


def write_kubeconfig(
    path: Path, clusters: dict[str, tuple[str, Path, Path, Path]], current: str | None = None
) -> None:
    """A kubeconfig with one context per cluster, each user a client certificate, everything
    embedded; written whole (a temporary file renamed), mode 0600."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [],
        "users": [],
        "contexts": [],
    }

    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    for context, (url, ca, cert, key) in clusters.items():
        config["clusters"].append(
            {"name": context, "cluster": {"server": url, "certificate-authority-data": data(ca)}}
        )
        config["users"].append(
            {
                "name": f"{context}-admin",
                "user": {"client-certificate-data": data(cert), "client-key-data": data(key)},
            }
        )
        config["contexts"].append(
            {"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}
        )
    config["current-context"] = current or next(iter(clusters))
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.touch(mode=0o600)
    scratch.write_text(yaml.safe_dump(config, sort_keys=False))
    scratch.chmod(0o600)
    scratch.replace(path)
