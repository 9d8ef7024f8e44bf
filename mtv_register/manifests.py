"""The objects mtv-register creates for a registration, as the plain dicts the Kubernetes API
accepts. No I/O. (The scheduled rotation's objects are built in `schedule`, Events in `events`.)

On each cluster being registered (seed procedure, steps 1-5): the ClusterRole
`live-migration-role`, a ServiceAccount, a ClusterRoleBinding named after it, and a long-lived
token Secret. On the MTV host: the provider Secret and the Forklift Provider.

Every name, label and annotation the tool uses is in `naming`, and the seed's ClusterRole rules
are data here (`SEED_CLUSTER_ROLE_RULES`), so both are read in one place.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any, Final

from mtv_register.naming import (
    DEFAULT_ROLE_NAME,
    FORKLIFT_API_VERSION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PROVIDER_KIND,
    PROVIDER_SECRET_CA_KEY,
    PROVIDER_SECRET_INSECURE_KEY,
    PROVIDER_SECRET_LABELS,
    PROVIDER_SECRET_LEGACY_CA_KEY,
    PROVIDER_SECRET_TOKEN_KEY,
    PROVIDER_SECRET_URL_KEY,
    PROVIDER_TYPE,
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SUBMARINER_SUFFIX,
    TOKEN_SECRET_ANNOTATION,
    token_requester_name,
    token_secret_name,
)

Manifest = dict[str, Any]

LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED: Final = "<redacted>"

# --- The seed's ClusterRole rules, in the seed's order -----------------------------------------

_READ: Final = ("get", "list", "watch")
_FULL: Final = (*_READ, "create", "update", "patch", "delete")


def _rule(api_group: str, resources: tuple[str, ...], verbs: tuple[str, ...]) -> dict[str, Any]:
    return {"apiGroups": [api_group], "resources": list(resources), "verbs": list(verbs)}


SEED_CLUSTER_ROLE_RULES: Final[list[dict[str, Any]]] = [
    _rule("forklift.konveyor.io", ("*",), _READ),
    _rule(
        "",
        ("secrets", "namespaces", "configmaps", "persistentvolumes", "persistentvolumeclaims"),
        _FULL,
    ),
    _rule("k8s.cni.cncf.io", ("network-attachment-definitions",), _READ),
    _rule("storage.k8s.io", ("storageclasses",), _READ),
    _rule(
        "kubevirt.io",
        ("virtualmachines", "virtualmachines/finalizers", "virtualmachineinstancemigrations"),
        _FULL,
    ),
    _rule("kubevirt.io", ("kubevirts", "virtualmachineinstances"), _READ),
    _rule("cdi.kubevirt.io", ("datavolumes", "datavolumes/finalizers"), _FULL),
    _rule("apps", ("deployments",), _FULL),
    _rule(
        "instancetype.kubevirt.io",
        ("virtualmachineclusterpreferences", "virtualmachineclusterinstancetypes"),
        _READ,
    ),
    _rule(
        "instancetype.kubevirt.io",
        ("virtualmachinepreferences", "virtualmachineinstancetypes"),
        _FULL,
    ),
]

# --- Builders ----------------------------------------------------------------------------------


def managed_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The managed-by label plus `extra`; the managed-by label cannot be overridden."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    for key, value in (extra or {}).items():
        if key != MANAGED_BY_LABEL:
            labels[key] = value
    return labels


def cluster_role(name: str = DEFAULT_ROLE_NAME) -> Manifest:
    """The seed's ClusterRole (step 1)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": managed_labels()},
        "rules": copy.deepcopy(SEED_CLUSTER_ROLE_RULES),
    }


