"""Tests for the sandbox's RBAC authorizer: decisions, 403 wording and the escalation check."""

from __future__ import annotations

from typing import Any

import pytest

from mtv_register.sandbox.rbac import (
    Attributes,
    Authorizer,
    UserInfo,
    forbidden_message,
    user_for_service_account,
)

READ = ["get", "list", "watch"]
FULL = [*READ, "create", "update", "patch", "delete"]
KV, CDI, IT = "kubevirt.io", "cdi.kubevirt.io", "instancetype.kubevirt.io"
RBAC = "rbac.authorization.k8s.io"


def rule(group: str, resources: list[str], verbs: list[str], **extra: Any) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs, **extra}


CORE = ["secrets", "namespaces", "configmaps", "persistentvolumes", "persistentvolumeclaims"]
SEED_RULES = [
    rule("forklift.konveyor.io", ["*"], READ),
    rule("", CORE, FULL),
    rule("k8s.cni.cncf.io", ["network-attachment-definitions"], READ),
    rule("storage.k8s.io", ["storageclasses"], READ),
    rule(
        KV,
        ["virtualmachines", "virtualmachines/finalizers", "virtualmachineinstancemigrations"],
        FULL,
    ),
    rule(KV, ["kubevirts", "virtualmachineinstances"], READ),
    rule(CDI, ["datavolumes", "datavolumes/finalizers"], FULL),
    rule("apps", ["deployments"], FULL),
    rule(IT, ["virtualmachineclusterpreferences", "virtualmachineclusterinstancetypes"], READ),
    rule(IT, ["virtualmachinepreferences", "virtualmachineinstancetypes"], FULL),
]
SA = user_for_service_account("mtv", "migrator")
ALICE = UserInfo("alice", ("system:authenticated",))
KINDS = {
    "clusterroles": "ClusterRole",
    "clusterrolebindings": "ClusterRoleBinding",
    "roles": "Role",
    "rolebindings": "RoleBinding",
}


def obj(kind: str, name: str, namespace: str = "", **body: Any) -> dict[str, Any]:
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"kind": kind, "metadata": meta, **body}


def role(kind: str, name: str, rules: list[dict[str, Any]], ns: str = "") -> dict[str, Any]:
    return obj(kind, name, ns, rules=rules)


def binding(
    kind: str, name: str, ref: tuple[str, str], subjects: list[dict[str, Any]], ns: str = ""
) -> dict[str, Any]:
    return obj(kind, name, ns, roleRef={"kind": ref[0], "name": ref[1]}, subjects=subjects)


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name}


def authorizer(*objects: dict[str, Any]) -> Authorizer:
    def lister(plural: str, namespace: str | None) -> list[dict[str, Any]]:
        return [
            o
            for o in objects
            if o["kind"] == KINDS[plural] and namespace in (None, o["metadata"].get("namespace"))
        ]

    return Authorizer(lister)


def granted(rules: list[dict[str, Any]], subject: dict[str, Any], ns: str = "") -> Authorizer:
    """Bind one role holding `rules` to `subject`: cluster-wide, or in `ns` via a RoleBinding."""
    if ns:
        ref = ("Role", "r")
        return authorizer(
            role("Role", "r", rules, ns), binding("RoleBinding", "b", ref, [subject], ns)
        )
    ref = ("ClusterRole", "r")
    return authorizer(
        role("ClusterRole", "r", rules), binding("ClusterRoleBinding", "b", ref, [subject])
    )


def seeded(*extra: dict[str, Any]) -> Authorizer:
    subject = {"kind": "ServiceAccount", "name": "migrator", "namespace": "mtv"}
    ref = ("ClusterRole", "live-migration-role")
    return authorizer(
        role("ClusterRole", "live-migration-role", SEED_RULES),
        binding("ClusterRoleBinding", "migrator", ref, [subject]),
        *extra,
    )


def res(verb: str, resource: str, ns: str = "", group: str = "", **kw: Any) -> Attributes:
    return Attributes(verb=verb, api_group=group, resource=resource, namespace=ns, **kw)


