"""What `doctor` finds: one `Finding` per check and cluster, and the `Scope` every check reads
from (the pair's three clients, the MTV host's Providers and their Secrets, each read once).

A check is a function of a `Scope` giving findings. One it cannot run for lack of a permission
gives a warning saying so (`guarded`), never a failure nor a silent pass.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mtv_register import errors, forklift
from mtv_register.kube import SECRET, Kind, Kube
from mtv_register.provider_secret import ProviderSecret

Obj = dict[str, Any]

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✔", WARN: "!", FAIL: "✘"}
SECURITY_FIX = "grant the reads `doctor` needs to whoever runs it (docs/security.md, doctor)"


@dataclass(frozen=True)
class Repair:
    """What `doctor --fix` does about a finding: `apply` does it and says what it did."""

    what: str
    apply: Callable[[], str]


@dataclass(frozen=True)
class Finding:
    check: str  # versions, feature-gates, kubevirt, network, providers, permissions, ...
    where: str  # a context, or "pair"
    result: str  # OK, WARN or FAIL
    saw: str
    fix: str = ""  # the command, the patch, or what to do
    ran: bool = True  # False: not checked, for lack of a permission (then a warning)
    repair: Repair | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> Obj:
        return {
            "check": self.check,
            "cluster": self.where,
            "result": self.result,
            "saw": self.saw,
            "fix": self.fix,
            "ran": self.ran,
            "fixable": self.repair is not None,
        }


@dataclass(frozen=True)
class Member:
    """One cluster of the pair, as `doctor` sees it."""

    role: str  # source or destination
    context: str
    kube: Kube  # the kubeconfig's client of the cluster
    provider: str  # its Provider's name on the MTV host
    uses_host_provider: bool


class Scope:
    """What every check reads: fetched once, from any thread. `members` are the source and the
    destination, two distinct contexts (`doctor.check_options`)."""

    def __init__(
        self,
        host: Kube,
        namespace: str,
        members: list[Member],
        providers: dict[str, Obj],
        *,
        warn_within: dt.timedelta,
        now: dt.datetime,
        command: str,
    ) -> None:
        self.host = host
        self.namespace = namespace
        self.members = members
        self.providers = providers
        self.warn_within = warn_within
        self.now = now
        self.command = command  # the register command that would (re)make this pair
        self._cache: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    @property
    def remote(self) -> list[Member]:
        """The members with a Provider of their own (not the host's local one)."""
        return [m for m in self.members if not m.uses_host_provider]

    def member(self, role: str) -> Member:
        return next(m for m in self.members if m.role == role)

    def kubectl(self, kube: Kube) -> str:
        return f"kubectl --context {kube.context}"

    def _cached(self, key: tuple[str, ...], read: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = read()
        with self._lock:
            self._cache.setdefault(key, value)
        return value

    def get(self, kube: Kube, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        return self._cached(
            (kube.context, kind.plural, namespace or "", name),
            lambda: kube.get(kind, name, namespace),
        )

    def items(
        self, kube: Kube, kind: Kind, namespace: str | None = None, selector: str = ""
    ) -> list[Obj]:
        """The objects of `kind`; none when the kind is not served there (a 404)."""

        def read() -> list[Obj]:
            try:
                listing = kube.list(kind, namespace, label_selector=selector)
            except errors.NotFound:
                return []
            return list(listing.get("items") or [])

        return self._cached((kube.context, kind.plural, namespace or "*", selector, "list"), read)

    def secret_of(self, provider: str) -> Obj | None:
        """The provider Secret of `provider` on the MTV host."""
        return self.get(self.host, SECRET, forklift.secret_name_for(provider), self.namespace)

    def held(self, member: Member) -> ProviderSecret | None:
        secret = self.secret_of(member.provider)
        return ProviderSecret.from_secret(secret) if secret else None


Check = Callable[[Scope], list[Finding]]


def guarded(name: str, where: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    """`check`'s findings. A refused read makes it one warning that says it was not checked; a
    cluster it could not speak to (TLS, unreachable, credentials refused) one failure saying so.
    A cancelled or timed-out run still stops."""
    from mtv_register import deadline

    try:
        return check()
    except (errors.TlsError, errors.UnreachableError, errors.AuthenticationFailed) as failure:
        if deadline.cancelled() or deadline.passed():
            raise
        return [Finding(name, where, FAIL, f"could not check: {failure.cause}", failure.fix)]
    except errors.PermissionDenied as refused:
        return [
            Finding(name, where, WARN, f"not checked: {refused.cause}", SECURITY_FIX, ran=False)
        ]


def each(
    name: str, members: Iterable[Member], check: Callable[[Member], list[Finding]]
) -> list[Finding]:
    """`check` of every member, each `guarded` on its own."""
    found: list[Finding] = []
    for member in members:
        found += guarded(name, member.context, functools.partial(check, member))
    return found


def parse_version(text: str) -> tuple[int, ...] | None:
    """ "v4.20.1", "4.20.1-3" or "2.12" as numbers; None when it does not start with one."""
    digits = []
    for part in text.strip().lstrip("v").split("."):
        number = ""
        for char in part:
            if not char.isdigit():
                break
            number += char
        if not number:
            break
        digits.append(int(number))
        if number != part:
            break
    return tuple(digits) or None
