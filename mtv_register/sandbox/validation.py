"""Object validation (422 Invalid) and strict field decoding (400), per kind, as the real server.

Only the rules that the objects of this project meet are reproduced; each is worded as
kube-apiserver words it so clients parse the same messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from mtv_register.sandbox import apistatus, event_validation
from mtv_register.sandbox.resources import ResourceType

Obj = dict[str, Any]
Causes = list[tuple[str, str]]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)

_META_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
_TOP_FIELDS: dict[str, set[str]] = {
    "Namespace": {"spec", "status"},
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "ConfigMap": {"data", "binaryData", "immutable"},
    "ClusterRole": {"rules", "aggregationRule"},
    "Role": {"rules"},
    "ClusterRoleBinding": {"subjects", "roleRef"},
    "RoleBinding": {"subjects", "roleRef"},
    "StorageClass": {
        "provisioner",
        "parameters",
        "reclaimPolicy",
        "mountOptions",
        "allowVolumeExpansion",
        "volumeBindingMode",
        "allowedTopologies",
    },
}


def _name_causes(rtype: ResourceType, name: str) -> Causes:
    if rtype.group == "rbac.authorization.k8s.io":
        # RBAC names are path segments, which is why `system:` names are allowed.
        if name in (".", "..") or "/" in name or "%" in name:
            return [("metadata.name", f"Invalid value: \"{name}\": may not contain '/' or '%'")]
        return []
    if rtype.kind == "Namespace":
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return [("metadata.name", f'Invalid value: "{name}": {LABEL_MSG}')]
        return []
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [("metadata.name", f'Invalid value: "{name}": {SUBDOMAIN_MSG}')]
    return []


def _label_causes(labels: dict[str, Any]) -> Causes:
    causes: Causes = []
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        if not _QUALIFIED_NAME.match(name) or len(name) > 63:
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{key}": name part must consist '
                    "of alphanumeric characters, '-', '_' or '.'",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be '
                    "an empty string or consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character",
                )
            )
    return causes


def strict_unknown_fields(rtype: ResourceType, obj: Obj) -> list[str]:
    """Fields the kind does not have; for built-in kinds only (CRDs here preserve unknowns)."""
    unknown = [f"metadata.{k}" for k in obj.get("metadata", {}) if k not in _META_FIELDS]
    allowed: set[str] | frozenset[str] | None = (
        event_validation.FIELDS
        if rtype.group == event_validation.GROUP
        else _TOP_FIELDS.get(rtype.kind)
    )
    if allowed is not None:
        unknown += [k for k in obj if k not in allowed | {"apiVersion", "kind", "metadata"}]
    return unknown


def validate(rtype: ResourceType, obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid when `obj` (and, for an update, its change from `old`) is not valid."""
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    causes: Causes = []
    if not name and not meta.get("generateName"):
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif name:
        causes += _name_causes(rtype, name)
    causes += _label_causes(meta.get("labels") or {})
    checker = _GROUP_KIND_CHECKS.get((rtype.group, rtype.kind)) or _KIND_CHECKS.get(rtype.kind)
    if checker is not None:
        causes += checker(obj, old)
    if causes:
        raise apistatus.invalid(
            rtype.kind, rtype.group, name or meta.get("generateName", ""), causes
        )


