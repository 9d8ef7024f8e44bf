"""The controllers a cluster runs: token, root CA publisher, namespace lifecycle, garbage
collection, and CRD establishment. They react to store events, off the request path."""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from mtv_register.sandbox import apistatus
from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.resources import ResourceType, type_from_crd
from mtv_register.sandbox.store import Event, now_rfc3339

Obj = dict[str, Any]
TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"
SA_UID = "kubernetes.io/service-account.uid"
ROOT_CA = "kube-root-ca.crt"


class Scheduler:
    """One worker thread running callbacks at their due time, in order."""

    def __init__(self, name: str) -> None:
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, task: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._counter), task))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, task = heapq.heappop(self._queue)
            try:
                task()
            except apistatus.ApiError:
                pass  # the object changed under the controller; its next event re-queues it
            except Exception:  # a controller bug must not kill the cluster
                import traceback

                traceback.print_exc()


class Controllers:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.scheduler = Scheduler(f"{cluster.name}-controllers")
        self._secrets = cluster.rtype("", "v1", "secrets")
        self._accounts = cluster.rtype("", "v1", "serviceaccounts")
        self._namespaces = cluster.rtype("", "v1", "namespaces")
        self._configmaps = cluster.rtype("", "v1", "configmaps")
        cluster.store.add_listener(self._on_event)
        cluster.after_delete = self._after_delete  # type: ignore[method-assign]
        cluster.after_delete_requested = self._after_delete_requested  # type: ignore[method-assign]
        cluster.orphan_dependents = self._orphan  # type: ignore[method-assign,assignment]

    def stop(self) -> None:
        self.scheduler.stop()

    def _on_event(self, event: Event) -> None:
        obj = event.obj
        kind = obj.get("kind")
        if kind == "Secret" and obj.get("type") == TOKEN_TYPE and event.type != "DELETED":
            if not (obj.get("data") or {}).get("token"):
                uid = obj["metadata"]["uid"]
                self.scheduler.call_later(
                    self.cluster.token_delay, lambda: self._fill_token(obj, uid)
                )
        elif kind == "ServiceAccount" and event.type == "DELETED":
            self.scheduler.call_later(0, lambda: self._revoke_tokens_of(obj))
        elif kind == "Namespace" and event.type == "ADDED":
            self.scheduler.call_later(0, lambda: self._populate_namespace(obj))
        elif (
            kind == "ConfigMap" and event.type == "DELETED" and (obj["metadata"]["name"] == ROOT_CA)
        ):
            self.scheduler.call_later(
                0, lambda: self._publish_root_ca(obj["metadata"]["namespace"])
            )
        elif kind == "CustomResourceDefinition":
            if event.type == "DELETED":
                self.cluster.registry.drop_crd(obj["metadata"]["name"])
            else:
                self._establish(obj)

    # -- token controller --------------------------------------------------------------------

    def _fill_token(self, secret: Obj, uid: str) -> None:
        meta = secret["metadata"]
        current = self.cluster.store.find(self._secrets, meta["namespace"], meta["name"])
        if current is None or current["metadata"]["uid"] != uid:
            return
        if (current.get("data") or {}).get("token"):
            return
        account_name = (current["metadata"].get("annotations") or {}).get(SA_NAME, "")
        account = self.cluster.store.find(self._accounts, meta["namespace"], account_name)
        if account is None:
            # As the real tokens controller: a token Secret for a missing account is deleted.
            self.cluster.store.delete(self._secrets, meta["namespace"], meta["name"], uid=uid)
            return
        token = self.cluster.tokens.add_service_account(
            meta["namespace"],
            account_name,
            account["metadata"]["uid"],
            secret_name=meta["name"],
            secret_uid=uid,
        )
        current.setdefault("data", {}).update(
            {
                "token": _b64(token),
                "ca.crt": _b64(self.cluster.ca.pem),
                "namespace": _b64(meta["namespace"]),
            }
        )
        current["metadata"].setdefault("annotations", {})[SA_UID] = account["metadata"]["uid"]
        self.cluster.store.update(self._secrets, current)
        # When each token was filled, so benchmarks can measure how soon a client notices.
        self.cluster.token_filled_at[(meta["namespace"], meta["name"])] = time.monotonic()

    def _revoke_tokens_of(self, account: Obj) -> None:
        namespace = account["metadata"]["namespace"]
        secrets, _ = self.cluster.store.list(self._secrets, namespace)
        for secret in secrets:
            annotations = secret["metadata"].get("annotations") or {}
            if (
                secret.get("type") == TOKEN_TYPE
                and annotations.get(SA_NAME) == (account["metadata"]["name"])
                and annotations.get(SA_UID, account["metadata"]["uid"])
                == account["metadata"]["uid"]
            ):
                self._delete_quietly(self._secrets, namespace, secret["metadata"]["name"])

    # -- namespaces and the root CA publisher ------------------------------------------------

    def _populate_namespace(self, namespace: Obj) -> None:
        name = namespace["metadata"]["name"]
        self._publish_root_ca(name)
        with contextlib.suppress(apistatus.ApiError):
            self.cluster.store.create(
                self._accounts, {"metadata": {"name": "default", "namespace": name}}
            )

    def _publish_root_ca(self, namespace: str) -> None:
        ns = self.cluster.store.find(self._namespaces, "", namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        with contextlib.suppress(apistatus.ApiError):
            self.cluster.store.create(
                self._configmaps,
                {
                    "metadata": {
                        "name": ROOT_CA,
                        "namespace": namespace,
                        "annotations": {
                            "kubernetes.io/description": (
                                "Contains a CA bundle that can be used to verify the "
                                "kube-apiserver when using internal endpoints such as the "
                                "internal service IP or kubernetes.default.svc. No other usage "
                                "is guaranteed across distributions of Kubernetes clusters."
                            )
                        },
                    },
                    "data": {"ca.crt": self.cluster.ca.pem},
                },
            )

    def _after_delete_requested(self, rtype: ResourceType, obj: Obj, policy: str) -> None:
        if rtype.kind == "Namespace":
            self.scheduler.call_later(
                self.cluster.namespace_termination,
                lambda: self._terminate_namespace(obj["metadata"]["name"]),
            )

    def _terminate_namespace(self, name: str) -> None:
        for rtype in self.cluster.registry.all():
            if not rtype.namespaced or "list" not in rtype.verbs:
                continue
            items, _ = self.cluster.store.list(rtype, name)
            for item in items:
                self._delete_quietly(rtype, name, item["metadata"]["name"])
        self._delete_quietly(self._namespaces, "", name)

    # -- garbage collector ---------------------------------------------------------------------

    def _after_delete(self, rtype: ResourceType, obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        self.scheduler.call_later(0, lambda: self._collect(uid))

    def _collect(self, owner_uid: str) -> None:
        live = {o["metadata"]["uid"] for _, o in self.cluster.store.all_objects()}
        for key, dependent in self.cluster.store.all_objects():
            refs = dependent["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in refs):
                continue
            if any(ref.get("uid") in live for ref in refs):
                continue  # another owner still exists
            rtype = self.cluster.registry.by_key(key)
            if rtype is not None:
                meta = dependent["metadata"]
                self._delete_quietly(rtype, meta.get("namespace", ""), meta["name"])

    def _orphan(self, owner_uid: str) -> None:
        for key, dependent in self.cluster.store.all_objects():
            refs = dependent["metadata"].get("ownerReferences") or []
            kept = [ref for ref in refs if ref.get("uid") != owner_uid]
            if len(kept) != len(refs):
                rtype = self.cluster.registry.by_key(key)
                if rtype is None:
                    continue
                if kept:
                    dependent["metadata"]["ownerReferences"] = kept
                else:
                    dependent["metadata"].pop("ownerReferences")
                self.cluster.store.update(rtype, dependent)

    def _delete_quietly(self, rtype: ResourceType, namespace: str, name: str) -> None:
        try:
            deleted = self.cluster.store.delete(rtype, namespace, name)
        except apistatus.ApiError:
            return
        self._after_delete(rtype, deleted)

    # -- CRDs --------------------------------------------------------------------------------

    def _establish(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        self.cluster.registry.set_crd(name, type_from_crd(crd))
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" for c in conditions):
            return
        crd_type = self.cluster.rtype("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        now = now_rfc3339()
        crd["status"] = {
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": [
                v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")
            ],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
        }
        crd["metadata"].pop("resourceVersion", None)
        self.scheduler.call_later(0, lambda: self._write_status(crd_type, crd))

    def _write_status(self, rtype: ResourceType, obj: Obj) -> None:
        self.cluster.store.update(rtype, obj, subresource="status")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
