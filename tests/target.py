"""The clusters the integration tests run against, behind one small interface.

By default every test gets a fresh embedded sandbox (`SandboxTarget`): source, destination and a
separate `mtv` host, read straight from its store. With `MTV_REGISTER_TEST_CLUSTERS` (or the
pytest option `--clusters`) set to a kubeconfig, the same tests run against real clusters
(`ExternalTarget`): kind, as `nox -s e2e_kind` creates them, or any three clusters whose contexts
are named `source`, `destination` and `mtv` and whose servers are the URLs to register. Set to
`sandbox-process`, the tests start `mtv-register sandbox up --mtv-on separate --no-forklift` in
a process of its own and use it as external clusters reached only over HTTPS, the way kind is
(with MTV_REGISTER_TEST_FORKLIFT=present, with Forklift, the way OpenShift with MTV is).

An external target is read and reset through the API only, with a plain `kubernetes` client (not
the tool's own code); after each test, whatever the test added is deleted so the next one starts
from the clusters as they were found.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import os
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtv_register.errors import ProviderNotReady
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox

Obj = dict[str, Any]
Snapshot = dict[str, dict[tuple[str, str, str], Obj]]

CLUSTERS_VARIABLE = "MTV_REGISTER_TEST_CLUSTERS"
FORKLIFT_VARIABLE = "MTV_REGISTER_TEST_FORKLIFT"  # present | absent; default: look for it
FORKLIFT_FIRST_PASS = 15.0  # seconds a running Forklift takes, at most, to test `host`
SANDBOX_PROCESS = "sandbox-process"
SANDBOX_PROCESS_FLAGS = ("--mtv-on", "separate")
CONTEXTS = ("source", "destination", "mtv")
NO_FORKLIFT = "needs the Forklift controller, which these clusters do not have"

# What the tool writes, and what tests compare: (group, version, plural, namespaced), in the order
# a reset deletes them (Providers first: their Secrets follow them by ownerReference). Not the
# Events it records on Providers: they are history, named after their time, so two runs that end
# alike differ in them, and a real server deletes them itself (after an hour).
RESOURCES: tuple[tuple[str, str, str, bool], ...] = (
    ("forklift.konveyor.io", "v1beta1", "providers", True),
    ("batch", "v1", "cronjobs", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", True),
    ("rbac.authorization.k8s.io", "v1", "roles", True),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", False),
    ("", "v1", "secrets", True),
    ("", "v1", "serviceaccounts", True),
    ("", "v1", "configmaps", True),
    ("", "v1", "namespaces", False),
)
BY_PLURAL = {plural: (group, version, scoped) for group, version, plural, scoped in RESOURCES}
# Namespaces the tool never writes to, whose objects a real control plane keeps changing.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


def _key(plural: str) -> str:
    """The storage key of a resource type, as the sandbox's store spells it: `group/plural`."""
    return f"{BY_PLURAL[plural][0]}/{plural}"


