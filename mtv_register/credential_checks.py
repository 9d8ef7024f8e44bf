"""`doctor`'s checks of the credentials: are both Providers Ready on what they hold now, can each
Provider's own token do what its ClusterRole grants, what expires within the horizon, and what
the tool left that nothing uses any more.

Permissions are proved with the Provider's own token (a SelfSubjectAccessReview per verb and
resource of each rule), so a hand-edited role, a removed binding or an admission policy shows
before a migration plan fails. What the tool left behind is `hygiene`'s.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from mtv_register import clusters, deadline, errors, manifests, naming, verdicts
from mtv_register.findings import FAIL, OK, WARN, Finding, Member, Scope, each
from mtv_register.kube import (
    CLUSTER_ROLE,
    INFRASTRUCTURE,
    SELF_SUBJECT_ACCESS_REVIEW,
    Kube,
)
from mtv_register.provider_secret import ProviderSecret

Obj = dict[str, Any]


def _days(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.0f} hours"


# --- Providers ----------------------------------------------------------------------------------


def providers(scope: Scope) -> list[Finding]:
    found = each("providers", scope.members, lambda m: _provider(scope, m))
    return found


def _provider(scope: Scope, member: Member) -> list[Finding]:
    where = member.context
    provider = scope.providers.get(member.provider)
    if provider is None:
        return [
            Finding(
                "providers",
                where,
                FAIL,
                f'no Provider "{member.provider}" in {scope.namespace} on {scope.host.context}',
                scope.command,
            )
        ]
    if verdicts.verdict(provider) != "ready":
        return [
            Finding(
                "providers",
                where,
                FAIL,
                f'Provider "{member.provider}" is not Ready: {verdicts.failure_message(provider)} '
                "(a re-run of register repairs its token, URL or CA)",
                scope.command,
            )
        ]
    found = [Finding("providers", where, OK, f'Provider "{member.provider}" is Ready')]
    if member.uses_host_provider:
        return found
    secret = scope.secret_of(member.provider)
    tested = (provider.get("status") or {}).get("secretResourceVersion")
    if secret is not None and tested is not None:
        current = secret["metadata"].get("resourceVersion")
        if str(tested) != str(current):
            found.append(
                Finding(
                    "providers",
                    where,
                    WARN,
                    f"Forklift's last good test used version {tested} of the provider Secret, "
                    f"which is now at {current}: the current credentials are not proved yet",
                    "wait up to 30 s for Forklift's next test, then run doctor again",
                )
            )
    infrastructure = scope.get(member.kube, INFRASTRUCTURE, "cluster")
    api_url = ((infrastructure or {}).get("status") or {}).get("apiServerURL")
    url = (provider.get("spec") or {}).get("url", "")
    if api_url and url.rstrip("/") != str(api_url).rstrip("/"):
        found.append(
            Finding(
                "providers",
                where,
                WARN,
                f"the Provider's URL {url} is not the cluster's API URL {api_url} "
                "(infrastructures.config.openshift.io/cluster); leave it if that is meant",
                f"{scope.command} --url-source infrastructure",
            )
        )
    return found


# --- effective permissions ----------------------------------------------------------------------


Grant = tuple[str, str, str]  # (API group, resource, verb)


def _grant(grant: Grant) -> str:
    group, resource, verb = grant
    return f"{verb} {resource}" + (f".{group}" if group else "")


def _token_client(scope: Scope, member: Member, held: ProviderSecret) -> Kube:
    return member.kube.connector.with_token(
        held.url,
        held.token,
        ca_pem=held.ca_pem,
        insecure=held.insecure,
        context=f'{member.context} as Provider "{member.provider}"',
    )


def denied(scope: Scope, member: Member, grants: list[Grant]) -> list[Grant] | None:
    """The grants the member's Provider token is refused (None: it has no provider Secret)."""
    held = scope.held(member)
    if held is None or not held.token:
        return None
    kube = _token_client(scope, member, held)
    try:
        with deadline.pool(8) as pool:
            allowed = list(pool.map(lambda grant: _allowed(kube, grant), grants))
    finally:
        kube.close()
    return [grant for grant, ok in zip(grants, allowed, strict=True) if not ok]


def _allowed(kube: Kube, grant: Grant) -> bool:
    group, resource, verb = grant
    resource, _, subresource = resource.partition("/")
    attributes = {"group": group, "resource": resource, "verb": verb}
    if subresource:
        attributes["subresource"] = subresource
    review = kube.create(
        SELF_SUBJECT_ACCESS_REVIEW,
        {
            "apiVersion": SELF_SUBJECT_ACCESS_REVIEW.api_version,
            "kind": SELF_SUBJECT_ACCESS_REVIEW.kind,
            "spec": {"resourceAttributes": attributes},
        },
    )
    return bool((review.get("status") or {}).get("allowed"))


def _rules(scope: Scope, member: Member, held: ProviderSecret) -> tuple[str, list[Obj]]:
    """The role the registration bound, and the rules it must grant: the seed's for a role the
    tool made (so a hand edit shows), the role's own for one it was given."""
    recorded = held.cluster_role or naming.DEFAULT_ROLE_NAME
    name = recorded.removeprefix("existing:")
    if recorded.startswith("existing:"):
        role = scope.get(member.kube, CLUSTER_ROLE, name)
        rules = list((role or {}).get("rules") or [])
    else:
        rules = list(manifests.SEED_CLUSTER_ROLE_RULES)
    if member.role == "destination" and _submariner_asked(scope):
        rules += list(manifests.SUBMARINER_RULES)
    return name, rules


