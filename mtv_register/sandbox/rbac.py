"""RBAC authorisation for the sandbox API server.

The sandbox must refuse what a real cluster refuses, in the same words, or tests passing against
it prove nothing about a real cluster. So this reproduces kube-apiserver: the RBAC authorizer and
its rule resolver (``plugin/pkg/auth/authorizer/rbac``, ``pkg/registry/rbac/validation``), the
escalation check (component-helpers' ``Covers``) and the 403 wording (``responsewriters``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"
SUPERUSER_GROUP = "system:masters"

Rule = dict[str, Any]
RbacLister = Callable[[str, str | None], list[dict[str, Any]]]


@dataclass(frozen=True)
class UserInfo:
    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class Attributes:
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = "v1"
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def user_for_service_account(namespace: str, name: str, uid: str = "") -> UserInfo:
    """The identity the token authenticator gives a service account's token; its uid is the
    account's, as upstream's serviceaccount.UserInfo sets it."""
    return UserInfo(
        username=f"system:serviceaccount:{namespace}:{name}",
        groups=(
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ),
        uid=uid,
    )


def forbidden_message(user: UserInfo, attrs: Attributes, reason: str = "") -> str:
    """The Status message of the 403 kube-apiserver returns for a denied request.

    ``reason`` is a denial's ``Decision.reason``; the real server appends it when RBAC hit
    resolution errors (e.g. a binding to a missing role).
    """
    if not attrs.resource_request:
        detail = f"User {_q(user.username)} cannot {attrs.verb} path {_q(attrs.path)}"
    else:
        scope = (
            f"in the namespace {_q(attrs.namespace)}" if attrs.namespace else "at the cluster scope"
        )
        detail = (
            f"User {_q(user.username)} cannot {attrs.verb} resource {_q(_combined(attrs))}"
            f" in API group {_q(attrs.api_group)} {scope}"
        )
    # Upstream escapes HTML-looking characters so the message cannot be rendered as markup.
    detail = detail.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if reason:
        detail = f"{detail}: {reason}"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if not qualified:
        return f"forbidden: {detail}"
    if not attrs.name:
        return f"{qualified} is forbidden: {detail}"
    return f"{qualified} {_q(attrs.name)} is forbidden: {detail}"


class Authorizer:
    """Decides requests from the RBAC objects the lister returns, re-read on every call."""

    def __init__(self, lister: RbacLister) -> None:
        self._list = lister

    def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        if SUPERUSER_GROUP in user.groups:
            return Decision(allowed=True)
        errors: list[str] = []
        for source, rule, error in self._visit(user, attrs.namespace):
            if rule is not None and _rule_allows(attrs, rule):
                return Decision(allowed=True, reason=f"RBAC: allowed by {source}")
            if error:
                errors.append(error)
        return Decision(allowed=False, reason=_aggregate(errors))

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[Rule]]:
        """(resourceRules, nonResourceRules) as SelfSubjectRulesReview status returns them."""
        rules = list(self._rules(user, namespace))
        return (
            [
                _fields(r, "verbs", "apiGroups", "resources", "resourceNames")
                for r in rules
                if _field(r, "resources")
            ],
            [_fields(r, "verbs", "nonResourceURLs") for r in rules if _field(r, "nonResourceURLs")],
        )

    def covers(self, user: UserInfo, namespace: str, rules: list[Rule]) -> bool:
        """True when the user already holds every permission in `rules` (in that namespace, or
        cluster-wide when namespace == ''): kube-apiserver's privilege-escalation check for
        creating/updating Roles/ClusterRoles and their bindings."""
        return not self.escalation_denial(user, namespace, rules)

    def escalation_denial(self, user: UserInfo, namespace: str, rules: list[Rule]) -> str:
        """'' when the user holds every permission in `rules`; otherwise the reason upstream's
        ConfirmNoEscalation gives, naming each missing permission in CompactString form."""
        if SUPERUSER_GROUP in user.groups:
            return ""
        owned: list[Rule] = []
        errors: list[str] = []
        for _, rule, error in self._visit(user, namespace):
            if rule is not None:
                owned.append(rule)
            elif error:
                errors.append(error)
        missing = [
            sub
            for rule in rules
            for sub in _breakdown(rule)
            if not any(_rule_covers(owner, sub) for owner in owned)
        ]
        if not missing:
            return ""
        message = (
            f"user {_q(user.username)} (groups={_go_strings(list(user.groups))}) is attempting "
            "to grant RBAC permissions not currently held:\n"
            + "\n".join(sorted({_compact_string(r) for r in _compact(missing)}))
        )
        if errors:
            message += f"; resolution errors: [{' '.join(errors)}]"
        return message

    def _rules(self, user: UserInfo, namespace: str) -> Iterator[Rule]:
        return (rule for _, rule, _ in self._visit(user, namespace) if rule is not None)

    def _visit(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, Rule | None, str]]:
        """Yield (source, rule, error) in upstream order: ClusterRoleBindings first, then the
        namespace's RoleBindings. Lazy, so an allow stops reading further bindings."""
        scopes: list[tuple[str, str]] = [("", "ClusterRoleBinding")]
        if namespace:
            scopes.append((namespace, "RoleBinding"))
        for binding_ns, kind in scopes:
            bindings = self._list(kind.lower() + "s", binding_ns or None)
            for binding in bindings:
                meta = binding.get("metadata") or {}
                if binding_ns and meta.get("namespace", binding_ns) != binding_ns:
                    continue
                subject = next(
                    (s for s in binding.get("subjects") or [] if _applies(user, s, binding_ns)),
                    None,
                )
                if subject is None:
                    continue
                ref = binding.get("roleRef") or {}
                rules, error = self._role_rules(ref, binding_ns)
                if error:
                    yield "", None, error
                    continue
                name = meta.get("name", "") + (f"/{binding_ns}" if binding_ns else "")
                source = (
                    f"{kind} {_q(name)} of {ref.get('kind', '')} {_q(ref.get('name', ''))}"
                    f" to {_describe(subject, binding_ns)}"
                )
                for rule in rules:
                    yield source, rule, ""

    def _role_rules(self, ref: dict[str, Any], namespace: str) -> tuple[list[Rule], str]:
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind == "ClusterRole":
            candidates = self._list("clusterroles", None)
        elif kind == "Role":
            # A Role only ever resolves in the binding's own namespace (never for a CRB).
            candidates = self._list("roles", namespace) if namespace else []
        else:
            return [], f"unsupported role reference kind: {_q(kind)}"
        for role in candidates:
            meta = role.get("metadata") or {}
            if meta.get("name") == name and (
                kind == "ClusterRole" or meta.get("namespace") == namespace
            ):
                return list(role.get("rules") or []), ""
        # Worded as the informer lister's NotFound error, which upstream surfaces in the 403.
        return [], f"{kind.lower()}.{RBAC_GROUP} {_q(name)} not found"