def url(verb: str, path: str) -> Attributes:
    return Attributes(verb=verb, resource_request=False, path=path)


def test_superuser_group_is_allowed_everything() -> None:
    admin = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
    assert authorizer().authorize(admin, res("delete", "nodes", name="n1")).allowed
    assert authorizer().authorize(admin, url("post", "/anything")).allowed


def test_service_account_is_allowed_by_cluster_role_binding_to_seed_role() -> None:
    authz = seeded()
    decision = authz.authorize(SA, res("list", "providers", "mtv", "forklift.konveyor.io"))
    assert decision.allowed
    assert decision.reason == (
        'RBAC: allowed by ClusterRoleBinding "migrator" of ClusterRole "live-migration-role"'
        ' to ServiceAccount "migrator/mtv"'
    )
    assert authz.authorize(SA, res("list", "namespaces")).allowed
    assert authz.authorize(SA, res("create", "secrets", "mtv")).allowed
    assert authz.authorize(SA, res("get", "storageclasses", group="storage.k8s.io")).allowed
    assert authz.authorize(SA, res("update", "virtualmachines", "x", KV)).allowed
    assert not authz.authorize(SA, res("delete", "virtualmachineinstances", "x", KV)).allowed
    stranger = user_for_service_account("other", "migrator")
    assert not authz.authorize(stranger, res("list", "secrets")).allowed


