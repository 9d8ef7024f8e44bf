"""On the MTV host: the provider Secret and the Forklift Provider, and waiting for Forklift.

Order as Forklift's own tools use it: the Secret, the Provider, then the Secret's ownerReference
to the Provider, so deleting the Provider removes the Secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mtv_register import errors, manifests, naming
from mtv_register.kube import (
    NAMESPACE,
    PROVIDER,
    SECRET,
    AlreadyExists,
    Kube,
    NotFound,
)
from mtv_register.naming import (
    PAIRS_ANNOTATION,
    RETEST_ANNOTATION,
    URL_ANNOTATION,
)
from mtv_register.naming import PROVIDER_SECRET_WEBHOOK_LABEL as WEBHOOK_LABEL
from mtv_register.provider_secret import ProviderSecret
from mtv_register.records import Change, Report
from mtv_register.redaction import remember
from mtv_register.timing import AGAIN, Again, retry_on_conflict

Obj = dict[str, Any]


def pair_key(source_provider: str, destination_provider: str) -> str:
    return f"{source_provider}/{destination_provider}"


def pairs_of(provider: Obj | None) -> list[str]:
    text = (((provider or {}).get("metadata") or {}).get("annotations") or {}).get(
        PAIRS_ANNOTATION, ""
    )
    return sorted({p for p in text.split(",") if p})


def _with_pair(provider: Obj | None, pair: str) -> str:
    return ",".join(sorted({*pairs_of(provider), *([pair] if pair else [])}))


def secret_name_for(provider_name: str) -> str:
    """The provider Secret's deterministic name."""
    return f"{provider_name}-credentials"


def find_mtv_namespace(kube: Kube, explicit: str | None) -> str:
    candidates = (explicit,) if explicit else naming.MTV_NAMESPACES
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
        f"{' nor '.join(naming.MTV_NAMESPACES)} exists",
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
            f"{naming.FORKLIFT_API_VERSION} is not served",
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
        list_providers(kube, naming.MTV_NAMESPACES[0])  # raises "Forklift not installed"
        raise
    except errors.PermissionDenied:
        namespace = find_mtv_namespace(kube, None)  # may list in one namespace only
        return namespace, list_providers(kube, namespace)
    by_namespace: dict[str, dict[str, Obj]] = {}
    for item in everywhere:
        by_namespace.setdefault(item["metadata"]["namespace"], {})[item["metadata"]["name"]] = item
    for namespace in naming.MTV_NAMESPACES:
        if namespace in by_namespace:
            return namespace, by_namespace[namespace]
    namespace = find_mtv_namespace(kube, None)  # none has a Provider yet: which one exists?
    return namespace, {}


