"""`doctor`'s hygiene checks: provider Secrets that skip TLS verification or keep their CA only
under `cacert` (which Forklift 2.14 drops), and orphans: managed ServiceAccounts, token Secrets
and bindings on a registered cluster that no Provider on this MTV host uses. `--fix` copies the CA
and removes the orphans, except a token Secret the API server saw used lately
(`kubernetes.io/legacy-token-last-used`): another MTV host may hold it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mtv_register import naming
from mtv_register.findings import OK, WARN, Finding, Member, Repair, Scope, each
from mtv_register.kube import (
    CLUSTER_ROLE_BINDING,
    INFRASTRUCTURE,
    SECRET,
    SERVICE_ACCOUNT,
    Kind,
    Kube,
)
from mtv_register.provider_secret import ProviderSecret

Obj = dict[str, Any]
LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"
RECENTLY_USED = dt.timedelta(days=2)  # the label holds a date, updated at most once a day
LEFTOVER_AGE = dt.timedelta(minutes=15)  # younger: a rotation may be under way


# --- hygiene ------------------------------------------------------------------------------------


def hygiene(scope: Scope) -> list[Finding]:
    found = each("hygiene", scope.remote, lambda m: _secret_hygiene(scope, m))
    found += each("hygiene", scope.remote, lambda m: orphans(scope, m))
    return found


def _secret_hygiene(scope: Scope, member: Member) -> list[Finding]:
    where = member.context
    secret = scope.secret_of(member.provider)
    if secret is None:
        return []
    held = ProviderSecret.from_secret(secret)
    name = secret["metadata"]["name"]
    found = []
    if held.insecure:
        found.append(
            Finding(
                "hygiene",
                where,
                WARN,
                f"provider Secret {name} skips TLS verification (insecureSkipVerify)",
                f"{scope.command} --ca-source root",
            )
        )
    if held.ca_only_under_cacert:
        found.append(
            Finding(
                "hygiene",
                where,
                WARN,
                f"provider Secret {name} holds its CA only under `cacert`, which Forklift 2.14 "
                "drops",
                "mtv-register doctor --fix (copies it to `ca.crt`)",
                repair=Repair(
                    f"copy the CA of Secret {scope.namespace}/{name} from cacert to ca.crt",
                    lambda: _copy_ca(scope.host, secret),
                ),
            )
        )
    if not found:
        found.append(
            Finding("hygiene", where, OK, f"provider Secret {name} verifies TLS under ca.crt")
        )
    return found


def _copy_ca(host: Kube, secret: Obj) -> str:
    meta = secret["metadata"]
    data = secret.get("data") or {}
    host.patch(
        SECRET,
        meta["name"],
        {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "data": {naming.PROVIDER_SECRET_CA_KEY: data[naming.PROVIDER_SECRET_LEGACY_CA_KEY]},
        },
        meta["namespace"],
    )
    return f"Secret {meta['namespace']}/{meta['name']}: CA copied to ca.crt"


def _in_use(scope: Scope, member: Member) -> tuple[set[str], set[str]]:
    """The service accounts and token Secrets ("<namespace>/<name>") that Providers on this MTV
    host pointing at the member's cluster use."""
    urls = {member.kube.url.rstrip("/")}
    own = scope.providers.get(member.provider)
    if own is not None:
        urls.add(str((own.get("spec") or {}).get("url", "")).rstrip("/"))
    infrastructure = scope.get(member.kube, INFRASTRUCTURE, "cluster")
    api_url = ((infrastructure or {}).get("status") or {}).get("apiServerURL")
    if api_url:
        urls.add(str(api_url).rstrip("/"))
    accounts, secrets = set(), set()
    for name, provider in scope.providers.items():
        if str((provider.get("spec") or {}).get("url", "")).rstrip("/") not in urls:
            continue
        secret = scope.secret_of(name)
        if secret is None:
            continue
        held = ProviderSecret.from_secret(secret)
        if held.service_account_ref:
            accounts.add(held.service_account_ref)
        if held.token_secret_ref:
            secrets.add(held.token_secret_ref)
            if not held.service_account_ref:  # recorded before the account was
                account = naming.DEFAULT_SERVICE_ACCOUNT
                accounts.add(f"{held.token_secret[0]}/{account}")
    return accounts, secrets


