"""On one registered cluster, the reverse of `bootstrap`: the one place its objects are removed.

Only what carries the managed-by label is deleted; a ClusterRole still bound by someone else and a
namespace still holding other objects are kept, and said so. A deleted namespace is waited for
until the namespace controller has removed it (also by `bootstrap`, when it meets one that is
still terminating).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mtv_register import errors, naming
from mtv_register.kube import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    NAMESPACE,
    SECRET,
    SERVICE_ACCOUNT,
    Kind,
    Kube,
)
from mtv_register.records import Change, Report
from mtv_register.timing import Expired, poll_until
from mtv_register.tokens import DEFAULT_TOKEN_TIMEOUT

if TYPE_CHECKING:
    from mtv_register.bootstrap import RemoteSpec

Obj = dict[str, Any]


def is_managed(obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY


def teardown(
    kube: Kube, spec: RemoteSpec, report: Report, *, timeout: float = DEFAULT_TOKEN_TIMEOUT
) -> None:
    """Remove what `bootstrap` created, and only what carries the managed-by label; a deleted
    namespace is waited for until the namespace controller has removed it."""
    deadline = time.monotonic() + timeout
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    secrets = kube.list(SECRET, spec.namespace, label_selector=selector).get("items", [])
    for secret in secrets:
        annotations = secret["metadata"].get("annotations") or {}
        if annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION) == spec.service_account:
            _delete(kube, SECRET, secret, report)
    from mtv_register.kube import ROLE, ROLE_BINDING

    requester = naming.token_requester_name(spec.service_account)
    for kind, name, namespace in (
        (ROLE_BINDING, requester, spec.namespace),
        (ROLE, requester, spec.namespace),
        (CLUSTER_ROLE_BINDING, spec.service_account, None),
        (SERVICE_ACCOUNT, spec.service_account, spec.namespace),
    ):
        obj = kube.get(kind, name, namespace)
        if obj is not None:
            _delete(kube, kind, obj, report)
    remove_submariner(kube, spec, report)
    if not spec.existing_role:
        _delete_role_if_unbound(kube, spec.role_name, report)
    if _delete_namespace_if_empty(kube, spec.namespace, report):
        wait_namespace_gone(kube, spec.namespace, max(0.0, deadline - time.monotonic()))


def remove_token_secrets(kube: Kube, spec: RemoteSpec, report: Report) -> None:
    """Delete the account's managed long-lived token Secrets, which revokes their tokens: once a
    bound token is proven, a token Secret left from a `--token-type secret` registration is a
    credential nothing uses that would still work."""
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    for secret in kube.list(SECRET, spec.namespace, label_selector=selector).get("items", []):
        annotations = secret["metadata"].get("annotations") or {}
        if annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION) == spec.service_account:
            _delete(kube, SECRET, secret, report)


def remove_submariner(kube: Kube, spec: RemoteSpec, report: Report) -> None:
    binding = kube.get(CLUSTER_ROLE_BINDING, spec.service_account + naming.SUBMARINER_SUFFIX)
    if binding is not None:
        _delete(kube, CLUSTER_ROLE_BINDING, binding, report)
        _delete_role_if_unbound(kube, binding["roleRef"]["name"], report)


def wait_namespace_gone(kube: Kube, name: str, timeout: float) -> None:
    """Until the namespace is gone: a real one stays Terminating while its controller empties
    it (about 5 s on an idle cluster)."""

    def gone() -> None:
        if kube.get(NAMESPACE, name) is not None:
            raise _NamespacePresent()

    try:
        poll_until(
            gone,
            timeout=timeout,
            wait=kube.timing.namespace_poll,
            max_wait=kube.timing.namespace_poll_max,
            pending=(_NamespacePresent,),
        )
    except Expired:
        raise errors.WaitTimeout(
            f'namespace "{name}" on {kube.context} was still terminating after {timeout:.1f}s',
            fix="check the namespace's finalizers and the kube-controller-manager, or raise "
            "--timeout; a re-run carries on from here",
        ) from None


class _NamespacePresent(Exception):
    """The namespace still exists (terminating)."""


def _delete(kube: Kube, kind: Kind, obj: Obj, report: Report) -> None:
    meta = obj["metadata"]
    if not is_managed(obj):
        report(
            Change(
                kube.context,
                kind.kind,
                meta["name"],
                meta.get("namespace", ""),
                "kept (not managed by mtv-register)",
            )
        )
        return
    if kube.delete(kind, meta["name"], meta.get("namespace"), uid=meta["uid"]):
        report(Change(kube.context, kind.kind, meta["name"], meta.get("namespace", ""), "deleted"))


def _delete_role_if_unbound(kube: Kube, role_name: str, report: Report) -> None:
    from mtv_register.kube import ROLE_BINDING

    role = kube.get(CLUSTER_ROLE, role_name)
    if role is None:
        return
    bindings = kube.list(CLUSTER_ROLE_BINDING).get("items", []) + kube.list(ROLE_BINDING).get(
        "items", []
    )
    users = [
        b["metadata"]["name"]
        for b in bindings
        if (b.get("roleRef") or {}).get("kind") == "ClusterRole"
        and b["roleRef"].get("name") == role_name
    ]
    if users:
        report(
            Change(
                kube.context,
                "ClusterRole",
                role_name,
                "",
                f"kept (still bound by {', '.join(sorted(users))})",
            )
        )
        return
    _delete(kube, CLUSTER_ROLE, role, report)


def _delete_namespace_if_empty(kube: Kube, name: str, report: Report) -> bool:
    """True when the namespace was deleted (or was already terminating)."""
    from mtv_register.kube import CONFIG_MAP

    namespace = kube.get(NAMESPACE, name)
    if namespace is None or not is_managed(namespace):
        return False
    if namespace["metadata"].get("deletionTimestamp"):
        return True
    leftovers = [
        f"{kind.plural}/{item['metadata']['name']}"
        for kind, defaults in (
            (SERVICE_ACCOUNT, {"default"}),
            (SECRET, set()),
            (CONFIG_MAP, {"kube-root-ca.crt"}),
        )
        for item in kube.list(kind, name).get("items", [])
        if item["metadata"]["name"] not in defaults
    ]
    if leftovers:
        report(
            Change(kube.context, "Namespace", name, "", f"kept (holds {', '.join(leftovers[:3])})")
        )
        return False
    _delete(kube, NAMESPACE, namespace, report)
    return True
