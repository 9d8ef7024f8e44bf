"""Validation of an events.k8s.io/v1 Event, as kube-apiserver's `ValidateEventCreate` and
`ValidateEventUpdate` (pkg/apis/core/validation/events.go) judge one sent to that API.

Upstream validates the internal (core) Event, so its field paths are the core names:
`involvedObject` for `regarding`, `message` for `note`, `firstTimestamp` for
`deprecatedFirstTimestamp`, and so on. A `regarding` without a namespace is refused outside
`default` and `kube-system`, which is how a missing `regarding` is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mtv_register.sandbox import apistatus

Obj = dict[str, Any]
Causes = list[tuple[str, str]]

GROUP = "events.k8s.io"
REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024
TYPES = ("Normal", "Warning")
# metav1.MicroTime is parsed with exactly this layout (RFC3339Micro).
MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
# events.k8s.io/v1 field -> the core field upstream's messages name.
CORE_NAMES = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
FIELDS = frozenset(
    {
        "eventTime",
        "series",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "regarding",
        "related",
        "note",
        "type",
        *CORE_NAMES,
    }
)
# What may not change once created, in upstream's order.
_IMMUTABLE = (
    "regarding",
    "reason",
    "note",
    "deprecatedSource",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "deprecatedCount",
    "type",
    "eventTime",
    "action",
    "related",
    "reportingController",
    "reportingInstance",
)


def _text(obj: Obj, field: str) -> str:
    value = obj.get(field)
    return value if isinstance(value, str) else ""


def _size(value: str) -> int:
    return len(value.encode())  # Go's len() counts bytes


def _decoded_time(obj: Obj, field: str) -> bool:
    """Whether a MicroTime is set; 400, as the decoder answers, when it does not parse."""
    value = obj.get(field)
    if value is None:
        return False
    if not isinstance(value, str) or not _MICRO_TIME.match(value):
        raise apistatus.bad_request(
            f'Event in version "v1" cannot be handled as a Event: parsing time '
            f"{json.dumps(value)} as {json.dumps(MICRO_TIME_LAYOUT)}: cannot parse"
        )
    return True


def _qualified_name(value: str) -> list[str]:
    """apimachinery's IsQualifiedName: an optional DNS subdomain prefix, then a name."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and "
            "'/' (e.g. 'example.com/MyName')"
        ]
    errors = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > 253 or not _SUBDOMAIN.match(prefix):
            errors.append(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
    name = parts[-1]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.match(name):
        errors.append(f"name part {QUALIFIED_NAME_MSG}")
    return errors


def _legacy(obj: Obj, has_time: bool) -> Causes:
    """`legacyValidateEvent`: what every Event must meet, whichever API it came through."""
    namespace = obj.get("metadata", {}).get("namespace", "")
    regarding = obj.get("regarding") or {}
    regarding_ns = regarding.get("namespace", "") if isinstance(regarding, dict) else ""
    mismatch = (
        "involvedObject.namespace",
        f"Invalid value: {json.dumps(regarding_ns)}: does not match event.namespace",
    )
    causes: Causes = []
    if not has_time:
        if (not regarding_ns and namespace not in ("", "default")) or (
            regarding_ns and regarding_ns != namespace
        ):
            causes.append(mismatch)
        return causes
    if not regarding_ns and namespace not in ("default", "kube-system"):
        causes.append(mismatch)
    controller = _text(obj, "reportingController")
    if not controller:
        causes.append(("reportingController", "Required value"))
    causes += [
        ("reportingController", f"Invalid value: {json.dumps(controller)}: {message}")
        for message in _qualified_name(controller)
    ]
    for field, path, limit in (
        ("reportingInstance", "reportingInstance", REPORTING_INSTANCE_LIMIT),
        ("action", "action", ACTION_LIMIT),
        ("reason", "reason", REASON_LIMIT),
    ):
        value = _text(obj, field)
        if not value:
            causes.append((path, "Required value"))
        if _size(value) > limit:
            causes.append((path, f'Invalid value: "": can have at most {limit} characters'))
    if _size(_text(obj, "note")) > NOTE_LIMIT:
        causes.append(("message", f'Invalid value: "": can have at most {NOTE_LIMIT} characters'))
    return causes


def _series(obj: Obj) -> Causes:
    series = obj.get("series")
    if not isinstance(series, dict):
        return []
    causes: Causes = []
    if int(series.get("count") or 0) < 2:
        causes.append(("series.count", 'Invalid value: "": should be at least 2'))
    if not _decoded_time(series, "lastObservedTime"):
        causes.append(("series.lastObservedTime", "Required value"))
    return causes


def event_causes(obj: Obj, old: Obj | None) -> Causes:
    """Why upstream refuses this Event (create when `old` is None, else update): [] if not."""
    has_time = _decoded_time(obj, "eventTime")
    causes = _legacy(obj, has_time)
    if old is not None:
        if obj.get("series") != old.get("series"):
            causes += _series(obj)
        for field in _IMMUTABLE:
            if obj.get(field) != old.get(field):
                value = obj.get(field)
                shown = json.dumps(value if value is not None else "")
                path = CORE_NAMES.get(field, field)
                causes.append((path, f"Invalid value: {shown}: field is immutable"))
        return causes
    causes += _series(obj)
    if not has_time:
        causes.append(("eventTime", "Required value"))
    kind = _text(obj, "type")
    if kind not in TYPES:
        causes.append(("type", f'Invalid value: "": has invalid value: {kind}'))
    for field in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp"):
        if obj.get(field):
            causes.append((CORE_NAMES[field], 'Invalid value: "": needs to be unset'))
    if obj.get("deprecatedCount"):
        causes.append(("count", 'Invalid value: "": needs to be unset'))
    source = obj.get("deprecatedSource") or {}
    if isinstance(source, dict) and (source.get("component") or source.get("host")):
        causes.append(("source", 'Invalid value: "": needs to be unset'))
    return causes