def is_managed(obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY


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


Settings = dict[str, "str | None"]  # a None value: the setting is removed


def desired_provider(
    name: str,
    namespace: str,
    url: str,
    settings: Settings | None = None,
    *,
    pairs: str = "",
) -> Obj:
    provider = manifests.provider(
        name, namespace, url=url, secret_name=secret_name_for(name), secret_namespace=namespace
    )
    provider["metadata"]["annotations"] = {URL_ANNOTATION: url}
    if pairs:
        provider["metadata"]["annotations"][PAIRS_ANNOTATION] = pairs
    present = {k: v for k, v in (settings or {}).items() if v is not None}
    if present:
        provider["spec"]["settings"] = present
    return provider


def ensure_provider(
    kube: Kube,
    namespace: str,
    name: str,
    creds: ProviderSecret,
    existing_provider: Obj | None,
    report: Report,
    *,
    legacy_cacert: bool = True,
    current_secret: Obj | None = None,
    settings: Settings | None = None,
    pair: str = "",
) -> tuple[Obj, bool]:
    """The provider Secret and Provider as desired; (provider, secret_changed).
    `current_secret`: the provider Secret as read when the run chose its token; `settings`:
    the Provider's settings to set (or, with None values, remove); others stay as they are."""
    remember(creds.token)
    secret = creds.to_secret(secret_name_for(name), namespace, legacy_cacert=legacy_cacert)
    made: list[Change] = []

    def noted(change: Change) -> None:
        if change.action == "created":
            made.append(change)
        report(change)

    # No Provider yet: its Secret is most likely absent too, so create it without a read.
    secret_changed, stored = _ensure_secret(
        kube, secret, noted, assume_absent=existing_provider is None, known=current_secret
    )
    provider = _ensure_provider_object(
        kube,
        desired_provider(
            name, namespace, creds.url, settings, pairs=_with_pair(existing_provider, pair)
        ),
        existing_provider,
        noted,
        settings or {},
    )
    try:
        _ensure_owner(kube, secret, provider, report, known=stored)
    except errors.ProviderNotReady as refused:
        # Forklift refused the credentials on the write that makes a new Secret one it tests:
        # what this call made goes, so the host is as it was (as when a create is refused).
        left = []
        for change in reversed(made):
            kind = PROVIDER if change.kind == "Provider" else SECRET
            try:
                with contextlib.suppress(NotFound):
                    kube.delete(kind, change.name, change.namespace)
            except errors.MtvRegisterError as failure:
                left.append(f"{change.kind} {change.name}: {failure.cause}")
            else:
                report(Change(kube.context, change.kind, change.name, change.namespace, "deleted"))
        if left:
            raise errors.ProviderNotReady(
                f"{refused.cause} (could not remove what this run created: {'; '.join(left)})",
                fix=refused.fix,
            ) from None
        raise
    return provider, secret_changed


@contextlib.contextmanager
def _forklift_admission(kube: Kube, meta: Obj) -> Iterator[None]:
    """forklift-api's webhook admits every provider Secret write: its denial is Forklift refusing
    the Secret, not a permission the user lacks; its outage fails the write (failurePolicy Fail)."""
    try:
        yield
    except errors.WebhookUnavailable as error:
        raise errors.PreflightError(
            f'the provider Secret "{meta["namespace"]}/{meta["name"]}" could not be written on '
            f"{kube.context}: {error.cause}",
            fix="forklift-api (the forklift-api Deployment and Service in the MTV namespace) must "
            "be running; check it, then re-run",
        ) from None
    except errors.MtvRegisterError as error:
        if not error.denied_by:
            raise
        raise errors.ProviderNotReady(
            f'Forklift refused the provider Secret "{meta["namespace"]}/{meta["name"]}" on '
            f"{kube.context}: {error.cause}",
            fix="forklift-api's test of the token was refused (401 or 400): re-run to issue a "
            "fresh token, or check the URL",
        ) from None


def _token_ref(secret: Obj | None) -> str:
    return ((secret or {}).get("metadata", {}).get("annotations") or {}).get(
        naming.TOKEN_SECRET_ANNOTATION, ""
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

    def attempt(number: int) -> tuple[bool, Obj] | Again:
        if number == 0 and known is not None:
            existing: Obj | None = known
        elif assume_absent and number == 0:
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
                    created = kube.create(SECRET, _before_its_owner(desired))
            except AlreadyExists:
                return AGAIN  # ours from a lost answer, or another run's: compare it
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
        with _forklift_admission(kube, meta):
            stored = kube.replace(SECRET, updated)  # guarded by the resourceVersion read
        report(Change(kube.context, "Secret", meta["name"], meta["namespace"], "updated"))
        return True, stored

    return retry_on_conflict(
        kube.timing,
        attempt,
        what=f'Secret "{meta["name"]}"',
        context=kube.context,
        obj=("Secret", meta["namespace"], meta["name"]),
    )


def _before_its_owner(secret: Obj) -> Obj:
    """A new provider Secret as created before its Provider exists: without the label that
    forklift-api's webhooks select on. The write that adds the owner reference adds the label,
    so Forklift tests the credentials once, not on both writes (each test is a connection test
    of the remote cluster, inside the write)."""
    labels = {k: v for k, v in secret["metadata"]["labels"].items() if k != WEBHOOK_LABEL}
    return {**secret, "metadata": {**secret["metadata"], "labels": labels}}


def _ensure_provider_object(
    kube: Kube, desired: Obj, existing: Obj | None, report: Report, settings: Settings
) -> Obj:
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
    wanted = desired["spec"]
    ours = meta["annotations"].get(PAIRS_ANNOTATION, "")
    latest: Obj | None = existing

    def attempt(number: int) -> Obj:
        nonlocal latest
        if number > 0:  # the last patch met a newer Provider: read it
            latest = kube.get(PROVIDER, meta["name"], meta["namespace"])
        if latest is None:
            raise errors.ConflictError(
                f'Provider "{meta["namespace"]}/{meta["name"]}" was deleted meanwhile on '
                f"{kube.context}",
                fix="re-run",
            )
        spec = latest.get("spec") or {}
        annotations = dict(meta["annotations"])
        if ours:  # the pairs another run added meanwhile stay
            annotations[PAIRS_ANNOTATION] = ",".join(sorted({*pairs_of(latest), *ours.split(",")}))
        held = spec.get("settings") or {}
        found = latest["metadata"].get("annotations") or {}
        if (
            all(spec.get(k) == wanted[k] for k in ("type", "url", "secret"))
            and all(held.get(k) == v for k, v in settings.items())
            and all(found.get(k) == v for k, v in annotations.items())
        ):
            report(Change(kube.context, "Provider", meta["name"], meta["namespace"], "unchanged"))
            return latest
        patch = {
            "metadata": {
                "annotations": annotations,
                "labels": meta["labels"],
                # Guards the pairs read above; Forklift's status writes move it too.
                "resourceVersion": latest["metadata"]["resourceVersion"],
            },
            "spec": {k: wanted[k] for k in ("type", "url", "secret")},
        }
        if settings:
            patch["spec"]["settings"] = dict(settings)  # merge patch: a null removes the key
        updated = kube.patch(PROVIDER, meta["name"], patch, meta["namespace"])
        report(Change(kube.context, "Provider", meta["name"], meta["namespace"], "updated"))
        return updated

    return retry_on_conflict(
        kube.timing,
        attempt,
        what=f'Provider "{meta["namespace"]}/{meta["name"]}"',
        context=kube.context,
        obj=("Provider", meta["namespace"], meta["name"]),
    )


def _ensure_owner(
    kube: Kube, secret: Obj, provider: Obj, report: Report, *, known: Obj | None = None
) -> None:
    """The Secret's ownerReference to its Provider; `known` is the Secret as just stored."""
    meta = secret["metadata"]
    uid = provider["metadata"]["uid"]

    def attempt(number: int) -> None:
        current = (
            known
            if number == 0 and known is not None
            else kube.get(SECRET, meta["name"], meta["namespace"])
        )
        if current is None:
            return
        owners = current["metadata"].get("ownerReferences") or []
        if any(ref.get("uid") == uid for ref in owners):
            return  # also our own patch whose answer was lost
        kept = [ref for ref in owners if ref.get("kind") != "Provider"]
        patch = {
            "metadata": {
                "labels": {WEBHOOK_LABEL: meta["labels"][WEBHOOK_LABEL]},
                "ownerReferences": [*kept, manifests.owner_reference(provider)],
                "resourceVersion": current["metadata"]["resourceVersion"],
            }
        }
        with _forklift_admission(kube, meta):
            kube.patch(SECRET, meta["name"], patch, meta["namespace"])
        report(
            Change(kube.context, "Secret", meta["name"], meta["namespace"], "owned by its Provider")
        )

    retry_on_conflict(
        kube.timing,
        attempt,
        what=f'Secret "{meta["namespace"]}/{meta["name"]}"',
        context=kube.context,
        obj=("Secret", meta["namespace"], meta["name"]),
    )


def request_retest(kube: Kube, namespace: str, name: str, report: Report) -> None:
    """Forklift tests a Provider again when its Secret changes: after the cause of a failed
    verdict was repaired elsewhere (an edited ClusterRole), nothing else would make it look."""
    import datetime as dt

    secret = secret_name_for(name)
    stamp = dt.datetime.now(dt.UTC).strftime(naming.PRECISE_STAMP_FORMAT)  # each one differs
    with _forklift_admission(kube, {"name": secret, "namespace": namespace}):
        kube.patch(
            SECRET, secret, {"metadata": {"annotations": {RETEST_ANNOTATION: stamp}}}, namespace
        )
    report(Change(kube.context, "Secret", secret, namespace, "touched: Forklift tests it again"))