def _decoded(obj: Obj, key: str) -> str:
    raw = (obj.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


def _compared(obj: Obj) -> bool:
    namespace = obj["metadata"].get("namespace", "")
    return namespace not in SYSTEM_NAMESPACES and not namespace.startswith("local-path")


TOKEN_CACHE_SECONDS = 10.0  # kube-apiserver's TokenSuccessCacheTTL default


@dataclass
class Target(ABC):
    """Three clusters by context (`source`, `destination`, `mtv`) and what tests ask of them."""

    kubeconfig: Path
    forklift: bool  # a Forklift controller tests Providers on the MTV host
    mtv_context: str = "mtv"
    contexts: tuple[str, ...] = CONTEXTS

    @property
    def status_exit(self) -> int:
        """What `status` exits with once the tool's Providers are as they should be: 0 where a
        Forklift tests them and makes them Ready, 10 (a Provider not Ready) where none does."""
        return 0 if self.forklift else ProviderNotReady.exit_code

    @property
    def sandbox(self) -> Sandbox | None:
        """The embedded sandbox, or None on real clusters."""
        return None

    @abstractmethod
    def url(self, context: str) -> str:
        """The URL the cluster is registered with: its server in the kubeconfig."""

    def root_ca_pem(self, context: str) -> str:
        """The cluster's root CA, as `kube-root-ca.crt` publishes it."""
        found = self.find(context, "configmaps", "kube-root-ca.crt", "default")
        assert found is not None, f"{context} publishes no kube-root-ca.crt"
        return str(found["data"]["ca.crt"])

    @abstractmethod
    def serving_ca_pem(self, context: str) -> str:
        """The CA that signs the API server's certificate, as the kubeconfig carries it."""

    @abstractmethod
    def authenticates(self, context: str, token: str) -> bool:
        """Whether the cluster accepts `token` (a TokenReview as the admin)."""

    def refuses(self, context: str, token: str, within: float = TOKEN_CACHE_SECONDS + 5) -> bool:
        """Whether the cluster stops accepting `token` within `within` seconds: a real
        kube-apiserver keeps a token it authenticated in its cache for 10 s (its token success
        cache TTL), so a revoked token keeps working that long there."""
        deadline = time.monotonic() + within
        while self.authenticates(context, token):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    @abstractmethod
    def find(self, context: str, plural: str, name: str, namespace: str = "") -> Obj | None:
        """The object, or None where there is none (or its type is not served there)."""

    @abstractmethod
    def list(self, context: str, plural: str, namespace: str | None = None) -> list[Obj]:
        """The objects of a type, in one namespace or all of them."""

    def snapshot(self) -> Snapshot:
        """The objects of the types in RESOURCES on every cluster, by (type, namespace, name)."""
        result: Snapshot = {}
        for context in self.contexts:
            objects: dict[tuple[str, str, str], Obj] = {}
            for _, _, plural, _ in RESOURCES:
                for obj in self.list(context, plural):
                    if _compared(obj):
                        meta = obj["metadata"]
                        objects[(_key(plural), meta.get("namespace", ""), meta["name"])] = obj
            result[context] = objects
        return result

    def tokens(self) -> set[str]:
        """Every token the clusters hold in Secrets now: service-account token Secrets, and the
        `token` of provider Secrets (bound tokens live nowhere else)."""
        found: set[str] = set()
        for context in self.contexts:
            for secret in self.list(context, "secrets"):
                token = _decoded(secret, "token")
                if token:
                    found.add(token)
        return found

    @abstractmethod
    def settle(self) -> None:
        """Wait until Forklift has run every connection test already asked of it."""

    @abstractmethod
    def forklift_api_down(self) -> contextlib.AbstractContextManager[None]:
        """While inside: the MTV host's API server cannot call forklift-api's webhooks."""

    def provider_phase(self, name: str, namespace: str = MTV_NAMESPACE) -> str:
        provider = self.find(self.mtv_context, "providers", name, namespace)
        return str(((provider or {}).get("status") or {}).get("phase", ""))


@dataclass
class SandboxTarget(Target):
    """A fresh embedded sandbox: reads go straight to its store (no request, no audit event)."""

    embedded: Sandbox | None = field(default=None, repr=False)

    @property
    def sandbox(self) -> Sandbox:
        assert self.embedded is not None
        return self.embedded

    def url(self, context: str) -> str:
        return self.sandbox[context].url

    def root_ca_pem(self, context: str) -> str:
        return self.sandbox[context].root_ca_pem

    def serving_ca_pem(self, context: str) -> str:
        return self.sandbox[context].serving_ca_pem

    def authenticates(self, context: str, token: str) -> bool:
        return self.sandbox[context].cluster.authenticate(token) is not None

    def find(self, context: str, plural: str, name: str, namespace: str = "") -> Obj | None:
        group, version, namespaced = BY_PLURAL[plural]
        cluster = self.sandbox[context].cluster
        rtype = cluster.registry.lookup(group, version, plural)
        if rtype is None:  # not served here (Providers off the MTV host): a 404, as over HTTPS
            return None
        return cluster.store.find(rtype, namespace if namespaced else "", name)

    def list(self, context: str, plural: str, namespace: str | None = None) -> list[Obj]:
        group, version, _ = BY_PLURAL[plural]
        cluster = self.sandbox[context].cluster
        rtype = cluster.registry.lookup(group, version, plural)
        return cluster.store.list(rtype, namespace)[0] if rtype is not None else []

    def settle(self) -> None:
        forklift = self.sandbox[self.mtv_context].forklift
        if forklift is None:
            return
        assert forklift.settle(10), "Forklift's queue did not drain"

    @contextlib.contextmanager
    def forklift_api_down(self) -> Iterator[None]:
        forklift = self.sandbox[self.mtv_context].forklift
        assert forklift is not None, "this sandbox runs no Forklift"
        forklift.api_down = True
        try:
            yield
        finally:
            forklift.api_down = False


class ExternalTarget(Target):
    """Clusters given by a kubeconfig, reached over HTTPS with a plain `kubernetes` client."""

    def __init__(self, kubeconfig: Path, forklift: bool | None = None) -> None:
        from kubernetes import config

        data = yaml.safe_load(kubeconfig.read_text())
        names = {c["name"] for c in data.get("contexts") or []}
        missing = [c for c in CONTEXTS if c not in names]
        if missing:
            raise RuntimeError(
                f"{kubeconfig} has no context {', '.join(missing)}: the tests need contexts named "
                f"{', '.join(CONTEXTS)} (`nox -s e2e_kind` writes them)"
            )
        self._clusters = {
            c["name"]: next(
                k["cluster"] for k in data["clusters"] if k["name"] == c["context"]["cluster"]
            )
            for c in data["contexts"]
        }
        self._clients = {
            context: config.new_client_from_config(config_file=str(kubeconfig), context=context)
            for context in CONTEXTS
        }
        super().__init__(kubeconfig=kubeconfig, forklift=False)
        self.forklift = self._forklift_runs() if forklift is None else forklift
        self.baseline = self.snapshot()

    def close(self) -> None:
        for api in self._clients.values():
            api.close()

    def url(self, context: str) -> str:
        return str(self._clusters[context]["server"])

    def serving_ca_pem(self, context: str) -> str:
        cluster = self._clusters[context]
        if "certificate-authority-data" in cluster:
            return base64.b64decode(cluster["certificate-authority-data"]).decode()
        return Path(cluster["certificate-authority"]).read_text()

    def authenticates(self, context: str, token: str) -> bool:
        review = self._call(
            context,
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        return bool((review.get("status") or {}).get("authenticated"))

    def _path(self, plural: str, namespace: str | None, name: str = "") -> str:
        group, version, namespaced = BY_PLURAL[plural]
        path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        if namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{plural}"
        return f"{path}/{name}" if name else path

    def _call(self, context: str, method: str, path: str, body: Obj | None = None) -> Any:
        """One request as the admin: the decoded answer, or None for a 404."""
        import json

        from kubernetes.client.rest import ApiException

        api = self._clients[context]
        request = api.param_serialize(
            method,
            path,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = api.call_api(*request)
            response.read()
        except ApiException as error:  # a transport-level refusal
            raise AssertionError(f"{method} {path} on {context}: {error}") from None
        if response.status == 404:
            return None
        if response.status >= 300:
            failed = f"{method} {path} on {context}: {response.status} {response.reason}"
            raise AssertionError(failed)
        return json.loads(response.data)

    def find(self, context: str, plural: str, name: str, namespace: str = "") -> Obj | None:
        found = self._call(context, "GET", self._path(plural, namespace, name))
        return dict(found) if found is not None else None

    def list(self, context: str, plural: str, namespace: str | None = None) -> list[Obj]:
        found = self._call(context, "GET", self._path(plural, namespace)) or {}
        items = list(found.get("items") or [])
        _, version, _ = BY_PLURAL[plural]
        for item in items:  # a list's items carry no kind: give them theirs
            item.setdefault("apiVersion", found.get("apiVersion", version))
            item.setdefault("kind", str(found.get("kind", "")).removesuffix("List"))
        return items

    def settle(self) -> None:
        """No queue to look into here: the tests that need a verdict wait for it."""

    @contextlib.contextmanager
    def forklift_api_down(self) -> Iterator[None]:
        """Every webhook of forklift-api's configurations pointed at a closed port, as if its
        Pod were gone (the real API server then answers "failed calling webhook"), and put
        back afterwards."""
        base = "/apis/admissionregistration.k8s.io/v1"
        kept: list[tuple[str, Obj]] = []
        for plural in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            for item in (self._call(self.mtv_context, "GET", f"{base}/{plural}") or {}).get(
                "items", []
            ):
                hooks = item.get("webhooks") or []
                if not any(h["name"].endswith(".forklift.konveyor") for h in hooks):
                    continue
                kept.append((plural, copy.deepcopy(item)))
                for hook in hooks:
                    if hook["name"].endswith(".forklift.konveyor"):
                        hook["clientConfig"] = {
                            "url": "https://127.0.0.1:9/validate",
                            "caBundle": hook["clientConfig"].get("caBundle", ""),
                        }
                path = f"{base}/{plural}/{item['metadata']['name']}"
                self._call(self.mtv_context, "PUT", path, item)
        assert kept, "no forklift-api webhook is registered on the MTV host"
        try:
            yield
        finally:
            for plural, item in kept:
                path = f"{base}/{plural}/{item['metadata']['name']}"
                current = self._call(self.mtv_context, "GET", path)
                item["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self._call(self.mtv_context, "PUT", path, item)

    def _forklift_runs(self) -> bool:
        setting = os.environ.get(FORKLIFT_VARIABLE, "").lower()
        if setting in ("present", "absent"):
            return setting == "present"
        # Every MTV host has the forklift-controller Deployment (the profile's too); a running
        # controller is seen by what it did: it tested the local `host` Provider (its first pass
        # comes within seconds of its start).
        path = f"/apis/forklift.konveyor.io/v1beta1/namespaces/{MTV_NAMESPACE}/providers/host"
        deadline = time.monotonic() + FORKLIFT_FIRST_PASS
        while True:
            host = self._call(self.mtv_context, "GET", path)
            if ((host or {}).get("status") or {}).get("conditions"):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def reset(self, timeout: float = 180.0) -> builtins.list[str]:
        """Delete what was added since the baseline (objects inside an added namespace go with
        it), wait until it is gone, and name what was deleted."""
        deleted: list[str] = []
        current = self.snapshot()
        gone: list[tuple[str, str, str, str]] = []
        for context in self.contexts:
            base, now = self.baseline[context], current[context]
            added_namespaces = {
                name for (key, _, name) in set(now) - set(base) if key == "/namespaces"
            }
            for _, _, plural, namespaced in RESOURCES:
                for key, namespace, name in sorted(set(now) - set(base)):
                    if key != _key(plural) or (namespaced and namespace in added_namespaces):
                        continue
                    path = self._path(plural, namespace, name)
                    self._call(context, "DELETE", path, {"propagationPolicy": "Background"})
                    gone.append((context, plural, namespace, name))
                    deleted.append(f"{plural} {namespace}/{name} on {context}")
        deadline = time.monotonic() + timeout
        for context, plural, namespace, name in gone:
            while self.find(context, plural, name, namespace) is not None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{plural} {namespace}/{name} on {context} not gone")
                time.sleep(0.2)
        return deleted


@contextmanager
def sandbox_process() -> Iterator[Path]:
    """`mtv-register sandbox up --mtv-on separate --no-forklift` in its own process: its
    kubeconfig while it serves. With MTV_REGISTER_TEST_FORKLIFT=present, with Forklift: an MTV
    host as on OpenShift rather than as on kind."""
    forklift = os.environ.get(FORKLIFT_VARIABLE, "").lower() == "present"
    with tempfile.TemporaryDirectory(prefix="mtv-register-clusters-") as folder:
        kubeconfig = Path(folder) / "kubeconfig"
        command = [sys.executable, "-m", "mtv_register", "sandbox", "up", *SANDBOX_PROCESS_FLAGS]
        command.append("--forklift" if forklift else "--no-forklift")
        process = subprocess.Popen(
            [*command, "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            line = process.stdout.readline()
            if not line.startswith("sandbox ready"):
                process.kill()
                raise RuntimeError(f"sandbox up did not start: {line}{process.stderr.read()}")
            yield kubeconfig
        finally:
            process.terminate()
            process.wait(30)
