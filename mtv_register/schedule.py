"""Rotation on a schedule: a CronJob on the MTV host that runs `rotate --all --in-cluster`.

It runs as its own least-privileged ServiceAccount, whose Role (`ROTATOR_RULES`) reads Providers
and switches their Secrets, and nothing more. The builders of those four objects are pure; then
`check_cron` (what the CronJob controller's parser takes), `schedule` and `unschedule`, which
write and remove them, and `install` and `remove`, what the `schedule` and `unschedule`
commands run.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Final

from mtv_register import errors, forklift
from mtv_register.kube import Kube
from mtv_register.manifests import Manifest, managed_labels, service_account
from mtv_register.naming import FORKLIFT_GROUP, PROVIDER_PLURAL, ROTATION_CRONJOB, ROTATOR_NAME
from mtv_register.records import Change, Report
from mtv_register.registration import open_host

if TYPE_CHECKING:
    from mtv_register.clusters import Connector

Obj = dict[str, Any]

# -- what the CronJob is, and runs as (pure builders) ---------------------------------------------

# What `rotate --in-cluster` needs on the host, and nothing more: it reads Providers and switches
# their Secrets; on Forklift 2.10 it changes a Provider's generation (a `patch` of its settings)
# so that Forklift takes the new Secret up; it records each rotation as an Event on its Provider.
# The registered clusters are reached with each Provider's own token.
ROTATOR_RULES: Final[list[dict[str, Any]]] = [
    {
        "apiGroups": [FORKLIFT_GROUP],
        "resources": [PROVIDER_PLURAL],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "update"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]


def rotator_service_account(namespace: str) -> Manifest:
    return service_account(ROTATOR_NAME, namespace)


def rotator_role(namespace: str) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": ROTATOR_NAME, "namespace": namespace, "labels": managed_labels()},
        "rules": copy.deepcopy(ROTATOR_RULES),
    }


def rotator_role_binding(namespace: str) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": ROTATOR_NAME, "namespace": namespace, "labels": managed_labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROTATOR_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": ROTATOR_NAME, "namespace": namespace}],
    }


def rotation_command(namespace: str, max_age: str) -> list[str]:
    """The arguments the CronJob's container runs (the image's entrypoint is mtv-register)."""
    return [
        "rotate",
        "--all",
        "--in-cluster",
        "--mtv-namespace",
        namespace,
        "--max-age",
        max_age,
        "--yes",
    ]


def rotation_cron_job(namespace: str, *, schedule: str, max_age: str, image: str) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": ROTATION_CRONJOB, "namespace": namespace, "labels": managed_labels()},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": managed_labels()},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 1800,
                    "template": {
                        "metadata": {"labels": managed_labels()},
                        "spec": {
                            "serviceAccountName": ROTATOR_NAME,
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "rotate",
                                    "image": image,
                                    "args": rotation_command(namespace, max_age),
                                    "securityContext": {
                                        "allowPrivilegeEscalation": False,
                                        "runAsNonRoot": True,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                    "resources": {
                                        "requests": {"cpu": "50m", "memory": "96Mi"},
                                        "limits": {"memory": "256Mi"},
                                    },
                                }
                            ],
                        },
                    },
                },
            },
        },
    }


# -- the schedule ----------------------------------------------------------------------------------

# -- the schedule ----------------------------------------------------------------------------------

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


# (name, lowest, highest) of the five fields, as the CronJob controller's parser (robfig/cron)
# takes them; month and weekday names are accepted as words.
_CRON_RANGES = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def check_cron(expression: str) -> None:
    fields = expression.split()
    if expression.strip() in _CRON_MACROS:
        return
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise errors.UsageError(
            f'--every "{expression}" is not a cron schedule',
            fix='give five fields, e.g. "0 3 * * *" (03:00 daily), or @daily',
        )
    for text, (name, low, high) in zip(fields, _CRON_RANGES, strict=True):
        for number in re.findall(r"\d+", text.split("/")[0]):
            if not low <= int(number) <= high:
                raise errors.UsageError(
                    f'--every "{expression}": {number} is out of range for the {name} '
                    f"({low}-{high})",
                    fix='give five fields, e.g. "0 3 * * *" (03:00 daily), or @daily',
                )


def schedule_manifests(namespace: str, *, every: str, max_age: str, image: str) -> list[Obj]:
    return [
        rotator_service_account(namespace),
        rotator_role(namespace),
        rotator_role_binding(namespace),
        rotation_cron_job(namespace, schedule=every, max_age=max_age, image=image),
    ]


def schedule(
    host: Kube, namespace: str, *, every: str, max_age: str, image: str, report: Report
) -> list[Obj]:
    """Create or update the rotation CronJob and the least-privileged identity it runs as."""
    from mtv_register.bootstrap import ensure
    from mtv_register.kube import CRON_JOB, ROLE, ROLE_BINDING, SERVICE_ACCOUNT

    check_cron(every)
    wanted = schedule_manifests(namespace, every=every, max_age=max_age, image=image)
    kinds = (SERVICE_ACCOUNT, ROLE, ROLE_BINDING, CRON_JOB)
    same = {
        "ServiceAccount": lambda e, d: True,
        "Role": lambda e, d: e.get("rules") == d["rules"],
        "RoleBinding": lambda e, d: (
            e.get("subjects") == d["subjects"] and e.get("roleRef") == d["roleRef"]
        ),
        "CronJob": lambda e, d: _cron_spec(e) == _cron_spec(d),
    }

    def merge(existing: Obj, desired: Obj) -> Obj:
        merged = {**existing, **{k: v for k, v in desired.items() if k != "metadata"}}
        merged["metadata"] = {
            **existing["metadata"],
            "labels": {
                **(existing["metadata"].get("labels") or {}),
                **desired["metadata"]["labels"],
            },
        }
        return merged

    return [
        ensure(host, kind, obj, report, same=same[kind.kind], merge=merge)
        for kind, obj in zip(kinds, wanted, strict=True)
    ]


def _cron_spec(obj: Obj) -> tuple[Any, ...]:
    spec = obj.get("spec") or {}
    template = (spec.get("jobTemplate") or {}).get("spec", {}).get("template", {}).get("spec", {})
    container = (template.get("containers") or [{}])[0]
    return (
        spec.get("schedule"),
        spec.get("concurrencyPolicy"),
        container.get("image"),
        container.get("args"),
        template.get("serviceAccountName"),
    )


def unschedule(host: Kube, namespace: str, report: Report) -> None:
    from mtv_register.kube import CRON_JOB, ROLE, ROLE_BINDING, SERVICE_ACCOUNT

    for kind in (CRON_JOB, ROLE_BINDING, ROLE, SERVICE_ACCOUNT):
        name = ROTATION_CRONJOB if kind is CRON_JOB else ROTATOR_NAME
        obj = host.get(kind, name, namespace)
        if obj is None:
            continue
        if not forklift.is_managed(obj):
            report(
                Change(
                    host.context, kind.kind, name, namespace, "kept (not managed by mtv-register)"
                )
            )
            continue
        if host.delete(kind, name, namespace, uid=obj["metadata"]["uid"]):
            report(Change(host.context, kind.kind, name, namespace, "deleted"))


def install(
    *,
    kubeconfig: str | None,
    host: str | None,
    mtv_namespace: str | None,
    every: str,
    max_age: str,
    image: str,
    report: Report,
    dry_run: bool = False,
    connector: Connector | None = None,
) -> list[Obj]:
    """`schedule`: on the MTV host, in its MTV namespace, the four objects as written (with
    `dry_run`, as they would be, and nothing written)."""
    kube = open_host(kubeconfig=kubeconfig, host=host, in_cluster=False, connector=connector)
    try:
        namespace = forklift.find_mtv_namespace(kube, mtv_namespace)
        if dry_run:
            return schedule_manifests(namespace, every=every, max_age=max_age, image=image)
        return schedule(kube, namespace, every=every, max_age=max_age, image=image, report=report)
    finally:
        kube.close()


def remove(
    *,
    kubeconfig: str | None,
    host: str | None,
    mtv_namespace: str | None,
    report: Report,
    connector: Connector | None = None,
) -> None:
    """`unschedule`: the four objects removed from the MTV host's MTV namespace."""
    kube = open_host(kubeconfig=kubeconfig, host=host, in_cluster=False, connector=connector)
    try:
        unschedule(kube, forklift.find_mtv_namespace(kube, mtv_namespace), report)
    finally:
        kube.close()
