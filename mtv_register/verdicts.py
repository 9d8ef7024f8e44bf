"""Forklift's verdict on a Provider: reading it, waiting for a stable one, and finding the cause
of a failed connection test by repeating the test with the Provider's own credentials.

What Forklift does (kubev2v/forklift v2.10.6, v2.11.7, v2.12.5, `pkg/controller/provider`):
- phases `Staging`, `ValidationFailed`, `ConnectionFailed`, `Ready`; a failed connection test is
  retried every 3 s and a Ready Provider re-tested every 30 s, so `ConnectionTestFailed` is not
  final while the deadline allows another try;
- an `openshift` Provider whose token is refused gets `ConnectionTestFailed` ("... failed to get
  server groups: Unauthorized"), so the condition alone does not say why: the tool repeats the
  six lists itself and names the cause;
- 2.11+ writes `status.secretResourceVersion` once a test with the current Secret passed; up to
  2.10 a changed Secret is used only once the Provider's generation changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mtv_register import errors
from mtv_register.kube import PROVIDER, SECRET, Kind, Kube, NotFound
from mtv_register.provider_secret import ProviderSecret
from mtv_register.records import Change, Report
from mtv_register.timing import Transient

Obj = dict[str, Any]
Progress = Callable[[str], None]
# Forklift stops testing after these: nothing changes until the Provider or its Secret does.
FINAL_CONDITIONS = (
    "ProviderTypeNotSupported",
    "UrlNotValid",
    "ConnectionAuthFailed",
)
# Forklift tries these again (every 3 s, and on any event of the Secret): a Secret just written
# may not be in its cache yet, so `SecretNotValid` (NotFound) can come before the verdict.
RETRIED_CONDITIONS = ("ConnectionTestFailed", "SecretNotValid")
FAILURE_CONDITIONS = FINAL_CONDITIONS + RETRIED_CONDITIONS
# A Provider setting no `openshift` Provider reads: changing it changes the Provider's
# generation, which is what makes Forklift 2.10 rebuild its client from the current Secret.
SECRET_VERSION_SETTING = "mtv-register.konveyor.io/secret-version"
# What Forklift's connection test lists, in its order: (kind, plural, group/version).
TEST_LISTS = (
    Kind("v1", "Namespace", "namespaces", False),
    Kind("storage.k8s.io/v1", "StorageClass", "storageclasses", False),
    Kind(
        "k8s.cni.cncf.io/v1",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
        True,
    ),
    Kind("kubevirt.io/v1", "VirtualMachine", "virtualmachines", True),
    Kind(
        "instancetype.kubevirt.io/v1beta1",
        "VirtualMachineInstancetype",
        "virtualmachineinstancetypes",
        True,
    ),
    Kind(
        "instancetype.kubevirt.io/v1beta1",
        "VirtualMachineClusterInstancetype",
        "virtualmachineclusterinstancetypes",
        False,
    ),
)


def conditions(provider: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (provider.get("status") or {}).get("conditions") or []}


def verdict(provider: Obj) -> str | None:
    """ "ready", "failed" (final), "retrying" (Forklift tries again) or None (not tested yet
    for this generation)."""
    status = provider.get("status") or {}
    generation = provider["metadata"].get("generation", 1)
    if status.get("observedGeneration", 0) < generation:
        return None
    found = conditions(provider)
    if status.get("phase") == "Ready" and "Ready" in found:
        return "ready"
    if any(name in found for name in FINAL_CONDITIONS):
        return "failed"
    if any(name in found for name in RETRIED_CONDITIONS):
        return "retrying"
    return None


def failure_message(provider: Obj) -> str:
    found = conditions(provider)
    for name in FAILURE_CONDITIONS:
        if name in found:
            return f"{name}: {found[name].get('message', '')}"
    return f"phase {(provider.get('status') or {}).get('phase', 'unknown')}"


def describe(provider: Obj) -> str:
    """What Forklift is doing with the Provider, for progress lines."""
    status = provider.get("status") or {}
    phase = status.get("phase") or "not yet tested"
    state = verdict(provider)
    if state == "retrying":
        return f"{phase}, Forklift retries: {failure_message(provider)}"
    if phase == "Staging":
        return "Staging: connection test passed, inventory next"
    return str(phase)


def tracks_secret_version(provider: Obj) -> bool:
    """Forklift 2.11+ records which Secret its last good test used."""
    return "secretResourceVersion" in (provider.get("status") or {})


def take_up(kube: Kube, namespace: str, name: str, report: Report) -> str:
    """After the Provider's Secret changed: make Forklift use it, and say what proves it did.

    On Forklift 2.11+ the Secret's current resourceVersion, which `status.secretResourceVersion`
    will equal once a test with it passed. Up to 2.10, which keeps its client until the
    Provider's generation changes, the generation is changed (reported), and "" is returned: the
    verdict of the new generation is the proof."""
    provider = kube.get(PROVIDER, name, namespace)
    ref = ((provider or {}).get("spec") or {}).get("secret") or {}
    secret = kube.get(SECRET, ref.get("name", ""), ref.get("namespace") or namespace)
    if provider is None or secret is None:
        return ""
    version = str(secret["metadata"].get("resourceVersion", ""))
    if tracks_secret_version(provider):
        return version
    kube.patch(
        PROVIDER,
        name,
        {"spec": {"settings": {SECRET_VERSION_SETTING: version}}},
        namespace,
    )
    bumped = "generation changed: Forklift 2.10 takes the new Secret up only then"
    report(Change(kube.context, "Provider", name, namespace, bumped))
    return ""


def wait_ready(
    kube: Kube,
    namespace: str,
    name: str,
    timeout: float,
    *,
    secret_version: str = "",
    progress: Progress | None = None,
) -> Obj:
    """Until Forklift reports the Provider Ready (with `secret_version`, when given)."""
    expected = {name: secret_version} if secret_version else {}
    return wait_all_ready(kube, namespace, [name], timeout, expected=expected, progress=progress)[
        name
    ]


def wait_all_ready(
    kube: Kube,
    namespace: str,
    names: list[str],
    timeout: float,
    *,
    expected: dict[str, str] | None = None,
    progress: Progress | None = None,
    held: dict[str, Obj] | None = None,
) -> dict[str, Obj]:
    """`wait_ready` for several Providers, with one list and one watch of the collection.

    `held`: the Providers as the caller last wrote or read them. When it has every one, with
    resourceVersions that compare, the list is left out: the watch starts from the oldest of
    them, and an event counts only when it is newer than what is held of its Provider.

    A final failure ends the wait at once. `ConnectionTestFailed` does not: the tool repeats the
    test with the Provider's credentials, and a cause it finds ends the wait with that cause's
    exit code; otherwise it waits while Forklift retries, until Ready or the deadline."""
    deadline = time.monotonic() + timeout
    expected = expected or {}
    say = progress or (lambda message: None)
    shown: dict[str, str] = {}
    diagnosed: set[tuple[str, str]] = set()
    held_since = _held_versions(held or {}, names)
    if held_since and held:
        current, version = dict(held), str(min(held_since.values()))
    else:
        current, version = _listing(kube, namespace)
    # A failure already there when the wait for a new Secret starts is the verdict on the Secret
    # before it (Forklift keeps it until its next test): it counts once the Provider changes.
    stale = {
        name: current[name]["metadata"].get("resourceVersion")
        for name in expected
        if name in current and verdict(current[name]) == "failed"
    }

    def unready() -> list[str]:
        """The Providers not Ready yet; a verdict that ends the wait is raised."""
        pending = []
        for name in names:
            provider = current.get(name)
            if provider is None:
                raise errors.ProviderNotReady(
                    f'Provider "{namespace}/{name}" disappeared on {kube.context} while waiting '
                    "for it",
                    fix="check who deleted it, then re-run",
                )
            state = verdict(provider)
            wanted = expected.get(name)
            if state == "ready" and wanted:
                found = (provider.get("status") or {}).get("secretResourceVersion", "")
                if found != wanted:
                    state = None  # Ready with the Secret before ours: not yet taken up
            line = describe(provider)
            if shown.get(name) != line:
                shown[name] = line
                say(f"Forklift: Provider {namespace}/{name}: {line}")
            if state == "failed":
                if stale.get(name) != provider["metadata"].get("resourceVersion"):
                    raise _not_ready(namespace, name, provider)
                state = None
            if state == "retrying":
                key = (name, failure_message(provider))
                if key not in diagnosed:
                    diagnosed.add(key)
                    cause = diagnose(kube, provider)
                    if cause is not None:
                        raise cause
            if state != "ready":
                pending.append(name)
        return pending

    pending = unready()
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            provider = current[pending[0]]
            if verdict(provider) in ("retrying", "failed"):
                raise _not_ready(namespace, pending[0], provider, after=timeout)
            phase = (provider.get("status") or {}).get("phase", "unknown")
            raise errors.WaitTimeout(
                f'Provider "{namespace}/{pending[0]}" on {kube.context} was not Ready within '
                f"{timeout:g}s (phase {phase})",
                fix="check the forklift-controller pod on the host, or raise --timeout",
            )
        try:
            # One watch for the whole wait: each event is judged as it comes, so a Provider
            # found Ready while another is pending costs no new request.
            for event in kube.watch(
                PROVIDER, namespace, name=None, resource_version=version, timeout=remaining
            ):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    current, version = _listing(kube, namespace)  # e.g. 410: start again
                    held_since = {}
                    break
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion", version))
                since = held_since.pop(meta.get("name", ""), None)
                if since is not None and (comparable(version) or 0) <= since:
                    held_since[meta.get("name", "")] = since  # what is held is this or newer
                    continue
                if event.get("type") == "DELETED":
                    current.pop(meta.get("name", ""), None)
                else:
                    current[meta.get("name", "")] = obj
                if meta.get("name") in pending:
                    pending = unready()
                    if not pending:
                        break
        except Transient:
            current, version = _listing(kube, namespace)
            held_since = {}
        if pending:
            pending = unready()
    return {name: current[name] for name in names}


def _not_ready(
    namespace: str, name: str, provider: Obj, *, after: float | None = None
) -> errors.ProviderNotReady:
    retried = f" (still failing after {after:g}s of Forklift's retries)" if after else ""
    return errors.ProviderNotReady(
        f'Forklift reports Provider "{namespace}/{name}" not ready: '
        f"{failure_message(provider)}{retried}",
        fix="fix the cause above (URL, CA, token or permissions on that cluster), then re-run",
    )


def comparable(version: str) -> int | None:
    """A resourceVersion as a number, when it is one: Kubernetes 1.35 made resourceVersions of
    one resource comparable as integers (KEP-5504: positive, no leading zero); else None."""
    return int(version) if version.isdigit() and not version.startswith("0") else None


def _held_versions(held: dict[str, Obj], names: list[str]) -> dict[str, int]:
    """Each named Provider's held resourceVersion as a number; {} unless all of them are."""
    versions = {
        name: comparable(str((held.get(name) or {}).get("metadata", {}).get("resourceVersion", "")))
        for name in names
    }
    return {n: v for n, v in versions.items() if v is not None} if all(versions.values()) else {}


