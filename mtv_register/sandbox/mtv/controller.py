"""Forklift on the sandbox's MTV host, in-process: the provider controller and forklift-api's
provider-Secret webhooks, driven by the cluster's store (Driver A).

The controller is `loop.ProviderLoop` over the store (Forklift's informer cache), fed by
the store's listener (its watches); the webhooks hang in the cluster's admission chain, where the
real API server would call them. `remote` runs the same loop against a real API server.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from mtv_register.sandbox import apistatus
from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.mtv import admission
from mtv_register.sandbox.mtv.conditions import Recorded
from mtv_register.sandbox.mtv.loop import ProviderLoop
from mtv_register.sandbox.mtv.probe import (
    API_AGENT,
    CONTROLLER_AGENT,
    TEST_RESOURCES,
    Endpoint,
    probe,
)
from mtv_register.sandbox.mtv.profile import MTV_NAMESPACE
from mtv_register.sandbox.mtv.reconcile import (
    Collector,
    ConnectionOutcome,
    ConnectionParams,
    ForkliftTiming,
    version,
)
from mtv_register.sandbox.patch import JSON_PATCH, apply_patch
from mtv_register.sandbox.rbac import UserInfo
from mtv_register.sandbox.resources import ResourceType
from mtv_register.sandbox.server import ApiServer
from mtv_register.sandbox.store import Event

Obj = dict[str, Any]
FORKLIFT_USER_AGENT = CONTROLLER_AGENT
WEBHOOK = admission.VALIDATING_WEBHOOK
CONTROLLER_USER = "system:serviceaccount:openshift-mtv:forklift-controller"
API_USER = "system:serviceaccount:openshift-mtv:forklift-api"
# The paths of the six lists (with the sandbox's plurals), for tests that grant exactly them.
CONNECTION_TEST_PATHS = tuple(
    f"/api/{v}/{n}" if not g else f"/apis/{g}/{v}/{n}" for n, g, v, _ in TEST_RESOURCES
)


def connection_test(
    url: str, token: str, ca_pem: str, insecure: bool, *, timing: ForkliftTiming | None = None
) -> ConnectionOutcome:
    """Forklift's test of these credentials (`ok`, `message`), outside any controller."""
    params = ConnectionParams(url, token, ca_pem or None, insecure)
    return probe(params, _no_host, timing or ForkliftTiming(), CONTROLLER_AGENT)


def _no_host() -> Endpoint:
    raise LookupError("no controller credentials outside a controller")


class _StoreCache:
    """The store as Forklift's informer cache."""

    def __init__(self, cluster: Cluster, providers: ResourceType, secrets: ResourceType) -> None:
        self._store, self._providers, self._secrets = cluster.store, providers, secrets

    def providers(self) -> list[Obj]:
        return self._store.list(self._providers)[0]

    def provider(self, namespace: str, name: str) -> Obj | None:
        return self._store.find(self._providers, namespace, name)

    def secret(self, namespace: str, name: str) -> Obj | None:
        return self._store.find(self._secrets, namespace, name)