def orphans(scope: Scope, member: Member) -> list[Finding]:
    where = member.context
    kube = member.kube
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    accounts, in_use = _in_use(scope, member)
    unused = {
        _ref(account): account
        for account in scope.items(kube, SERVICE_ACCOUNT, None, selector)
        if _ref(account) not in accounts
    }
    tokens: dict[str, list[Obj]] = {}
    for secret in scope.items(kube, SECRET, None, selector):
        if secret.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE:
            meta = secret["metadata"]
            account = (meta.get("annotations") or {}).get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION)
            tokens.setdefault(f"{meta['namespace']}/{account}", []).append(secret)
    kept: list[str] = []
    orphaned: list[tuple[Kind, Obj]] = []
    for ref, account in sorted(unused.items()):
        recent = [day for s in tokens.get(ref, []) if (day := _used_lately(s, scope.now))]
        if recent:
            # Its token Secret goes with it (the token controller deletes them): keep both.
            kept.append(f"ServiceAccount {ref} (its token was used on {max(recent)})")
            continue
        orphaned.append((SERVICE_ACCOUNT, account))
        orphaned += [(SECRET, secret) for secret in tokens.get(ref, [])]
    orphan_refs = {_ref(obj) for kind, obj in orphaned if kind is SERVICE_ACCOUNT}
    for ref in accounts:  # an account in use: a rotation's leftover token Secrets
        for secret in tokens.get(ref, []):
            created = naming.parse_stamp(secret["metadata"].get("creationTimestamp"))
            old = created is None or scope.now - created > LEFTOVER_AGE
            if _ref(secret) not in in_use and old and not _used_lately(secret, scope.now):
                orphaned.append((SECRET, secret))
    for binding in scope.items(kube, CLUSTER_ROLE_BINDING, None, selector):
        subjects = {
            f"{s.get('namespace', '')}/{s.get('name', '')}"
            for s in binding.get("subjects") or []
            if s.get("kind") == "ServiceAccount"
        }
        if subjects and subjects <= orphan_refs:
            orphaned.append((CLUSTER_ROLE_BINDING, binding))
    found = []
    if kept:
        found.append(
            Finding(
                "hygiene",
                where,
                WARN,
                f"no Provider on {scope.host.context} uses " + "; ".join(kept) + ", but "
                "someone still does: another MTV host?",
                "leave it, or unregister it from the host that uses it",
            )
        )
    if not orphaned:
        return found or [Finding("hygiene", where, OK, "no orphaned credentials")]
    names = [f"{kind.kind} {_ref(obj)}" for kind, obj in orphaned]
    found.append(
        Finding(
            "hygiene",
            where,
            WARN,
            f"orphaned (no Provider on {scope.host.context} uses them): {', '.join(names)}",
            "mtv-register doctor --fix (removes them)",
            repair=Repair(
                f"on {where}, delete {', '.join(names)}", lambda: _remove(kube, orphaned)
            ),
        )
    )
    return found


def _ref(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _used_lately(secret: Obj, now: dt.datetime) -> str:
    """The day kube-apiserver last saw the token Secret's token used, when recent; else ""."""
    day = str((secret["metadata"].get("labels") or {}).get(LAST_USED_LABEL) or "")
    return day if day and _recent(day, now) else ""


def _recent(day: str, now: dt.datetime) -> bool:
    try:
        used = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return True  # unreadable: assume it is in use
    return now - (used + dt.timedelta(days=1)) <= RECENTLY_USED  # any time of that day


def _remove(kube: Kube, orphaned: list[tuple[Kind, Obj]]) -> str:
    """Delete each, guarded by its uid (an object made again meanwhile stays); secrets first."""
    order = {SECRET.kind: 0, CLUSTER_ROLE_BINDING.kind: 1, SERVICE_ACCOUNT.kind: 2}
    done = []
    for kind, obj in sorted(orphaned, key=lambda pair: order.get(pair[0].kind, 3)):
        meta = obj["metadata"]
        if kube.delete(kind, meta["name"], meta.get("namespace"), uid=meta.get("uid")):
            done.append(f"{kind.kind} {_ref(obj)}")
    return f"on {kube.context}: deleted " + (", ".join(done) if done else "nothing (already gone)")
