"""`doctor`: is a registered pair ready for cross-cluster live migration, and are its credentials
sound. It reads the three clusters (source, destination, MTV host), runs every check of
`readiness` (the clusters) and `credential_checks` (the Providers and their credentials), and
reports each as passed, failed or a warning, with what it saw and the fix.

It changes nothing, except with `--fix`, which only removes orphaned credentials and copies a
CA held only under `cacert` to `ca.crt` (`Finding.repair`); it never touches a cluster's
configuration.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtv_register import (
    clusters,
    credential_checks,
    deadline,
    errors,
    forklift,
    hygiene,
    naming,
    readiness,
    readiness_network,
)
from mtv_register.findings import FAIL, OK, WARN, Check, Finding, Member, Scope
from mtv_register.kube import Kube

Obj = dict[str, Any]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("versions", readiness.versions),
    ("feature-gates", readiness.feature_gates),
    ("kubevirt", readiness_network.kubevirt),
    ("network", readiness_network.network),
    ("providers", credential_checks.providers),
    ("permissions", credential_checks.permissions),
    ("expiry", credential_checks.expiry),
    ("hygiene", hygiene.hygiene),
)
DEFAULT_WARN_WITHIN = dt.timedelta(days=30)


@dataclass(frozen=True)
class DoctorOptions:
    source: str
    destination: str
    host: str | None = None  # default: the destination
    kubeconfig: str | Path | None = None
    mtv_namespace: str | None = None
    source_name: str | None = None
    destination_name: str | None = None
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN
    strict: bool = False  # warnings fail too
    connector: clusters.Connector = field(default_factory=clusters.Connector)

    @property
    def host_context(self) -> str:
        return self.host or self.destination

    @property
    def register_command(self) -> str:
        """The register command that (re)makes this pair: what several fixes say to run."""
        words = [
            "mtv-register register",
            f"--source {self.source}",
            f"--destination {self.destination}",
        ]
        if self.host and self.host != self.destination:
            words.append(f"--host {self.host}")
        if self.source_name:
            words.append(f"--source-name {self.source_name}")
        if self.destination_name:
            words.append(f"--destination-name {self.destination_name}")
        return " ".join(words)


@dataclass
class DoctorReport:
    source: str
    destination: str
    host: str
    namespace: str
    findings: list[Finding]
    strict: bool = False
    repaired: list[str] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for f in self.findings if f.result == result)

    @property
    def healthy(self) -> bool:
        return self.count(FAIL) == 0 and (not self.strict or self.count(WARN) == 0)

    @property
    def repairs(self) -> list[Finding]:
        return [f for f in self.findings if f.repair is not None]

    def as_dict(self) -> Obj:
        return {
            "source": self.source,
            "destination": self.destination,
            "host": self.host,
            "namespace": self.namespace,
            "checks": [f.as_dict() for f in self.findings],
            "summary": {
                "passed": self.count(OK),
                "warnings": self.count(WARN),
                "failed": self.count(FAIL),
            },
            "notChecked": [f"{f.check} on {f.where}" for f in self.findings if not f.ran],
            "repaired": self.repaired,
        }


def check_options(options: DoctorOptions) -> None:
    if options.source == options.destination:
        raise errors.UsageError(
            f'the source and the destination are the same context ("{options.source}")',
            fix="pass two different contexts with --source and --destination",
        )
    if options.warn_within.total_seconds() < 0:
        raise errors.UsageError("--warn-within must not be negative", fix="e.g. --warn-within 30d")


def diagnose(
    options: DoctorOptions,
    *,
    confirm: Callable[[list[Finding]], bool] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> DoctorReport:
    """Run every check on the pair. With `confirm` (`--fix`), the repairs found are offered to
    it and, once it agrees, applied; the report is then of a second run, after them. Nothing
    else is ever written."""
    check_options(options)
    config = clusters.load_kubeconfig(options.kubeconfig)
    contexts = list(dict.fromkeys([options.host_context, options.source, options.destination]))
    kubes = {context: options.connector.connect(config, context) for context in contexts}
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    try:
        report = _run(options, kubes, clock())
        if confirm is None or not report.repairs or not confirm(report.repairs):
            return report
        repaired = []
        for finding in report.repairs:
            assert finding.repair is not None
            try:
                repaired.append(finding.repair.apply())
            except errors.MtvRegisterError as failure:
                repaired.append(f"could not {finding.repair.what}: {failure.cause}")
        after = _run(options, kubes, clock())
        after.repaired = repaired
        return after
    finally:
        for kube in kubes.values():
            kube.close()


def _run(options: DoctorOptions, kubes: dict[str, Kube], now: dt.datetime) -> DoctorReport:
    host = kubes[options.host_context]
    namespace, providers = forklift.discover(host, options.mtv_namespace)
    on_host = options.destination == options.host_context
    members = [
        Member(
            "source",
            options.source,
            kubes[options.source],
            options.source_name or naming.provider_name(options.source),
            False,
        ),
        Member(
            "destination",
            options.destination,
            kubes[options.destination],
            options.destination_name
            or (
                naming.HOST_PROVIDER_NAME if on_host else naming.provider_name(options.destination)
            ),
            on_host,
        ),
    ]
    scope = Scope(
        host,
        namespace,
        members,
        providers,
        warn_within=options.warn_within,
        now=now,
        command=options.register_command,
    )
    with deadline.pool(len(CHECKS)) as pool:
        results = list(pool.map(lambda named: named[1](scope), CHECKS))
    findings = [finding for result in results for finding in result]
    return DoctorReport(
        options.source, options.destination, host.context, namespace, findings, options.strict
    )
