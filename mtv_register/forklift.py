"""On the MTV host: the provider Secret and the Forklift Provider, and waiting for Forklift.

Order as Forklift's own tools use it: the Secret, the Provider, then the Secret's ownerReference
to the Provider, so deleting the Provider removes the Secret.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mtv_register import errors, manifests
from mtv_register.bootstrap import Change, Report
from mtv_register.kube import (
    NAMESPACE,
    PROVIDER,
    SECRET,
    AlreadyExists,
    Conflict,
    Kube,
    NotFound,
    Transient,
)
from mtv_register.redaction import remember

Obj = dict[str, Any]
URL_ANNOTATION = "mtv-register.konveyor.io/url"
TOKEN_CREATED_ANNOTATION = "mtv-register.konveyor.io/token-created"
RETEST_ANNOTATION = "mtv-register.konveyor.io/retest-requested-at"
FAILURE_CONDITIONS = (
    "ConnectionAuthFailed",
    "ConnectionTestFailed",
    "UrlNotValid",
    "SecretNotValid",
    "TypeNotSupported",
)
# After a changed Secret, how long to wait for Forklift's re-test to show before trusting status.
RETEST_GRACE_SECONDS = 2.0


@dataclass
class ProviderCredentials:
    url: str
    token: str = field(repr=False)
    ca_pem: str | None = field(repr=False)
    insecure: bool
    token_secret_ref: str  # "<namespace>/<name>" on the registered cluster ("" when bound)
    token_created: str
    token_type: str = "secret"
    service_account_ref: str = ""  # "<namespace>/<name>"
    token_expires: str = ""


def secret_name_for(provider_name: str) -> str:
    """The provider Secret's deterministic name."""
    return f"{provider_name}-credentials"


def find_mtv_namespace(kube: Kube, explicit: str | None) -> str:
    candidates = (explicit,) if explicit else manifests.MTV_NAMESPACES
    for name in candidates:
        if name and kube.get(NAMESPACE, name) is not None:
            return name
    if explicit:
        raise errors.PreflightError(
            f'namespace "{explicit}" does not exist on {kube.context}',
            fix="pass the namespace MTV is installed in with --mtv-namespace",
        )
    raise errors.PreflightError(
        f"MTV is not installed on {kube.context}: neither namespace "
        f"{' nor '.join(manifests.MTV_NAMESPACES)} exists",
        fix="install MTV (or Forklift) on the host, or pass --host / --mtv-namespace",
    )


def list_providers(kube: Kube, namespace: str | None) -> dict[str, Obj]:
    """Every Provider in the MTV namespace (all namespaces with None); also the proof that
    Forklift's API is served."""
    try:
        items = kube.list(PROVIDER, namespace).get("items", [])
    except NotFound:
        raise errors.PreflightError(
            f"Forklift is not installed on {kube.context}: the API providers."
            f"{manifests.FORKLIFT_API_VERSION} is not served",
            fix="install the MTV operator (or Forklift) on the host, or pass the right --host",
        ) from None
    return {p["metadata"]["name"]: p for p in items}


def discover(kube: Kube, explicit: str | None) -> tuple[str, dict[str, Obj]]:
    """The MTV namespace and its Providers, in one request where possible: MTV's own local
    `host` provider marks the namespace it runs in."""
    if explicit:
        providers = list_providers(kube, explicit)
        if not providers and kube.get(NAMESPACE, explicit) is None:
            find_mtv_namespace(kube, explicit)  # raises, naming the missing namespace
        return explicit, providers
    try:
        everywhere = kube.list(PROVIDER).get("items", [])
    except NotFound:
        list_providers(kube, manifests.MTV_NAMESPACES[0])  # raises "Forklift not installed"
        raise
    except errors.PermissionDenied:
        namespace = find_mtv_namespace(kube, None)  # may list in one namespace only
        return namespace, list_providers(kube, namespace)
    by_namespace: dict[str, dict[str, Obj]] = {}
    for item in everywhere:
        by_namespace.setdefault(item["metadata"]["namespace"], {})[item["metadata"]["name"]] = item
    for namespace in manifests.MTV_NAMESPACES:
        if namespace in by_namespace:
            return namespace, by_namespace[namespace]
    namespace = find_mtv_namespace(kube, None)  # none has a Provider yet: which one exists?
    return namespace, {}