def test_seed_role_forbids_listing_nodes_and_creating_clusterroles() -> None:
    authz = seeded()
    nodes, crs = res("list", "nodes"), res("create", "clusterroles", group=RBAC)
    assert not authz.authorize(SA, nodes).allowed
    assert not authz.authorize(SA, crs).allowed
    who = 'User "system:serviceaccount:mtv:migrator"'
    assert forbidden_message(SA, nodes) == (
        f'nodes is forbidden: {who} cannot list resource "nodes" in API group ""'
        " at the cluster scope"
    )
    assert forbidden_message(SA, crs) == (
        f"clusterroles.rbac.authorization.k8s.io is forbidden: {who} cannot create resource"
        ' "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    )


def test_role_binding_to_cluster_role_grants_only_in_its_namespace() -> None:
    authz = authorizer(
        role("ClusterRole", "secret-reader", [rule("", ["secrets"], READ)]),
        binding("RoleBinding", "rb", ("ClusterRole", "secret-reader"), [user("alice")], "team"),
    )
    decision = authz.authorize(ALICE, res("get", "secrets", "team", name="s"))
    assert decision.allowed
    assert decision.reason == (
        'RBAC: allowed by RoleBinding "rb/team" of ClusterRole "secret-reader" to User "alice"'
    )
    assert not authz.authorize(ALICE, res("get", "secrets", "other", name="s")).allowed
    assert not authz.authorize(ALICE, res("list", "secrets")).allowed


def test_service_account_subject_without_namespace_means_the_binding_namespace() -> None:
    sa_subject, get_pod = {"kind": "ServiceAccount", "name": "migrator"}, res("get", "pods", "mtv")
    namespaced = granted([rule("", ["pods"], ["get"])], sa_subject, "mtv")
    assert namespaced.authorize(SA, get_pod).allowed
    # A ClusterRoleBinding has no namespace to default to, so the subject matches nobody.
    assert not granted([rule("", ["pods"], ["get"])], sa_subject).authorize(SA, get_pod).allowed


def test_role_in_another_namespace_grants_nothing() -> None:
    authz = authorizer(
        role("Role", "all", [rule("*", ["*"], ["*"])], "elsewhere"),
        binding("RoleBinding", "rb", ("Role", "all"), [user("alice")], "team"),
    )
    decision = authz.authorize(ALICE, res("get", "pods", "team", name="p"))
    assert not decision.allowed
    assert decision.reason == 'RBAC: role.rbac.authorization.k8s.io "all" not found'
    assert not authz.authorize(ALICE, res("get", "pods", "elsewhere", name="p")).allowed


def test_binding_to_missing_role_grants_nothing_and_its_error_reaches_the_message() -> None:
    ref = ("ClusterRole", "gone")
    authz = authorizer(binding("ClusterRoleBinding", "crb", ref, [user("alice")]))
    attrs = res("list", "pods", "team")
    decision = authz.authorize(ALICE, attrs)
    assert not decision.allowed
    assert decision.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    assert forbidden_message(ALICE, attrs, decision.reason) == (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the'
        ' namespace "team": RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    )


def test_group_subject_grants_non_resource_urls_with_prefix_wildcard() -> None:
    urls = {"nonResourceURLs": ["/version", "/api", "/api/*"], "verbs": ["get"]}
    authz = granted([urls], {"kind": "Group", "name": "system:authenticated"})
    for path in ("/api/v1", "/api", "/version"):
        assert authz.authorize(ALICE, url("get", path)).allowed
    assert not authz.authorize(ALICE, url("get", "/apis")).allowed
    assert not authz.authorize(ALICE, url("post", "/api")).allowed
    assert not authz.authorize(UserInfo("anonymous"), url("get", "/api")).allowed


def test_resource_names_limit_get_and_never_allow_list_or_create() -> None:
    authz = granted([rule("", ["secrets"], ["*"], resourceNames=["s"])], user("alice"), "x")
    assert authz.authorize(ALICE, res("get", "secrets", "x", name="s")).allowed
    assert not authz.authorize(ALICE, res("get", "secrets", "x", name="t")).allowed
    assert not authz.authorize(ALICE, res("list", "secrets", "x")).allowed
    assert not authz.authorize(ALICE, res("create", "secrets", "x")).allowed


def test_subresource_needs_resource_slash_subresource_or_star_slash_subresource() -> None:
    rules = [
        rule("", ["serviceaccounts/token"], ["create"]),
        rule("*", ["*/status"], ["get"]),
        rule("", ["pods"], ["get"]),
    ]
    authz = granted(rules, user("alice"))
    token = res("create", "serviceaccounts", "x", name="sa", subresource="token")
    assert authz.authorize(ALICE, token).allowed
    assert not authz.authorize(ALICE, res("create", "serviceaccounts", "x")).allowed
    assert authz.authorize(ALICE, res("get", "pods", "x", name="p", subresource="status")).allowed
    assert authz.authorize(
        ALICE, res("get", "vms", "x", KV, name="v", subresource="status")
    ).allowed
    assert not authz.authorize(ALICE, res("get", "pods", "x", name="p", subresource="log")).allowed


def test_resource_slash_star_is_a_literal_as_upstream() -> None:
    # Upstream ResourceMatches has no "<resource>/*" form; such a rule grants nothing real.
    authz = granted([rule("", ["serviceaccounts/*"], ["create"])], user("alice"))
    token = res("create", "serviceaccounts", "x", name="sa", subresource="token")
    assert not authz.authorize(ALICE, token).allowed


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (
            res("list", "namespaces"),
            'namespaces is forbidden: User "u" cannot list resource "namespaces" in API group ""'
            " at the cluster scope",
        ),
        (
            res("get", "secrets", "x", name="s"),
            'secrets "s" is forbidden: User "u" cannot get resource "secrets" in API group ""'
            ' in the namespace "x"',
        ),
        (
            res("create", "clusterroles", group=RBAC),
            'clusterroles.rbac.authorization.k8s.io is forbidden: User "u" cannot create resource'
            ' "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope',
        ),
        (
            res("create", "serviceaccounts", "x", name="sa", subresource="token"),
            'serviceaccounts "sa" is forbidden: User "u" cannot create resource'
            ' "serviceaccounts/token" in API group "" in the namespace "x"',
        ),
        (url("get", "/foo"), 'forbidden: User "u" cannot get path "/foo"'),
    ],
)
def test_forbidden_message_matches_kube_apiserver_verbatim(
    attrs: Attributes, expected: str
) -> None:
    assert forbidden_message(UserInfo("u"), attrs) == expected