def _secret(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    for key, value in (obj.get("data") or {}).items():
        if not _CONFIG_KEY.match(key):
            causes.append(
                (
                    f"data[{key}]",
                    f'Invalid value: "{key}": a valid config key must '
                    "consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
        try:
            base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            raise apistatus.bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                f"at input byte 0 (key {key})"
            ) from None
    secret_type = obj.get("type", "Opaque")
    if secret_type == "kubernetes.io/service-account-token":
        annotations = obj.get("metadata", {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(
                ("metadata.annotations[kubernetes.io/service-account.name]", "Required value")
            )
    if old is not None and old.get("type", "Opaque") != secret_type:
        causes.append(("type", f'Invalid value: "{secret_type}": field is immutable'))
    if (
        old is not None
        and old.get("immutable")
        and (old.get("data") != obj.get("data") or old.get("stringData") != obj.get("stringData"))
    ):
        causes.append(("data", "Forbidden: field is immutable when `immutable` is set"))
    return causes


def _rules(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    for index, rule in enumerate(obj.get("rules") or []):
        if not rule.get("verbs"):
            causes.append(
                (f"rules[{index}].verbs", "Required value: verbs must contain at least one value")
            )
        if rule.get("nonResourceURLs"):
            if obj.get("kind") == "Role":
                causes.append(
                    (
                        f"rules[{index}].nonResourceURLs",
                        "Invalid value: namespaced rules cannot apply to non-resource URLs",
                    )
                )
        elif not rule.get("apiGroups") and rule.get("resources"):
            causes.append(
                (
                    f"rules[{index}].apiGroups",
                    "Required value: resource rules must supply at least one api group",
                )
            )
        elif not rule.get("resources"):
            causes.append(
                (
                    f"rules[{index}].resources",
                    "Required value: resource rules must supply at least one resource",
                )
            )
    return causes


def _binding(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    role_ref = obj.get("roleRef") or {}
    allowed_kinds = (
        ("ClusterRole",) if obj.get("kind") == "ClusterRoleBinding" else ("ClusterRole", "Role")
    )
    if role_ref.get("apiGroup") != "rbac.authorization.k8s.io":
        causes.append(
            (
                "roleRef.apiGroup",
                f'Unsupported value: "{role_ref.get("apiGroup", "")}": supported values: '
                '"rbac.authorization.k8s.io"',
            )
        )
    if role_ref.get("kind") not in allowed_kinds:
        causes.append(
            (
                "roleRef.kind",
                f'Unsupported value: "{role_ref.get("kind", "")}": '
                f"supported values: {', '.join(repr(k) for k in allowed_kinds)}",
            )
        )
    if not role_ref.get("name"):
        causes.append(("roleRef.name", "Required value"))
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        # Upstream prints the internal Go struct with %#v.
        go_ref = ", ".join(
            f"{field}:{json.dumps(role_ref.get(key, ''))}"
            for field, key in (("APIGroup", "apiGroup"), ("Kind", "kind"), ("Name", "name"))
        )
        causes.append(
            ("roleRef", f"Invalid value: rbac.RoleRef{{{go_ref}}}: cannot change roleRef")
        )
    for index, subject in enumerate(obj.get("subjects") or []):
        kind = subject.get("kind")
        if kind not in ("ServiceAccount", "User", "Group"):
            causes.append(
                (
                    f"subjects[{index}].kind",
                    f'Unsupported value: "{kind}": supported '
                    'values: "ServiceAccount", "User", "Group"',
                )
            )
        if not subject.get("name"):
            causes.append((f"subjects[{index}].name", "Required value"))
        if (
            kind == "ServiceAccount"
            and not subject.get("namespace")
            and (obj.get("kind") == "ClusterRoleBinding")
        ):
            causes.append((f"subjects[{index}].namespace", "Required value"))
    return causes


def _provider(obj: Obj, old: Obj | None) -> Causes:
    spec = obj.get("spec")
    causes: Causes = []
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    for key in ("type", "url"):
        if key in spec and not isinstance(spec[key], str):
            causes.append(
                (
                    f"spec.{key}",
                    f'Invalid value: "{type(spec[key]).__name__}": '
                    f"spec.{key} in body must be of type string: "
                    f'"{type(spec[key]).__name__}"',
                )
            )
    if "secret" in spec and not isinstance(spec["secret"], dict):
        causes.append(("spec.secret", "Invalid value: spec.secret in body must be of type object"))
    return causes


def _crd(obj: Obj, old: Obj | None) -> Causes:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes: Causes = []
    if not spec.get("group"):
        causes.append(("spec.group", "Required value"))
    if not names.get("plural") or not names.get("kind"):
        causes.append(("spec.names", "Required value"))
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if obj.get("metadata", {}).get("name") != expected:
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{obj["metadata"].get("name")}": '
                f'must be spec.names.plural+"."+spec.group',
            )
        )
    return causes


# Kinds whose name another group uses too (a core Event is judged by other rules).
_GROUP_KIND_CHECKS = {(event_validation.GROUP, "Event"): event_validation.event_causes}
_KIND_CHECKS = {
    "Secret": _secret,
    "ClusterRole": _rules,
    "Role": _rules,
    "ClusterRoleBinding": _binding,
    "RoleBinding": _binding,
    "Provider": _provider,
    "CustomResourceDefinition": _crd,
}