def namespace(name: str) -> Manifest:
    """A Namespace for the service account, when it does not exist yet."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": managed_labels()},
    }


def service_account(name: str, namespace: str) -> Manifest:
    """The ServiceAccount MTV acts as (step 3).

    It never lists its token Secret in ``secrets``: that would make the token look
    auto-generated to LegacyServiceAccountTokenCleanUp, which invalidates unused ones.
    """
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": managed_labels()},
    }


def cluster_role_binding(
    service_account: str, namespace: str, role_name: str = DEFAULT_ROLE_NAME
) -> Manifest:
    """The ClusterRoleBinding of `service_account` to `role_name`, named after the account."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": service_account, "labels": managed_labels()},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role_name,
        },
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }


# Forklift's live migration with Submariner creates and deletes ServiceExports
# (`sync-<vm>-<ns>`, `migration-<vm>-<ns>`) on the destination as the destination's identity.
SUBMARINER_RULES: Final = (
    _rule("multicluster.x-k8s.io", ("serviceexports",), ("get", "list", "create", "delete")),
)


def submariner_role(role_name: str = DEFAULT_ROLE_NAME) -> Manifest:
    """The additional ClusterRole of a Submariner destination; the seed's role stays the seed's."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": role_name + SUBMARINER_SUFFIX, "labels": managed_labels()},
        "rules": copy.deepcopy(list(SUBMARINER_RULES)),
    }


def submariner_binding(
    service_account: str, namespace: str, role_name: str = DEFAULT_ROLE_NAME
) -> Manifest:
    binding = cluster_role_binding(service_account, namespace, role_name + SUBMARINER_SUFFIX)
    binding["metadata"]["name"] = service_account + SUBMARINER_SUFFIX
    return binding


def token_secret(
    service_account: str,
    namespace: str,
    name: str | None = None,
    generate_name: str | None = None,
) -> Manifest:
    """The long-lived token Secret of `service_account` (step 5), filled by the token controller.

    Named `name`, or from `generate_name`, or by default ``<service_account>-token``.
    """
    if name is not None and generate_name is not None:
        raise ValueError(
            f'token secret for serviceaccount "{service_account}": '
            "give a name or a generateName, not both"
        )
    metadata: dict[str, Any] = {}
    if generate_name is not None:
        metadata["generateName"] = generate_name
    else:
        metadata["name"] = name if name is not None else token_secret_name(service_account)
    metadata["namespace"] = namespace
    metadata["labels"] = managed_labels()
    metadata["annotations"] = {SERVICE_ACCOUNT_NAME_ANNOTATION: service_account}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SERVICE_ACCOUNT_TOKEN_TYPE,
    }


def provider_secret(
    name: str,
    namespace: str,
    *,
    url: str,
    token: str,
    ca_cert: str | None,
    insecure_skip_verify: bool,
    legacy_cacert: bool = True,
    token_secret_ref: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """The Secret a Forklift Provider reads its credentials from, on the MTV host.

    Values are base64 in ``data``, so the result equals what the server stores. The CA is under
    ``ca.crt`` and, when `legacy_cacert`, also under the deprecated ``cacert`` that older
    Forklift releases read. An empty `ca_cert` counts as none. `token_secret_ref` is the
    ``<namespace>/<name>`` of the token Secret on the registered cluster; `labels` are added to
    the Forklift and managed-by labels.

    Raises `ValueError` when the token is empty, or when a CA comes with `insecure_skip_verify`
    (Forklift refuses the pair).
    """
    if not token:
        raise ValueError(f'provider secret "{namespace}/{name}": the token is empty')
    if ca_cert and insecure_skip_verify:
        raise ValueError(
            f'provider secret "{namespace}/{name}": give a CA certificate or skip TLS '
            "verification, not both"
        )
    values = {PROVIDER_SECRET_TOKEN_KEY: token, PROVIDER_SECRET_URL_KEY: url}
    if ca_cert:
        values[PROVIDER_SECRET_CA_KEY] = ca_cert
        if legacy_cacert:
            values[PROVIDER_SECRET_LEGACY_CA_KEY] = ca_cert
    values[PROVIDER_SECRET_INSECURE_KEY] = "true" if insecure_skip_verify else "false"

    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": managed_labels({**PROVIDER_SECRET_LABELS, **(labels or {})}),
    }
    if token_secret_ref is not None:
        metadata["annotations"] = {TOKEN_SECRET_ANNOTATION: token_secret_ref}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in values.items()},
    }


def provider(
    name: str,
    namespace: str,
    *,
    url: str,
    secret_name: str,
    secret_namespace: str,
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """The Forklift Provider of an OpenShift Virtualization cluster, on the MTV host."""
    return {
        "apiVersion": FORKLIFT_API_VERSION,
        "kind": PROVIDER_KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": managed_labels(labels)},
        "spec": {
            "type": PROVIDER_TYPE,
            "url": url,
            "secret": {"name": secret_name, "namespace": secret_namespace},
        },
    }


def owner_reference(
    obj: Mapping[str, Any], *, controller: bool = False, block_owner_deletion: bool = False
) -> dict[str, Any]:
    """An ownerReference to `obj`, an object as the server stored it (it needs its uid)."""
    metadata = obj.get("metadata") or {}
    missing = [
        field
        for field, value in (
            ("apiVersion", obj.get("apiVersion")),
            ("kind", obj.get("kind")),
            ("metadata.name", metadata.get("name")),
            ("metadata.uid", metadata.get("uid")),
        )
        if not value
    ]
    if missing:
        raise ValueError(
            f'cannot refer to {obj.get("kind", "object")} "{metadata.get("name", "")}" as an '
            f"owner: it has no {', '.join(missing)} (is it the stored object?)"
        )
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def redact(obj: Mapping[str, Any]) -> Manifest:
    """A deep copy of `obj` with every value under a key named ``token`` replaced by
    ``<redacted>``, for printing (``--dry-run``, ``render``). `obj` is left unchanged.

    An empty token stays empty: it shows that the token controller has not filled it yet.
    """
    redacted: Manifest = _redact_value(copy.deepcopy(dict(obj)))
    return redacted


def applicable_secret(secret: Mapping[str, Any]) -> Manifest:
    """A provider Secret as `--dry-run` prints it: its values under `stringData`, as text, so
    that `kubectl apply -f` accepts the output, and the token a placeholder that is not one."""
    shown: Manifest = copy.deepcopy(dict(secret))
    values = {
        key: base64.b64decode(value).decode()
        for key, value in (shown.pop("data", None) or {}).items()
    }
    if values.get(PROVIDER_SECRET_TOKEN_KEY):
        values[PROVIDER_SECRET_TOKEN_KEY] = REDACTED
    shown["stringData"] = values
    return shown


def _redact_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_redact_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and key.lower() == "token" and item:
            result[key] = REDACTED
        else:
            result[key] = _redact_value(item)
    if result.get("kind") == "Secret":
        annotations = (result.get("metadata") or {}).get("annotations") or {}
        # kubectl apply copies the whole Secret, token included, into this annotation.
        if annotations.get(LAST_APPLIED_ANNOTATION):
            annotations[LAST_APPLIED_ANNOTATION] = REDACTED
    return result


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


# --- Bound tokens (TokenRequest) -----------------------------------------------------------------


def token_requester_role(service_account: str, namespace: str) -> Manifest:
    """Lets the account request new bound tokens for itself, and nothing else: what rotation
    with the Provider's own credentials needs when tokens come from the TokenRequest API."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": token_requester_name(service_account),
            "namespace": namespace,
            "labels": managed_labels(),
        },
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["serviceaccounts/token"],
                "resourceNames": [service_account],
                "verbs": ["create"],
            }
        ],
    }


def token_requester_binding(service_account: str, namespace: str) -> Manifest:
    name = token_requester_name(service_account)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": managed_labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }


def token_request(expiration_seconds: int) -> Manifest:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": expiration_seconds},
    }
