"""The Forklift imitation as a controller of its own against a real API server (Driver B).

    python -m mtv_register.sandbox.mtv.remote --kubeconfig PATH --context CTX \\
        [--namespace openshift-mtv] [--forklift-version v2.12.5] [--webhook-port 0]

It lists and watches Providers and Secrets with the kubeconfig's credentials, runs Forklift's
provider controller (`loop`, the same as in the sandbox) and writes status through
`/status`; it serves forklift-api's provider-Secret webhooks on 127.0.0.1 and registers them.
It prints `forklift imitation ready` once the webhooks are registered and the `host` Provider
is reconciled; SIGTERM or SIGINT end it (the webhook configurations stay, as a crashed
forklift-api leaves them). Problems are one line each on stderr; it carries on.
"""

from __future__ import annotations

import argparse
import copy
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from mtv_register.sandbox.mtv.apiclient import Kube, KubeError, collection
from mtv_register.sandbox.mtv.conditions import Recorded
from mtv_register.sandbox.mtv.loop import ProviderLoop
from mtv_register.sandbox.mtv.probe import API_AGENT, CONTROLLER_AGENT, probe
from mtv_register.sandbox.mtv.reconcile import (
    LATEST,
    VERSIONS,
    ConnectionOutcome,
    ConnectionParams,
    ForkliftTiming,
    version,
)
from mtv_register.sandbox.mtv.webhook import WebhookServer
from mtv_register.sandbox.store import now_rfc3339

Obj = dict[str, Any]
Handler = Callable[[str, Obj], None]
READY_LINE = "forklift imitation ready"
PROVIDERS = ("forklift.konveyor.io", "v1beta1", "providers")
WATCH_SECONDS = 240  # each watch's timeoutSeconds: the server ends it, and it is watched again
RECONNECT_DELAY = 1.0
HOST_MARGIN = 60.0  # beyond Forklift's own delays, how long the host Provider may take
TIMINGS = {"forklift": ForkliftTiming(), "fast": ForkliftTiming.fast()}


def log(message: str) -> None:
    print(f"forklift imitation: {message}", file=sys.stderr, flush=True)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Informer:
    """A cache of one collection kept by list, then watch from the list's resourceVersion;
    listed again after a 410 or an ERROR event. `handler(type, obj)` follows every change."""

    def __init__(self, kube: Kube, path: str, handler: Handler, stop: threading.Event) -> None:
        self.kube, self.path, self.handler, self.stop = kube, path, handler, stop
        self.synced = threading.Event()
        self._items: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            found = self._items.get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def items(self) -> list[Obj]:
        with self._lock:
            return [copy.deepcopy(obj) for obj in self._items.values()]

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"informer {self.path}", daemon=True).start()

    def _run(self) -> None:
        version = ""
        while not self.stop.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
            except KubeError as err:
                log(f"{self.path}: {err}")
                if err.code == 410:
                    version = ""
                self.stop.wait(RECONNECT_DELAY)

    def _list(self) -> str:
        listing = self.kube.request("GET", self.path)
        fresh = {_key(obj): obj for obj in listing.get("items") or []}
        with self._lock:
            old, self._items = self._items, fresh
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self.handler("ADDED", obj)
            elif before["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self.handler("MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                self.handler("DELETED", obj)
        self.synced.set()
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, version: str) -> str:
        """Follow one watch: the resourceVersion to go on from ("" to list again)."""
        for event in self.kube.watch(self.path, version, WATCH_SECONDS):
            kind, obj = event.get("type", ""), event.get("object") or {}
            if kind == "ERROR":
                log(f"{self.path}: watch ended: {obj.get('message', '')} ({obj.get('code', 0)})")
                return ""
            version = _version(obj) or version
            if kind == "BOOKMARK":
                continue
            with self._lock:
                if kind == "DELETED":
                    self._items.pop(_key(obj), None)
                else:
                    self._items[_key(obj)] = obj
            self.handler(kind, obj)
            if self.stop.is_set():
                break
        return version


class _Cache:
    def __init__(self, providers: Informer, secrets: Informer) -> None:
        self._providers, self._secrets = providers, secrets

    def providers(self) -> list[Obj]:
        return self._providers.items()

    def provider(self, namespace: str, name: str) -> Obj | None:
        return self._providers.get(namespace, name)

    def secret(self, namespace: str, name: str) -> Obj | None:
        return self._secrets.get(namespace, name)