def is_managed(obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(manifests.MANAGED_BY_LABEL) == manifests.MANAGED_BY


def check_name_free(existing: Obj | None, name: str, url: str, context: str) -> None:
    """A Provider name may be reused only by the registration that made it, for its URL."""
    if existing is None:
        return
    if not is_managed(existing):
        raise errors.PreflightError(
            f'Provider "{name}" already exists on {context} and was not created by mtv-register',
            fix="choose another name with --source-name/--destination-name",
        )
    registered = (existing["metadata"].get("annotations") or {}).get(URL_ANNOTATION, "")
    if registered and registered != url:
        raise errors.PreflightError(
            f'Provider "{name}" on {context} already registers {registered}, not {url}',
            fix="choose another name with --source-name/--destination-name, or unregister it",
        )


def desired_secret(
    name: str, namespace: str, creds: ProviderCredentials, *, legacy_cacert: bool
) -> Obj:
    secret = manifests.provider_secret(
        secret_name_for(name),
        namespace,
        url=creds.url,
        token=creds.token,
        ca_cert=creds.ca_pem,
        insecure_skip_verify=creds.insecure,
        legacy_cacert=legacy_cacert,
        token_secret_ref=creds.token_secret_ref or None,
    )
    annotations = secret["metadata"].setdefault("annotations", {})
    annotations[TOKEN_CREATED_ANNOTATION] = creds.token_created
    annotations[manifests.TOKEN_TYPE_ANNOTATION] = creds.token_type
    if creds.service_account_ref:
        annotations[manifests.SERVICE_ACCOUNT_ANNOTATION] = creds.service_account_ref
    if creds.token_expires:
        annotations[manifests.TOKEN_EXPIRES_ANNOTATION] = creds.token_expires
    return secret


def desired_provider(name: str, namespace: str, url: str) -> Obj:
    provider = manifests.provider(
        name, namespace, url=url, secret_name=secret_name_for(name), secret_namespace=namespace
    )
    provider["metadata"]["annotations"] = {URL_ANNOTATION: url}
    return provider


def ensure_provider(
    kube: Kube,
    namespace: str,
    name: str,
    creds: ProviderCredentials,
    existing_provider: Obj | None,
    report: Report,
    *,
    legacy_cacert: bool = True,
    current_secret: Obj | None = None,
) -> tuple[Obj, bool]:
    """The provider Secret and Provider as desired; (provider, secret_changed).
    `current_secret`: the provider Secret as read when the run chose its token."""
    remember(creds.token)
    secret = desired_secret(name, namespace, creds, legacy_cacert=legacy_cacert)
    # No Provider yet: its Secret is most likely absent too, so create it without a read.
    secret_changed, stored = _ensure_secret(
        kube, secret, report, assume_absent=existing_provider is None, known=current_secret
    )
    provider = _ensure_provider_object(
        kube, desired_provider(name, namespace, creds.url), existing_provider, report
    )
    _ensure_owner(kube, secret, provider, report, known=stored)
    return provider, secret_changed


@contextlib.contextmanager
def _forklift_admission(kube: Kube, meta: Obj) -> Iterator[None]:
    """Forklift's webhook tests a provider Secret's token on every write: its refusal is Forklift
    rejecting the credentials, not a permission the user lacks."""
    try:
        yield
    except errors.MtvRegisterError as error:
        if "admission webhook" not in error.cause:
            raise
        raise errors.ProviderNotReady(
            f'Forklift refused the provider Secret "{meta["namespace"]}/{meta["name"]}" on '
            f"{kube.context} (ConnectionAuthFailed): {error.cause}",
            fix="the token does not authenticate at the provider URL (revoked, or the URL is "
            "another cluster's): re-run to issue a fresh token, or check the URL",
        ) from None


def _token_ref(secret: Obj | None) -> str:
    return ((secret or {}).get("metadata", {}).get("annotations") or {}).get(
        manifests.TOKEN_SECRET_ANNOTATION, ""
    )


def _ensure_secret(
    kube: Kube,
    desired: Obj,
    report: Report,
    *,
    assume_absent: bool = False,
    known: Obj | None = None,
) -> tuple[bool, Obj]:
    """(changed, the Secret as stored). `known`: the Secret as read when the token was chosen;
    a write is guarded by it, so a token another run switched to meanwhile is never undone."""
    meta = desired["metadata"]
    for attempt in range(5):
        if attempt == 0 and known is not None:
            existing: Obj | None = known
        elif assume_absent and attempt == 0:
            existing = None
        else:
            existing = kube.get(SECRET, meta["name"], meta["namespace"])
            if (
                known is not None
                and existing is not None
                and _token_ref(existing) not in (_token_ref(known), _token_ref(desired))
            ):
                raise errors.ConflictError(
                    f'the provider Secret "{meta["namespace"]}/{meta["name"]}" on '
                    f"{kube.context} was switched to another token meanwhile (a rotation?)",
                    fix="re-run: it keeps the token now in place when that one works",
                )
        if existing is None:
            try:
                with _forklift_admission(kube, meta):
                    created = kube.create(SECRET, desired)
            except AlreadyExists:
                continue  # ours from a lost answer, or another run's: compare it
            report(Change(kube.context, "Secret", meta["name"], meta["namespace"], "created"))
            return True, created
        if not is_managed(existing):
            raise errors.PreflightError(
                f'Secret "{meta["namespace"]}/{meta["name"]}" exists on {kube.context} and was '
                "not created by mtv-register",
                fix="delete it, or choose another provider name",
            )
        same_labels = all(
            (existing["metadata"].get("labels") or {}).get(k) == v
            for k, v in meta["labels"].items()
        )
        same_annotations = all(
            (existing["metadata"].get("annotations") or {}).get(k) == v
            for k, v in meta["annotations"].items()
        )
        if existing.get("data") == desired["data"] and same_labels and same_annotations:
            report(Change(kube.context, "Secret", meta["name"], meta["namespace"], "unchanged"))
            return False, existing
        updated = dict(existing)
        updated["data"] = desired["data"]
        updated["metadata"] = {
            **existing["metadata"],
            "labels": {**(existing["metadata"].get("labels") or {}), **meta["labels"]},
            "annotations": {
                **(existing["metadata"].get("annotations") or {}),
                **meta["annotations"],
            },
        }
        try:
            with _forklift_admission(kube, meta):
                stored = kube.replace(SECRET, updated)  # guarded by the resourceVersion read
        except Conflict:
            continue
        report(Change(kube.context, "Secret", meta["name"], meta["namespace"], "updated"))
        return True, stored
    raise errors.ConflictError(
        f'Secret "{meta["name"]}" keeps changing on {kube.context}',
        fix="stop the other writer, then re-run",
    )


def _ensure_provider_object(kube: Kube, desired: Obj, existing: Obj | None, report: Report) -> Obj:
    meta = desired["metadata"]
    if existing is None:
        try:
            created = kube.create(PROVIDER, desired)
        except AlreadyExists:
            existing = kube.get(PROVIDER, meta["name"], meta["namespace"])
            if existing is None:
                raise
            check_name_free(existing, meta["name"], desired["spec"]["url"], kube.context)
        else:
            report(Change(kube.context, "Provider", meta["name"], meta["namespace"], "created"))
            return created
    spec = existing.get("spec") or {}
    wanted = desired["spec"]
    if all(spec.get(k) == wanted[k] for k in ("type", "url", "secret")) and (
        (existing["metadata"].get("annotations") or {}).get(URL_ANNOTATION) == wanted["url"]
    ):
        report(Change(kube.context, "Provider", meta["name"], meta["namespace"], "unchanged"))
        return existing
    patch = {
        "metadata": {
            "annotations": meta["annotations"],
            "labels": meta["labels"],
            "resourceVersion": existing["metadata"]["resourceVersion"],
        },
        "spec": {k: wanted[k] for k in ("type", "url", "secret")},
    }
    updated = kube.patch(PROVIDER, meta["name"], patch, meta["namespace"])
    report(Change(kube.context, "Provider", meta["name"], meta["namespace"], "updated"))
    return updated


def _ensure_owner(
    kube: Kube, secret: Obj, provider: Obj, report: Report, *, known: Obj | None = None
) -> None:
    """The Secret's ownerReference to its Provider; `known` is the Secret as just stored."""
    meta = secret["metadata"]
    uid = provider["metadata"]["uid"]
    for attempt in range(5):
        current = (
            known
            if attempt == 0 and known is not None
            else kube.get(SECRET, meta["name"], meta["namespace"])
        )
        if current is None:
            return
        owners = current["metadata"].get("ownerReferences") or []
        if any(ref.get("uid") == uid for ref in owners):
            return
        kept = [ref for ref in owners if ref.get("kind") != "Provider"]
        patch = {
            "metadata": {
                "ownerReferences": [*kept, manifests.owner_reference(provider)],
                "resourceVersion": current["metadata"]["resourceVersion"],
            }
        }
        try:
            with _forklift_admission(kube, meta):
                kube.patch(SECRET, meta["name"], patch, meta["namespace"])
        except Conflict:
            if attempt == 4:
                raise
            continue  # changed meanwhile (or our own patch whose answer was lost): re-read
        report(
            Change(kube.context, "Secret", meta["name"], meta["namespace"], "owned by its Provider")
        )
        return


# -- Forklift's verdict --------------------------------------------------------------------------


def conditions(provider: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (provider.get("status") or {}).get("conditions") or []}


def verdict(provider: Obj) -> str | None:
    """ "ready", "failed" or None (not tested yet for this generation)."""
    status = provider.get("status") or {}
    generation = provider["metadata"].get("generation", 1)
    if status.get("observedGeneration", 0) < generation:
        return None
    found = conditions(provider)
    if status.get("phase") == "Ready" and "Ready" in found:
        return "ready"
    if any(name in found for name in FAILURE_CONDITIONS):
        return "failed"
    return None


def failure_message(provider: Obj) -> str:
    found = conditions(provider)
    for name in FAILURE_CONDITIONS:
        if name in found:
            return f"{name}: {found[name].get('message', '')}"
    return f"phase {(provider.get('status') or {}).get('phase', 'unknown')}"


def wait_ready(
    kube: Kube, namespace: str, name: str, timeout: float, *, retested: bool = False
) -> Obj:
    """Until Forklift reports the Provider Ready; its failure condition ends the wait early.

    `retested`: the Secret just changed, so a verdict seen before Forklift's re-test is trusted
    only after a status change shows or a short grace period passes.
    """
    ready = wait_all_ready(
        kube, namespace, [name], timeout, retested=frozenset({name} if retested else ())
    )
    return ready[name]


def wait_all_ready(
    kube: Kube,
    namespace: str,
    names: list[str],
    timeout: float,
    *,
    retested: frozenset[str] = frozenset(),
) -> dict[str, Obj]:
    """`wait_ready` for several Providers at once, with one list and one watch of the
    collection instead of a read and a watch per Provider; a Provider in `retested` is
    trusted only once its status changes or the grace period passes."""
    deadline = time.monotonic() + timeout
    grace_until = time.monotonic() + RETEST_GRACE_SECONDS
    trusted = {name: name not in retested for name in names}
    current, version = _listing(kube, namespace)
    while True:
        if time.monotonic() >= grace_until:
            trusted = dict.fromkeys(names, True)
        pending = []
        for name in names:
            provider = current.get(name)
            if provider is None:
                raise errors.ProviderNotReady(
                    f'Provider "{namespace}/{name}" disappeared on {kube.context} while waiting '
                    "for it",
                    fix="check who deleted it, then re-run",
                )
            state = verdict(provider) if trusted[name] else None
            if state == "failed":
                raise errors.ProviderNotReady(
                    f'Forklift reports Provider "{namespace}/{name}" not ready: '
                    f"{failure_message(provider)}",
                    fix="fix the cause above (URL, CA, token or permissions on that cluster), "
                    "then re-run",
                )
            if state != "ready":
                pending.append(name)
        if not pending:
            return {name: current[name] for name in names}
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            name = pending[0]
            phase = (current[name].get("status") or {}).get("phase", "unknown")
            raise errors.WaitTimeout(
                f'Provider "{namespace}/{name}" on {kube.context} was not Ready within '
                f"{timeout:g}s (phase {phase})",
                fix="check the forklift-controller pod on the host, or raise --timeout",
            )
        window = (
            remaining
            if all(trusted.values())
            else max(0.05, min(remaining, grace_until - time.monotonic()))
        )
        try:
            for event in kube.watch(
                PROVIDER, namespace, name=None, resource_version=version, timeout=window
            ):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    current, version = _listing(kube, namespace)  # e.g. 410: start again
                    break
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion", version))
                if event.get("type") == "DELETED":
                    current.pop(meta.get("name", ""), None)
                else:
                    current[meta.get("name", "")] = obj
                    trusted[meta.get("name", "")] = True  # written after ours: the re-test
                if meta.get("name") in pending:
                    break
        except Transient:
            current, version = _listing(kube, namespace)


def _listing(kube: Kube, namespace: str) -> tuple[dict[str, Obj], str]:
    """The Providers of the namespace by name, and the resourceVersion to watch from."""
    listing = kube.list(PROVIDER, namespace)
    current = {p["metadata"]["name"]: p for p in listing.get("items", [])}
    return current, str(listing.get("metadata", {}).get("resourceVersion", ""))


def request_retest(kube: Kube, namespace: str, name: str, report: Report) -> None:
    """Forklift tests a Provider again when its Secret changes: after the cause of a failed
    verdict was repaired elsewhere (an edited ClusterRole), nothing else would make it look."""
    import datetime as dt

    secret = secret_name_for(name)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with _forklift_admission(kube, {"name": secret, "namespace": namespace}):
        kube.patch(
            SECRET, secret, {"metadata": {"annotations": {RETEST_ANNOTATION: stamp}}}, namespace
        )
    report(Change(kube.context, "Secret", secret, namespace, "touched: Forklift tests it again"))


def delete_provider(kube: Kube, namespace: str, name: str, report: Report) -> None:
    provider = kube.get(PROVIDER, name, namespace)
    if provider is not None:
        if not is_managed(provider):
            report(
                Change(
                    kube.context, "Provider", name, namespace, "kept (not managed by mtv-register)"
                )
            )
            return
        kube.delete(PROVIDER, name, namespace, uid=provider["metadata"]["uid"])
        report(Change(kube.context, "Provider", name, namespace, "deleted"))
    secret = kube.get(SECRET, secret_name_for(name), namespace)
    # The garbage collector would remove it too; removing it here makes the end state exact.
    if (
        secret is not None
        and is_managed(secret)
        and kube.delete(SECRET, secret_name_for(name), namespace, uid=secret["metadata"]["uid"])
    ):
        report(Change(kube.context, "Secret", secret_name_for(name), namespace, "deleted"))