def _submariner_asked(scope: Scope) -> bool:
    provider = scope.providers.get(scope.member("source").provider) or {}
    return str(((provider.get("spec") or {}).get("settings") or {}).get("submariner")) == "true"


def permissions(scope: Scope) -> list[Finding]:
    found = each("permissions", scope.remote, lambda m: _permissions(scope, m))
    return found


def _permissions(scope: Scope, member: Member) -> list[Finding]:
    where = member.context
    if member.provider not in scope.providers:
        return []  # the providers check says so
    held = scope.held(member)
    if held is None or not held.token:
        return [
            Finding(
                "permissions",
                where,
                FAIL,
                f'Provider "{member.provider}" has no provider Secret with a token',
                scope.command,
            )
        ]
    role, rules = _rules(scope, member, held)
    grants: list[Grant] = []
    owner: dict[Grant, int] = {}
    for number, rule in enumerate(rules, 1):
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    grant = (group, resource, verb)
                    if grant not in owner:
                        owner[grant] = number
                        grants.append(grant)
    try:
        missing = denied(scope, member, grants) or []
    except errors.AuthenticationFailed:
        return [
            Finding(
                "permissions",
                where,
                FAIL,
                f'{held.url} refuses the token of Provider "{member.provider}" (401); a rotation '
                "with your credentials on the cluster recovers it",
                f"mtv-register rotate --host {scope.host.context} --provider {member.provider} "
                f"--{member.role}-context {member.context}",
            )
        ]
    account = held.service_account_ref or "its service account"
    if not missing:
        return [
            Finding(
                "permissions",
                where,
                OK,
                f"the token of {account} holds all {len(grants)} grants of ClusterRole {role}",
            )
        ]
    by_rule: dict[int, list[Grant]] = {}
    for grant in missing:
        by_rule.setdefault(owner[grant], []).append(grant)
    namespace, _, name = account.partition("/")
    return [
        Finding(
            "permissions",
            where,
            FAIL,
            f"the token of {account} lacks rule {number} of ClusterRole {role}: "
            + ", ".join(_grant(grant) for grant in lacking)
            + f" (register restores the role and its binding; if they are intact, an admission "
            f"policy denies it: {scope.kubectl(member.kube)} auth can-i {lacking[0][2]} "
            f"{lacking[0][1]} --as system:serviceaccount:{namespace}:{name})",
            scope.command,
        )
        for number, lacking in sorted(by_rule.items())
    ]


# --- expiry -------------------------------------------------------------------------------------


def expiry(scope: Scope) -> list[Finding]:
    found = each("expiry", scope.remote, lambda m: _expiry(scope, m))
    return found


def token_expiry(held: ProviderSecret) -> dt.datetime | None:
    """When the token stops working: its recorded expiry, else its JWT `exp` (None: never)."""
    if held.expires_at is not None:
        return held.expires_at
    parts = held.token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return dt.datetime.fromtimestamp(exp, dt.UTC) if isinstance(exp, int | float) else None


def _against_horizon(scope: Scope, where: str, what: str, moment: dt.datetime, fix: str) -> Finding:
    """Failed once past, a warning within `--warn-within`, else passed."""
    if moment <= scope.now:
        return Finding("expiry", where, FAIL, f"{what} expired at {naming.stamp(moment)}", fix)
    saw = f"{what} expires in {_days(moment - scope.now)} ({naming.stamp(moment)})"
    if moment <= scope.now + scope.warn_within:
        return Finding("expiry", where, WARN, saw, fix)
    return Finding("expiry", where, OK, saw)


def _expiry(scope: Scope, member: Member) -> list[Finding]:
    where = member.context
    held = scope.held(member)
    if held is None:
        return []
    rotate = f"mtv-register rotate --host {scope.host.context} --provider {member.provider}"
    renew = f"renew the cluster's CA, then {scope.command} copies the new one"
    expires = token_expiry(held)
    if expires is None:
        found = [Finding("expiry", where, OK, "the token does not expire (a token Secret's)")]
    else:
        found = [_against_horizon(scope, where, "the token", expires, rotate)]
    if held.insecure or not held.ca_pem:
        return found
    try:
        not_after = clusters.ca_expiry(held.ca_pem)
    except errors.MtvRegisterError as bad:
        return [*found, Finding("expiry", where, FAIL, f"the Secret's CA: {bad.cause}", renew)]
    found.append(_against_horizon(scope, where, "the CA", not_after, renew))
    try:
        clusters.prove_tls(held.url, held.ca_pem, insecure=False, origin="the provider Secret")
    except errors.TlsError as refused:
        found.append(Finding("expiry", where, FAIL, refused.cause, scope.command))
    except errors.UnreachableError as unreachable:
        found.append(Finding("expiry", where, WARN, f"not checked from here: {unreachable.cause}"))
    else:
        found.append(Finding("expiry", where, OK, f"the Secret's CA verifies {held.url}"))
    return found
