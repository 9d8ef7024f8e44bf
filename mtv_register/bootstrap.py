"""On one cluster being registered: the seed's steps 1-7, idempotent, with drift repaired.

ClusterRole (the seed's rules), namespace, ServiceAccount, ClusterRoleBinding named after it,
and the long-lived token Secret, or the Role that lets the account request bound tokens; then
the token (`tokens`). Every step reads first and writes only what differs, so a second run makes
no mutating request. Its reverse is `teardown`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from mtv_register import deadline as run_deadline
from mtv_register import errors, manifests, naming
from mtv_register.kube import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    NAMESPACE,
    SECRET,
    SERVICE_ACCOUNT,
    AlreadyExists,
    Kind,
    Kube,
)
from mtv_register.records import Change, Report
from mtv_register.teardown import is_managed, remove_submariner, wait_namespace_gone
from mtv_register.timing import AGAIN, Again, retry_on_conflict
from mtv_register.tokens import (
    DEFAULT_TOKEN_TIMEOUT,
    IssuedToken,
    create_token_secret,
    request_bound_token,
    wait_for_token,
)

Obj = dict[str, Any]


UNREAD: Final = object()  # `ensure` reads the object itself


@dataclass(frozen=True)
class RemoteSpec:
    """What to create on a cluster being registered; names default to the documented ones."""

    service_account: str = naming.DEFAULT_SERVICE_ACCOUNT
    namespace: str = naming.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
    role_name: str = naming.DEFAULT_ROLE_NAME
    existing_role: bool = False  # --cluster-role: bind a role that exists, create none
    token_type: str = "secret"  # "secret": long-lived token Secret; "bound": TokenRequest
    token_ttl: int = 86_400  # seconds, for bound tokens
    # A Submariner destination: an additional role lets the account manage ServiceExports
    # (True), or no longer (False: removed); None leaves it as it is.
    submariner: bool | None = None

    @property
    def token_secret(self) -> str:
        return naming.token_secret_name(self.service_account)

    @property
    def bound(self) -> bool:
        return self.token_type == "bound"

    def manifests(self) -> list[Obj]:
        objects = [] if self.existing_role else [manifests.cluster_role(self.role_name)]
        token = (
            [
                manifests.token_requester_role(self.service_account, self.namespace),
                manifests.token_requester_binding(self.service_account, self.namespace),
            ]
            if self.bound
            else [manifests.token_secret(self.service_account, self.namespace)]
        )
        submariner = (
            [
                manifests.submariner_role(self.role_name),
                manifests.submariner_binding(self.service_account, self.namespace, self.role_name),
            ]
            if self.submariner
            else []
        )
        return [
            *objects,
            manifests.namespace(self.namespace),
            manifests.service_account(self.service_account, self.namespace),
            manifests.cluster_role_binding(self.service_account, self.namespace, self.role_name),
            *submariner,
            *token,
        ]


def ensure(
    kube: Kube,
    kind: Kind,
    desired: Obj,
    report: Report,
    *,
    same: Callable[[Obj, Obj], bool],
    merge: Callable[[Obj, Obj], Obj] | None = None,
    current: Obj | object | None = UNREAD,
) -> Obj:
    """Create `desired`, or bring the existing object to it; report what was done.

    `current` is the object as already read (None: known to be absent, so it is created
    without a read first; a lost race then falls back to reading)."""
    meta = desired["metadata"]
    name, namespace = meta["name"], meta.get("namespace")

    def attempt(number: int) -> Obj | Again:
        if number == 0 and current is not UNREAD:
            existing = current if isinstance(current, dict) else None
        else:
            existing = kube.get(kind, name, namespace)
        if existing is None:
            try:
                created = kube.create(kind, desired)
            except AlreadyExists:
                return AGAIN  # someone else created it meanwhile: compare with theirs
            report(Change(kube.context, kind.kind, name, namespace or "", "created"))
            return created
        if same(existing, desired) or merge is None:
            report(Change(kube.context, kind.kind, name, namespace or "", "unchanged"))
            return existing
        updated = kube.replace(kind, merge(existing, desired))
        report(Change(kube.context, kind.kind, name, namespace or "", "updated"))
        return updated

    return retry_on_conflict(
        kube.timing,
        attempt,
        what=f'{kind.kind} "{name}"',
        context=kube.context,
        obj=(kind.kind, namespace or "", name),
    )


def _labels_kept(existing: Obj, desired: Obj) -> Obj:
    merged = dict(existing)
    meta = dict(existing["metadata"])
    wanted = dict(desired["metadata"].get("labels") or {})
    if not is_managed(existing):
        wanted.pop(naming.MANAGED_BY_LABEL, None)  # never claim what someone else made
    meta["labels"] = {**(meta.get("labels") or {}), **wanted}
    merged["metadata"] = meta
    return merged


def _role_same(existing: Obj, desired: Obj) -> bool:
    return existing.get("rules") == desired["rules"]


def _role_merge(existing: Obj, desired: Obj) -> Obj:
    merged = _labels_kept(existing, desired)
    merged["rules"] = desired["rules"]
    merged.pop("aggregationRule", None)
    return merged


def _binding_same(existing: Obj, desired: Obj) -> bool:
    return existing.get("roleRef") == desired["roleRef"] and (
        existing.get("subjects") == desired["subjects"]
    )


def _binding_merge(existing: Obj, desired: Obj) -> Obj:
    merged = _labels_kept(existing, desired)
    merged["subjects"] = desired["subjects"]
    return merged


def _token_secret_same(existing: Obj, desired: Obj) -> bool:
    annotations = existing["metadata"].get("annotations") or {}
    return (
        existing.get("type") == desired["type"]
        and annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION)
        == desired["metadata"]["annotations"][naming.SERVICE_ACCOUNT_NAME_ANNOTATION]
    )


def bootstrap(
    kube: Kube,
    spec: RemoteSpec,
    report: Report,
    *,
    timeout: float = DEFAULT_TOKEN_TIMEOUT,
    reuse: IssuedToken | None = None,
) -> IssuedToken:
    """Ensure every object of `spec` on the cluster and return its filled token."""
    deadline = time.monotonic() + timeout
    # A cluster without the ClusterRole is taken as fresh: the other objects are created
    # without reading them first (a create that meets AlreadyExists reads and compares).
    role = kube.get(CLUSTER_ROLE, spec.role_name)
    fresh = role is None and not spec.existing_role
    if spec.existing_role and role is None:
        raise errors.PreflightError(
            f'ClusterRole "{spec.role_name}" does not exist on {kube.context}',
            fix="create it first, or drop --cluster-role to use the seed's role",
        )
    unread: Obj | object | None = None if fresh else UNREAD

    def cluster_role() -> None:
        ensure(
            kube,
            CLUSTER_ROLE,
            manifests.cluster_role(spec.role_name),
            report,
            same=_role_same,
            merge=_role_merge,
            current=role,
        )

    # Each wave needs only the waves before it (the namespace before what lives in it, the
    # ClusterRole before a binding to it): a cluster far away costs a round trip per wave, not
    # per object. The token Secret comes last, after its ServiceAccount.
    _together(
        *([] if spec.existing_role else [cluster_role]),
        lambda: _ensure_namespace(kube, spec, report, unread, deadline),
    )
    _together(
        lambda: ensure(
            kube,
            SERVICE_ACCOUNT,
            manifests.service_account(spec.service_account, spec.namespace),
            report,
            same=lambda e, d: True,
            current=unread,
        ),
        lambda: _ensure_binding(kube, spec, report, fresh=fresh),
        *([] if spec.submariner is None else [lambda: _submariner(kube, spec, report, unread)]),
    )
    if spec.bound:
        return _bound_token(kube, spec, report, unread, reuse=reuse)
    # The token the Provider holds (the caller proves it still works), unless its token Secret
    # is gone: that revoked it, though a real API server keeps accepting it for up to 10 s from
    # its token cache, so a proof alone would keep a dying token.
    if reuse is not None:
        if kube.get(SECRET, reuse.secret_name, reuse.namespace) is not None:
            return reuse
        # Its token Secret was deleted, perhaps to revoke a leaked token. A real token controller
        # signs a legacy token over the account and the Secret's name alone, so the same name
        # would bring that very token back: the next one is issued under a new name.
        created = create_token_secret(
            kube, spec.service_account, spec.namespace, replaces=reuse.secret_name, report=report
        )
        return wait_for_token(kube, created, max(0.0, deadline - time.monotonic()))
    secret = ensure(
        kube,
        SECRET,
        manifests.token_secret(spec.service_account, spec.namespace),
        report,
        same=_token_secret_same,
        current=unread,
    )
    if not _token_secret_same(secret, manifests.token_secret(spec.service_account, spec.namespace)):
        raise errors.PreflightError(
            f'Secret "{spec.namespace}/{spec.token_secret}" on {kube.context} exists but is not '
            f'a token Secret of serviceaccount "{spec.service_account}"',
            fix="delete it or choose another --service-account",
        )
    return wait_for_token(kube, secret, max(0.0, deadline - time.monotonic()))


def _together(*steps: Callable[[], object]) -> None:
    """Run independent steps at once; the first failure is raised once all have ended."""
    if len(steps) == 1:
        steps[0]()
        return
    with run_deadline.pool(len(steps)) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()


def _ensure_namespace(
    kube: Kube, spec: RemoteSpec, report: Report, unread: Obj | object | None, deadline: float
) -> None:
    def made(current: Obj | object | None) -> Obj:
        wanted = manifests.namespace(spec.namespace)
        return ensure(kube, NAMESPACE, wanted, report, same=lambda e, d: True, current=current)

    if made(unread)["metadata"].get("deletionTimestamp"):
        # An earlier unregister's namespace, still terminating: nothing can be created in it
        # until the namespace controller has removed it.
        wait_namespace_gone(kube, spec.namespace, max(0.0, deadline - time.monotonic()))
        made(None)


def _submariner(kube: Kube, spec: RemoteSpec, report: Report, unread: Obj | object | None) -> None:
    """The Submariner role and its binding (`spec.submariner`), or their removal (False)."""
    if not spec.submariner:
        remove_submariner(kube, spec, report)
        return
    for kind, desired, same, merge in (
        (CLUSTER_ROLE, manifests.submariner_role(spec.role_name), _role_same, _role_merge),
        (
            CLUSTER_ROLE_BINDING,
            manifests.submariner_binding(spec.service_account, spec.namespace, spec.role_name),
            _binding_same,
            _binding_merge,
        ),
    ):
        ensure(kube, kind, desired, report, same=same, merge=merge, current=unread)


def _ensure_binding(kube: Kube, spec: RemoteSpec, report: Report, *, fresh: bool) -> None:
    desired = manifests.cluster_role_binding(spec.service_account, spec.namespace, spec.role_name)
    existing = None if fresh else kube.get(CLUSTER_ROLE_BINDING, spec.service_account)
    if existing is not None and existing.get("roleRef") != desired["roleRef"]:
        # roleRef is immutable: the binding is replaced, as `kubectl auth reconcile` does.
        kube.delete(CLUSTER_ROLE_BINDING, spec.service_account, uid=existing["metadata"]["uid"])
        kube.create(CLUSTER_ROLE_BINDING, desired)
        report(Change(kube.context, "ClusterRoleBinding", spec.service_account, "", "replaced"))
        return
    ensure(
        kube,
        CLUSTER_ROLE_BINDING,
        desired,
        report,
        same=_binding_same,
        merge=_binding_merge,
        current=existing,
    )


def _bound_token(
    kube: Kube,
    spec: RemoteSpec,
    report: Report,
    unread: Obj | object | None,
    *,
    reuse: IssuedToken | None,
) -> IssuedToken:
    """A bound token from the TokenRequest API, and the Role that lets the account request the
    next one itself. `reuse`: the token the Provider holds, kept while it is fresh enough."""
    from mtv_register.kube import ROLE, ROLE_BINDING

    ensure(
        kube,
        ROLE,
        manifests.token_requester_role(spec.service_account, spec.namespace),
        report,
        same=lambda e, d: e.get("rules") == d["rules"],
        merge=_role_merge,
        current=unread,
    )
    ensure(
        kube,
        ROLE_BINDING,
        manifests.token_requester_binding(spec.service_account, spec.namespace),
        report,
        same=_binding_same,
        merge=_binding_merge,
        current=unread,
    )
    if reuse is not None:
        return reuse
    return request_bound_token(kube, spec.namespace, spec.service_account, spec.token_ttl, report)