class ForkliftController:
    def __init__(
        self,
        cluster: Cluster,
        server: ApiServer,
        *,
        forklift_version: str | None = None,
        timing: ForkliftTiming | None = None,
    ) -> None:
        self.cluster = cluster
        self.release = version(forklift_version)
        self.timing = timing or ForkliftTiming()
        self.providers = cluster.rtype("forklift.konveyor.io", "v1beta1", "providers")
        self.secrets = cluster.rtype("", "v1", "secrets")
        self.events: list[Obj] = []  # Forklift's core Events: kept here, not written to the API
        # forklift-api's Pod gone: the API server cannot call either webhook (a test's switch).
        self.api_down = False
        self._server = server
        groups = ("system:serviceaccounts", "system:masters")
        self._tokens = {
            CONTROLLER_AGENT: cluster.add_user(CONTROLLER_USER, groups),
            API_AGENT: cluster.add_user(API_USER, groups),
        }
        self.loop = ProviderLoop(
            f"{cluster.name}-forklift",
            _StoreCache(cluster, self.providers, self.secrets),
            self._write_status,
            lambda params: self._test(params, CONTROLLER_AGENT),
            release=self.release,
            timing=self.timing,
            record=self._record,
        )
        cluster.store.add_listener(self._on_event)
        cluster.admission_hooks.append(self._admit)

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()

    def settle(self, timeout: float = 10.0) -> bool:
        """True once every pass asked for has run, follow-ups included (`ProviderLoop.settle`)."""
        return self.loop.settle(timeout)

    def reconcile(self, namespace: str, name: str, *, force: bool = True) -> None:
        """One pass now, in the caller's thread, as a Secret event would cause (`force` is
        kept for callers: a pass always runs)."""
        del force
        self.loop.reconcile_now(namespace, name)

    def collector(self, namespace: str, name: str) -> Collector | None:
        return self.loop.collector(namespace, name)

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- the loop's hands ----------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.rtype_key == self.providers.key:
            self.loop.provider_event(event.type, event.obj)
        elif event.rtype_key == self.secrets.key:
            self.loop.secret_event(event.obj)

    def _write_status(self, provider: Obj) -> int:
        try:
            self.cluster.store.update(self.providers, provider, subresource="status")
        except apistatus.ApiError as err:
            return err.code
        return 200

    def _test(self, params: ConnectionParams, agent: str) -> ConnectionOutcome:
        return probe(params, lambda: self._own_endpoint(agent), self.timing, agent)

    def _own_endpoint(self, agent: str) -> Endpoint:
        context = ssl.create_default_context(cadata=self._server.serving_ca.pem)
        return Endpoint(self._server.url, self._tokens[agent], context)

    def _record(self, provider: Obj, recorded: tuple[Recorded, ...]) -> None:
        meta = provider["metadata"]
        for item in recorded:
            self.events.append(
                {
                    "involvedObject": {
                        "kind": "Provider",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta.get("uid", ""),
                    },
                    "type": item.type,
                    "reason": item.reason,
                    "message": item.message,
                    "source": {"component": "provider"},
                }
            )

    # -- the webhooks, as the API server calls them ------------------------------------------

    def _admit(
        self, operation: str, rtype: ResourceType, obj: Obj, old: Obj | None, user: UserInfo
    ) -> None:
        if rtype.key != self.secrets.key or not admission.selected(obj, old):
            return
        if self.api_down:
            raise _call_failed(
                admission.MUTATING_WEBHOOK,
                admission.MUTATE_PATH,
                "dial tcp 172.30.0.10:443: connect: connection refused",
            )
        request = {"operation": operation.upper(), "object": obj, "oldObject": old}
        mutated = admission.mutate(request)
        if mutated is None:  # forklift-api panicked: the connection closes with no answer
            raise _call_failed(admission.MUTATING_WEBHOOK, admission.MUTATE_PATH, "EOF")
        if not mutated["allowed"]:
            raise apistatus.ApiError(*_denied(admission.MUTATING_WEBHOOK, mutated))
        if mutated.get("patch"):
            patched = apply_patch(obj, base64.b64decode(mutated["patch"]), JSON_PATCH)
            obj.clear()
            obj.update(patched)
        answers: list[Obj] = []

        def call() -> None:
            answer, _ = admission.validate(
                request, self.release, lambda params: self._test(params, API_AGENT)
            )
            answers.append(answer)

        caller = threading.Thread(target=call, name="forklift-api", daemon=True)
        caller.start()
        caller.join(self.timing.webhook_timeout)
        if not answers:
            raise _call_failed(
                admission.VALIDATING_WEBHOOK, admission.VALIDATE_PATH, "context deadline exceeded"
            )
        if not answers[0]["allowed"]:
            raise apistatus.ApiError(*_denied(admission.VALIDATING_WEBHOOK, answers[0]))


def _call_failed(webhook: str, path: str, cause: str) -> apistatus.ApiError:
    message = admission.call_failure(webhook, MTV_NAMESPACE, path, cause)
    # apierrors.NewInternalError: the error itself is the one cause.
    cause_text = message.removeprefix("Internal error occurred: ")
    return apistatus.ApiError(
        500, "InternalError", message, details={"causes": [{"message": cause_text}]}
    )


def _denied(webhook: str, response: Obj) -> tuple[int, str, str]:
    code, message = admission.denial(webhook, response)
    return code, "", message
