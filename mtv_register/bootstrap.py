"""On one cluster being registered: the seed's steps 1-7, idempotent, with drift repaired.

ClusterRole (the seed's rules), namespace, ServiceAccount, ClusterRoleBinding named after it,
and the long-lived token Secret; then the wait until the token controller fills it. Every step
reads first and writes only what differs, so a second run makes no mutating request.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from mtv_register.redaction import remember
from mtv_register.timing import AGAIN, Again, Expired, Transient, poll_until, retry_on_conflict

Obj = dict[str, Any]
DEFAULT_TOKEN_TIMEOUT = 120.0


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


@dataclass
class IssuedToken:
    """A filled token Secret; `token` never appears in repr, logs or output."""

    secret_name: str
    namespace: str
    service_account: str
    created: str
    token: str = field(repr=False)
    expires: str = ""  # bound tokens: when the API server stops accepting it


def _managed(obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY


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
        kube.timing, attempt, what=f'{kind.kind} "{name}"', context=kube.context
    )


def _labels_kept(existing: Obj, desired: Obj) -> Obj:
    merged = dict(existing)
    meta = dict(existing["metadata"])
    wanted = dict(desired["metadata"].get("labels") or {})
    if not _managed(existing):
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
    if spec.existing_role:
        if role is None:
            raise errors.PreflightError(
                f'ClusterRole "{spec.role_name}" does not exist on {kube.context}',
                fix="create it first, or drop --cluster-role to use the seed's role",
            )
    else:
        ensure(
            kube,
            CLUSTER_ROLE,
            manifests.cluster_role(spec.role_name),
            report,
            same=_role_same,
            merge=_role_merge,
            current=role,
        )
    unread: Obj | object | None = None if fresh else UNREAD
    namespace = ensure(
        kube,
        NAMESPACE,
        manifests.namespace(spec.namespace),
        report,
        same=lambda e, d: True,
        current=unread,
    )
    if namespace["metadata"].get("deletionTimestamp"):
        # An earlier unregister's namespace, still terminating: nothing can be created in it
        # until the namespace controller has removed it.
        wait_namespace_gone(kube, spec.namespace, max(0.0, deadline - time.monotonic()))
        ensure(
            kube,
            NAMESPACE,
            manifests.namespace(spec.namespace),
            report,
            same=lambda e, d: True,
            current=None,
        )
    ensure(
        kube,
        SERVICE_ACCOUNT,
        manifests.service_account(spec.service_account, spec.namespace),
        report,
        same=lambda e, d: True,
        current=unread,
    )
    _ensure_binding(kube, spec, report, fresh=fresh)
    if spec.submariner:
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
    elif spec.submariner is False:
        _remove_submariner(kube, spec, report)
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


def create_token_secret(
    remote: Kube, service_account: str, namespace: str, *, replaces: str, report: Report
) -> Obj:
    """A new token Secret under a name chosen here, not by generateName: if the answer to the
    create is lost, the retry meets AlreadyExists on this very Secret instead of making a
    second, orphaned one. It records the Secret it `replaces`, for rotation's sweep, and
    reports the creation."""
    name = f"{naming.token_secret_generate_name(service_account)}{_suffix()}"
    desired = manifests.token_secret(service_account, namespace, name=name)
    desired["metadata"]["annotations"][naming.TOKEN_REPLACES_ANNOTATION] = replaces
    try:
        created = remote.create(SECRET, desired)
    except AlreadyExists:
        existing = remote.get(SECRET, name, namespace)
        annotations = (existing or {}).get("metadata", {}).get("annotations") or {}
        if (
            existing is None
            or annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION) != service_account
        ):
            raise
        created = existing
    report(Change(remote.context, "Secret", name, namespace, "created"))
    return created


def _suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName picks
    return "".join(secrets.choice(alphabet) for _ in range(5))


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


class _TokenPending(Exception):
    pass


def _token_of(secret: Obj) -> str:
    raw = (secret.get("data") or {}).get("token", "")
    return remember(base64.b64decode(raw).decode()) if raw else ""


def wait_for_token(kube: Kube, secret: Obj, timeout: float) -> IssuedToken:
    """Wait until the token controller fills `secret`: a watch, re-opened by tenacity when it
    ends or breaks, under one deadline."""
    meta = secret["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    state = {"secret": secret}

    def filled(obj: Obj) -> IssuedToken | None:
        token = _token_of(obj)
        if not token:
            return None
        annotations = obj["metadata"].get("annotations") or {}
        return IssuedToken(
            name,
            namespace,
            annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION, ""),
            obj["metadata"].get("creationTimestamp", ""),
            token,
        )

    def attempt() -> IssuedToken:
        current = state["secret"]
        found = filled(current)
        if found:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TokenPending()
        for event in _events(kube, namespace, name, current, remaining):
            found = filled(event)
            if found:
                return found
        raise _TokenPending()

    deadline = time.monotonic() + timeout
    try:
        return poll_until(
            attempt,
            timeout=timeout,
            wait=kube.timing.token_poll,
            pending=(_TokenPending, Transient),
        )
    except Expired:
        pass
    except errors.WaitTimeout:
        pass  # the run's deadline, met by a request of this wait: said as the wait's own
    if run_deadline.cancelled():
        raise run_deadline.Cancelled(f'interrupted while waiting for token Secret "{name}"')
    raise errors.WaitTimeout(
        f'the token Secret "{name}" in namespace "{namespace}" on {kube.context} was not filled '
        f"within {timeout:.1f}s",  # the rest of the run's deadline, rounded
        fix="check that the cluster's token controller (kube-controller-manager) is running, "
        "or raise --timeout",
    )


def _events(kube: Kube, namespace: str, name: str, current: Obj, remaining: float) -> Iterator[Obj]:
    for event in kube.watch(
        SECRET,
        namespace,
        name=name,
        resource_version=current["metadata"]["resourceVersion"],
        timeout=remaining,
    ):
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            # 410 Expired and friends: start again from a fresh read.
            fresh = kube.get(SECRET, name, namespace)
            if fresh is None:
                break
            current.clear()
            current.update(fresh)
            yield fresh
            return
        if kind == "DELETED":
            raise errors.PreflightError(
                f'the token Secret "{namespace}/{name}" on {kube.context} was deleted while '
                "waiting for its token (did the token controller find no ServiceAccount?)",
                fix="re-run; if it repeats, check the ServiceAccount exists",
            )
        current.clear()
        current.update(obj)
        yield obj


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
    _remove_submariner(kube, spec, report)
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


def _remove_submariner(kube: Kube, spec: RemoteSpec, report: Report) -> None:
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
    if not _managed(obj):
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
    if namespace is None or not _managed(namespace):
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


def request_bound_token(
    kube: Kube, namespace: str, service_account: str, ttl: int, report: Report
) -> IssuedToken:
    from datetime import UTC, datetime

    path = SERVICE_ACCOUNT.path(namespace, service_account, "token")
    answer = kube.post(path, manifests.token_request(ttl))
    status = answer.get("status") or {}
    token = remember(str(status.get("token", "")))
    if not token:
        raise errors.MtvRegisterError(
            f'the TokenRequest for serviceaccount "{namespace}/{service_account}" on '
            f"{kube.context} returned no token",
            fix="check the API server's token issuer",
        )
    report(
        Change(
            kube.context,
            "TokenRequest",
            service_account,
            namespace,
            f"issued, expires {status.get('expirationTimestamp', '?')}",
        )
    )
    return IssuedToken(
        "",
        namespace,
        service_account,
        naming.stamp(datetime.now(UTC)),
        token,
        expires=str(status.get("expirationTimestamp", "")),
    )