def _q(value: str) -> str:
    """Go's %q for the plain printable strings Kubernetes names are made of."""
    return json.dumps(value, ensure_ascii=False)


def _field(rule: Rule, key: str) -> list[str]:
    return list(rule.get(key) or [])


def _fields(rule: Rule, *keys: str) -> Rule:
    """The rule's non-empty fields (as Go's omitempty serialises them); verbs always."""
    return {k: _field(rule, k) for k in keys if k == "verbs" or _field(rule, k)}


def _combined(attrs: Attributes) -> str:
    return f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource


def _aggregate(errors: list[str]) -> str:
    """An RBAC denial reason, worded as utilerrors.NewAggregate prints deduplicated errors."""
    unique = list(dict.fromkeys(errors))
    if not unique:
        return ""
    return "RBAC: " + (unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")


def _applies(user: UserInfo, subject: dict[str, Any], binding_ns: str) -> bool:
    kind, name = subject.get("kind"), str(subject.get("name", ""))
    if kind == "User":
        return user.username == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # An unqualified ServiceAccount subject means the binding's namespace; in a
        # ClusterRoleBinding there is none, so it matches nobody.
        sa_ns = subject.get("namespace") or binding_ns
        return bool(sa_ns) and user.username == f"system:serviceaccount:{sa_ns}:{name}"
    return False


def _describe(subject: dict[str, Any], binding_ns: str) -> str:
    kind, name = subject.get("kind", ""), str(subject.get("name", ""))
    if kind == "ServiceAccount":
        return f"{kind} {_q(name + '/' + (subject.get('namespace') or binding_ns))}"
    return f"{kind} {_q(name)}"


def _url_matches(pattern: str, path: str) -> bool:
    return pattern == path or (pattern.endswith("*") and path.startswith(pattern.rstrip("*")))


def _rule_allows(attrs: Attributes, rule: Rule) -> bool:
    verbs = _field(rule, "verbs")
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(_url_matches(url, attrs.path) for url in _field(rule, "nonResourceURLs"))
    groups = _field(rule, "apiGroups")
    if "*" not in groups and attrs.api_group not in groups:
        return False
    # Upstream knows only "*", an exact (combined) match and "*/<sub>"; "<res>/*" is literal.
    resources = _field(rule, "resources")
    sub_wildcard = bool(attrs.subresource) and f"*/{attrs.subresource}" in resources
    if "*" not in resources and _combined(attrs) not in resources and not sub_wildcard:
        return False
    names = _field(rule, "resourceNames")
    return not names or attrs.name in names


def _breakdown(rule: Rule) -> Iterator[Rule]:
    """Split a rule into atomic rules of one group, resource, verb and resource name each."""
    names: list[str | None] = [*_field(rule, "resourceNames")] or [None]
    for group in _field(rule, "apiGroups"):
        for resource in _field(rule, "resources"):
            for verb in _field(rule, "verbs"):
                for name in names:
                    sub = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                    yield sub | ({"resourceNames": [name]} if name is not None else {})
    for url in _field(rule, "nonResourceURLs"):
        for verb in _field(rule, "verbs"):
            yield {"nonResourceURLs": [url], "verbs": [verb]}


def _go_strings(values: list[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`."""
    return "[" + " ".join(_q(v) for v in values) + "]"


def _compact(rules: list[Rule]) -> list[Rule]:
    """Upstream's CompactRules: atomic rules differing only in their verbs become one rule."""
    simple: dict[tuple[str, str, tuple[str, ...]], Rule] = {}
    others: list[Rule] = []
    for rule in rules:
        groups, resources = _field(rule, "apiGroups"), _field(rule, "resources")
        names = _field(rule, "resourceNames")
        if len(groups) == 1 and len(resources) == 1 and len(names) <= 1:
            key = (groups[0], resources[0], tuple(names))
            if key in simple:
                simple[key]["verbs"] = [*simple[key]["verbs"], *_field(rule, "verbs")]
            else:
                simple[key] = {**rule, "verbs": _field(rule, "verbs")}
        else:
            others.append(rule)
    return [*others, *simple.values()]


def _compact_string(rule: Rule) -> str:
    """Upstream's rbacv1helpers.CompactString, as escalation messages print a rule."""
    parts = [
        f"{label}:{_go_strings(_field(rule, key))}"
        for label, key in (
            ("APIGroups", "apiGroups"),
            ("Resources", "resources"),
            ("NonResourceURLs", "nonResourceURLs"),
            ("ResourceNames", "resourceNames"),
            ("Verbs", "verbs"),
        )
        if _field(rule, key)
    ]
    return "{" + ", ".join(parts) + "}"


def _rule_covers(owner: Rule, sub: Rule) -> bool:
    """Whether one owned rule grants an atomic rule. Requested wildcards are compared as
    literals, so only the owner's own wildcards cover them."""

    def has_all(key: str) -> bool:
        owned = _field(owner, key)
        return "*" in owned or set(_field(sub, key)) <= set(owned)

    owned_res = _field(owner, "resources")
    resources_ok = "*" in owned_res or all(
        res in owned_res or ("/" in res and "*/" + res.split("/", 1)[1] in owned_res)
        for res in _field(sub, "resources")
    )
    urls_ok = all(
        any(_url_matches(own, url) for own in _field(owner, "nonResourceURLs"))
        for url in _field(sub, "nonResourceURLs")
    )
    owned_names, sub_names = _field(owner, "resourceNames"), _field(sub, "resourceNames")
    # An unnamed request needs an unnamed grant; a named one also fits a grant listing it.
    names_ok = not owned_names or (bool(sub_names) and set(sub_names) <= set(owned_names))
    return has_all("verbs") and has_all("apiGroups") and resources_ok and urls_ok and names_ok
