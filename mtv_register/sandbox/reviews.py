"""Requests answered rather than stored: access and identity reviews, and TokenRequest."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mtv_register.sandbox import apistatus
from mtv_register.sandbox.rbac import Attributes, UserInfo
from mtv_register.sandbox.request import RequestInfo, Response
from mtv_register.sandbox.resources import ResourceType
from mtv_register.sandbox.store import now_rfc3339

if TYPE_CHECKING:
    from mtv_register.sandbox.cluster import Cluster

Obj = dict[str, Any]
MIN_TOKEN_SECONDS = 600
DEFAULT_TOKEN_SECONDS = 3600
MAX_TOKEN_SECONDS = 2**32


def _user_info(user: UserInfo) -> Obj:
    info: Obj = {"username": user.username, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    return info


def review(cluster: Cluster, rtype: ResourceType, body: Obj, user: UserInfo) -> Response:
    spec = body.get("spec") or {}
    answer: Obj = {
        "kind": rtype.kind,
        "apiVersion": rtype.api_version,
        "metadata": {"creationTimestamp": None},
    }
    if rtype.kind == "SelfSubjectReview":
        answer["status"] = {"userInfo": _user_info(user)}
    elif rtype.kind == "SelfSubjectAccessReview":
        answer["spec"] = spec
        answer["status"] = _access(cluster, user, spec)
    elif rtype.kind == "SelfSubjectRulesReview":
        namespace = spec.get("namespace", "")
        resource_rules, non_resource_rules = cluster.authorizer.rules_for(user, namespace)
        answer["spec"] = spec
        answer["status"] = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        }
    elif rtype.kind == "TokenReview":
        found = cluster.authenticate(spec.get("token", ""))
        answer["spec"] = {}  # never echo a token back
        answer["status"] = (
            {"authenticated": True, "user": _user_info(found)}
            if found
            else {"authenticated": False, "error": "invalid bearer token"}
        )
    return Response(201, answer)


def _access(cluster: Cluster, user: UserInfo, spec: Obj) -> Obj:
    if spec.get("resourceAttributes"):
        attrs = spec["resourceAttributes"]
        request = Attributes(
            verb=attrs.get("verb", ""),
            api_group=attrs.get("group", ""),
            api_version=attrs.get("version", ""),
            resource=attrs.get("resource", ""),
            subresource=attrs.get("subresource", ""),
            namespace=attrs.get("namespace", ""),
            name=attrs.get("name", ""),
        )
    elif spec.get("nonResourceAttributes"):
        attrs = spec["nonResourceAttributes"]
        request = Attributes(
            verb=attrs.get("verb", ""), resource_request=False, path=attrs.get("path", "")
        )
    else:
        raise apistatus.invalid(
            "SelfSubjectAccessReview",
            "authorization.k8s.io",
            "",
            [
                (
                    "spec.resourceAttributes",
                    "Required value: exactly one of nonResourceAttributes "
                    "or resourceAttributes must be specified",
                )
            ],
        )
    decision = cluster.authorizer.authorize(user, request)
    result: Obj = {"allowed": decision.allowed}
    if decision.reason:
        result["reason"] = decision.reason
    return result


def token_request(cluster: Cluster, info: RequestInfo, body: Obj) -> Response:
    """POST serviceaccounts/<sa>/token: a bound token that expires on the cluster's clock."""
    sa_type = cluster.registry.lookup("", "v1", "serviceaccounts")
    assert sa_type is not None
    account = cluster.store.get(sa_type, info.namespace, info.name)
    spec = dict(body.get("spec") or {})
    seconds = int(spec.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
    # Upstream validates with NewInvalid(gvk.GroupKind(), "", errs): the name is left empty.
    if seconds < MIN_TOKEN_SECONDS:
        raise apistatus.invalid(
            "TokenRequest",
            "authentication.k8s.io",
            "",
            [
                (
                    "spec.expirationSeconds",
                    f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                )
            ],
        )
    if seconds > MAX_TOKEN_SECONDS:
        raise apistatus.invalid(
            "TokenRequest",
            "authentication.k8s.io",
            "",
            [
                (
                    "spec.expirationSeconds",
                    f"Invalid value: {seconds}: "
                    "may not specify a duration larger than 2^32 seconds",
                )
            ],
        )
    bound = spec.get("boundObjectRef") or {}
    secret_name = secret_uid = ""
    if bound:
        if bound.get("kind") != "Secret":
            raise apistatus.invalid(
                "TokenRequest",
                "authentication.k8s.io",
                info.name,
                [
                    (
                        "spec.boundObjectRef.kind",
                        f'Unsupported value: "{bound.get("kind")}": supported values: "Secret"',
                    )
                ],
            )
        secret_type = cluster.registry.lookup("", "v1", "secrets")
        assert secret_type is not None
        secret = cluster.store.get(secret_type, info.namespace, bound.get("name", ""))
        secret_name, secret_uid = secret["metadata"]["name"], secret["metadata"]["uid"]
        if bound.get("uid") and bound["uid"] != secret_uid:
            raise apistatus.conflict("secrets", "", secret_name)
    expires_at = cluster.clock.now() + seconds
    token = cluster.tokens.add_service_account(
        info.namespace,
        info.name,
        account["metadata"]["uid"],
        expires_at=expires_at,
        bound_secret=(secret_name, secret_uid) if secret_name else None,
    )
    spec["expirationSeconds"] = seconds
    if not spec.get("audiences"):
        spec["audiences"] = [cluster.url]  # empty means the API server's own audiences
    expiry = dt.datetime.fromtimestamp(expires_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Response(
        201,
        {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": info.name,
                "namespace": info.namespace,
                "creationTimestamp": now_rfc3339(),
            },
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expiry},
        },
    )