def _listing(kube: Kube, namespace: str) -> tuple[dict[str, Obj], str]:
    """The Providers of the namespace by name, and the resourceVersion to watch from."""
    listing = kube.list(PROVIDER, namespace)
    current = {p["metadata"]["name"]: p for p in listing.get("items", [])}
    return current, str(listing.get("metadata", {}).get("resourceVersion", ""))


# -- the cause of a failed connection test --------------------------------------------------------


def diagnose(host: Kube, provider: Obj) -> errors.MtvRegisterError | None:
    """Forklift's connection test repeated with the Provider's own URL, token and CA: the
    error naming the cause (exit code of its class), or None when the test passes now."""
    meta, spec = provider["metadata"], provider.get("spec") or {}
    where = f'Provider "{meta.get("namespace")}/{meta.get("name")}"'
    url = spec.get("url") or ""
    ref = spec.get("secret") or {}
    if not url or not ref.get("name"):
        return None  # the host provider: Forklift's own service account
    secret = host.get(SECRET, ref["name"], ref.get("namespace") or meta.get("namespace"))
    held = ProviderSecret.from_secret(secret) if secret is not None else None
    if held is None or not held.token:
        return errors.PreflightError(
            f'{where}: its Secret "{ref.get("namespace")}/{ref["name"]}" is '
            + ("missing" if secret is None else "without a token")
            + f" on {host.context}",
            fix="re-run register: it writes the provider Secret again",
        )
    if "SecretNotValid" in conditions(provider):
        return None  # the Secret is there: Forklift's cache has not seen it yet
    quick = replace(host.timing, attempts=min(2, host.timing.attempts))  # a second look, no more
    client = replace(host.connector, timing=quick).with_token(
        url, held.token, ca_pem=held.ca_pem, insecure=held.insecure, context=f"{where} at {url}"
    )
    try:
        for kind in TEST_LISTS:
            try:
                client.list(kind, limit=1)
            except NotFound:
                return errors.PreflightError(
                    f"{where}: Forklift's connection test lists {kind.plural}, and "
                    f"{url} does not serve them (the {kind.plural}.{kind.api_version.split('/')[0]}"
                    " CRD is missing)",
                    fix="install OpenShift Virtualization (KubeVirt, CDI and Multus) on that "
                    "cluster, then re-run",
                )
    except errors.AuthenticationFailed:
        return errors.AuthenticationFailed(
            f"{where}: {url} refuses the Provider's token (401 Unauthorized), so Forklift's "
            "connection test fails",
            fix="re-run register (or rotate with --source-context/--destination-context) to "
            "issue a fresh token",
        )
    except errors.TlsError as error:
        return errors.TlsError(
            f"{where}: the CA in the provider Secret does not verify {url}: {error.cause}",
            fix="re-run register with the right --ca-source (root, kubeconfig, system, file:)",
        )
    except errors.UnreachableError as error:
        return errors.UnreachableError(
            f"{where}: {url} cannot be reached: {error.cause}",
            fix="the URL must be reachable from the MTV host: check --source-url/"
            "--destination-url or --url-source",
        )
    except errors.PermissionDenied as error:
        return errors.PermissionDenied(
            f"{where}: the Provider's token may not list what Forklift lists: {error.cause}",
            fix="bind a ClusterRole with the seed's rules (drop --cluster-role, or widen it)",
        )
    except errors.MtvRegisterError:
        return None  # the remote is failing for now: Forklift's retries decide
    finally:
        client.close()
    return None