def test_rules_for_returns_self_subject_rules_review_shape() -> None:
    rules = [rule("", ["secrets"], ["get"], resourceNames=["s"])]
    rules.append({"nonResourceURLs": ["/version"], "verbs": ["get"]})
    subject = {"kind": "ServiceAccount", "name": "migrator"}
    authz = seeded(
        role("Role", "r", rules, "mtv"),
        binding("RoleBinding", "rb", ("Role", "r"), [subject], "mtv"),
    )
    resource_rules, non_resource_rules = authz.rules_for(SA, "mtv")
    assert len(resource_rules) == len(SEED_RULES) + 1
    assert resource_rules[0] == {
        "verbs": READ,
        "apiGroups": ["forklift.konveyor.io"],
        "resources": ["*"],
    }
    assert resource_rules[-1] == {
        "verbs": ["get"],
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["s"],
    }
    assert non_resource_rules == [{"verbs": ["get"], "nonResourceURLs": ["/version"]}]
    assert authz.rules_for(SA, "")[0] == SEED_RULES


def test_covers_when_user_holds_every_permission() -> None:
    authz = seeded()
    wanted = [
        rule("", ["secrets", "configmaps"], ["get", "delete"]),
        rule("apps", ["deployments"], ["patch"]),
    ]
    assert authz.covers(SA, "mtv", wanted)
    assert authz.covers(SA, "", [rule("forklift.konveyor.io", ["plans"], READ)])
    assert authz.covers(SA, "mtv", [rule("", ["secrets"], ["delete"], resourceNames=["s"])])
    assert authz.covers(SA, "mtv", [])


def test_covers_counts_every_group_resource_verb_combination() -> None:
    both = {"apiGroups": ["", "apps"], "resources": ["secrets", "deployments"], "verbs": ["get"]}
    assert not seeded().covers(SA, "mtv", [both])  # it also asks for apps/secrets


def test_user_with_get_on_secrets_cannot_grant_delete_on_secrets() -> None:
    authz = granted([rule("", ["secrets"], ["get"])], user("alice"), "x")
    assert authz.covers(ALICE, "x", [rule("", ["secrets"], ["get"])])
    assert not authz.covers(ALICE, "x", [rule("", ["secrets"], ["delete"])])
    assert not authz.covers(ALICE, "", [rule("", ["secrets"], ["get"])])
    assert not authz.covers(ALICE, "x", [{"nonResourceURLs": ["/version"], "verbs": ["get"]}])


def test_named_grant_does_not_cover_an_unnamed_one() -> None:
    authz = granted([rule("", ["secrets"], ["get"], resourceNames=["s"])], user("alice"), "x")
    assert authz.covers(ALICE, "x", [rule("", ["secrets"], ["get"], resourceNames=["s"])])
    assert not authz.covers(ALICE, "x", [rule("", ["secrets"], ["get"])])


def test_wildcard_is_covered_only_by_wildcard() -> None:
    authz = seeded()
    assert not authz.covers(SA, "mtv", [rule("", ["*"], ["get"])])
    assert not authz.covers(SA, "mtv", [rule("*", ["secrets"], ["get"])])
    assert not authz.covers(SA, "mtv", [rule("", ["secrets"], ["*"])])
    assert authz.covers(SA, "mtv", [rule("forklift.konveyor.io", ["*"], ["get"])])


def test_superuser_covers_everything() -> None:
    admin = UserInfo("admin", ("system:masters",))
    assert authorizer().covers(admin, "", [rule("*", ["*"], ["*"])])


def test_user_for_service_account_has_the_token_identity() -> None:
    groups = ("system:serviceaccounts", "system:serviceaccounts:mtv", "system:authenticated")
    assert user_for_service_account("mtv", "migrator") == UserInfo(
        "system:serviceaccount:mtv:migrator", groups
    )