class RemoteForklift:
    """Forklift's provider controller and forklift-api's webhooks against `kube`."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str = "openshift-mtv",
        forklift_version: str | None = None,
        timing: ForkliftTiming | None = None,
        webhook_port: int = 0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.release = version(forklift_version)
        self.timing = timing or ForkliftTiming()
        self.stop_event = threading.Event()
        self.host_reconciled = threading.Event()
        self.providers = Informer(
            kube, collection(*PROVIDERS), self._provider_event, self.stop_event
        )
        self.secrets = Informer(
            kube, collection("", "v1", "secrets"), self._secret_event, self.stop_event
        )
        self.loop = ProviderLoop(
            "forklift-controller",
            _Cache(self.providers, self.secrets),
            self._write_status,
            lambda params: self._test(params, CONTROLLER_AGENT),
            release=self.release,
            timing=self.timing,
            record=self._record,
            log=log,
        )
        self.webhooks = WebhookServer(
            self.release, lambda params: self._test(params, API_AGENT), port=webhook_port, log=log
        )

    def start(self, timeout: float = 60.0) -> None:
        """Caches synced, webhooks served and registered, the first passes queued."""
        self.webhooks.start()
        deadline = time.monotonic() + timeout
        for informer in (self.secrets, self.providers):  # no pass before the Secrets are known
            informer.start()
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                raise KubeError(0, f"{informer.path} could not be listed within {timeout:g}s")
        self.register_webhooks()
        if self.providers.get(self.namespace, "host") is None:
            self.host_reconciled.set()  # no host Provider: nothing to wait for

    def host_wait(self) -> float:
        """How long the `host` Provider may take to get a verdict (Ready or a failure)."""
        return self.timing.inventory + self.timing.retry + HOST_MARGIN

    def stop(self) -> None:
        self.stop_event.set()
        self.loop.stop()
        self.webhooks.stop()

    def register_webhooks(self) -> None:
        for configuration in self.webhooks.configurations():
            plural = configuration["kind"].lower() + "s"
            where = collection("admissionregistration.k8s.io", "v1", plural)
            name = configuration["metadata"]["name"]
            try:
                current = self.kube.request("GET", f"{where}/{name}")
            except KubeError as err:
                if err.code != 404:
                    raise
                self.kube.request("POST", where, configuration)
                continue
            configuration["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.kube.request("PUT", f"{where}/{name}", configuration)

    # -- the loop's hands ----------------------------------------------------------------------

    def _provider_event(self, kind: str, provider: Obj) -> None:
        self.loop.provider_event(kind, provider)

    def _secret_event(self, kind: str, secret: Obj) -> None:
        del kind
        self.loop.secret_event(secret)

    def _test(self, params: ConnectionParams, agent: str) -> ConnectionOutcome:
        return probe(params, self.kube.endpoint, self.timing, agent)

    def _write_status(self, provider: Obj) -> int:
        namespace, name = _key(provider)
        path = f"{collection(*PROVIDERS, namespace)}/{name}/status"
        try:
            self.kube.request("PUT", path, provider)
        except KubeError as err:
            if err.code not in (404, 409):
                log(f"provider {namespace}/{name}: status write: {err}")
            return err.code or 503
        phase = (provider.get("status") or {}).get("phase")
        if (namespace, name) == (self.namespace, "host") and phase != "Staging":
            self.host_reconciled.set()
        return 200

    def _record(self, provider: Obj, recorded: tuple[Recorded, ...]) -> None:
        """Events on the Provider, as Forklift's recorder (component `provider`) posts them."""
        meta = provider["metadata"]
        now = now_rfc3339()
        for item in recorded:
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{time.time_ns():x}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": {
                    "apiVersion": "forklift.konveyor.io/v1beta1",
                    "kind": "Provider",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                    "resourceVersion": meta.get("resourceVersion", ""),
                },
                "reason": item.reason,
                "message": item.message,
                "type": item.type,
                "source": {"component": "provider"},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            try:
                self.kube.request("POST", collection("", "v1", "events", meta["namespace"]), event)
            except KubeError as err:
                log(f"provider {meta['namespace']}/{meta['name']}: event {item.reason}: {err}")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mtv_register.sandbox.mtv.remote",
        description="Run the sandbox's Forklift imitation against a real API server.",
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", required=True)
    parser.add_argument("--namespace", default="openshift-mtv", help="where `host` lives")
    parser.add_argument("--forklift-version", choices=list(VERSIONS), default=LATEST)
    parser.add_argument("--webhook-port", type=int, default=0, help="0: a free port")
    parser.add_argument(
        "--timing",
        choices=list(TIMINGS),
        default="forklift",
        help="forklift: Forklift's own delays; fast: the same order, short delays (tests)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = threading.Event()
    failed: list[str] = []
    forklifts: list[RemoteForklift] = []

    def bring_up() -> None:
        """In a thread of its own, so that a signal ends the process even while starting."""
        try:
            forklift = RemoteForklift(
                Kube(args.kubeconfig, args.context),
                namespace=args.namespace,
                forklift_version=args.forklift_version,
                timing=TIMINGS[args.timing],
                webhook_port=args.webhook_port,
            )
            forklifts.append(forklift)
            forklift.start()
        except Exception as err:  # KubeError, OSError, the kubeconfig loader's own errors
            failed.append(f"{type(err).__name__}: {err}")
        finally:
            started.set()

    threading.Thread(target=bring_up, name="start", daemon=True).start()
    deadline = 0.0
    while not stopping.wait(0.1):
        if failed:
            log(f"cannot start: {failed[0]}")
            return 1
        if not started.is_set():
            continue
        forklift = forklifts[0]
        deadline = deadline or time.monotonic() + forklift.host_wait()
        if forklift.host_reconciled.is_set():
            print(READY_LINE, flush=True)
            break
        if time.monotonic() > deadline:
            log(f"the host Provider in {args.namespace} was not reconciled in time")
            return 1
    while not stopping.wait(0.2):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
