"""forklift-api's webhooks on provider Secrets, as pure functions of an AdmissionRequest, and the
webhook configurations the operator makes for them (`operator/roles/forkliftcontroller/templates/
api/*webhookconfiguration-secrets.yml.j2`, `pkg/forklift-api/webhooks/`).

The mutating webhook runs first: it adds `insecureSkipVerify: "false"` when the key is missing.
The validating one refuses a provider Secret only when its connection test returns 401 or 400,
which an openshift test never does (the 401 arrives wrapped in discovery's error): in practice it
refuses only malformed Secrets, with 400.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from mtv_register.sandbox.mtv.golang import parse_bool, parse_bool_error
from mtv_register.sandbox.mtv.reconcile import (
    ConnectionOutcome,
    ConnectionParams,
    ForkliftVersion,
    connection_params,
    has_ca,
    secret_value,
)

Obj = dict[str, Any]
CONFIGURATION = "forklift-api-secrets"  # both configurations: {{ api_deployment_name }}-secrets
VALIDATING_WEBHOOK = "secrets.forklift.konveyor"
MUTATING_WEBHOOK = "ca-mutatur.forklift.konveyor"
VALIDATE_PATH = "/secret-validate"
MUTATE_PATH = "/secret-mutate"
SERVICE = "forklift-api"
RESOURCE_TYPE_LABEL = "createdForResourceType"
PROVIDER_TYPE_LABEL = "createdForProviderType"


def selected(obj: Obj | None, old: Obj | None) -> bool:
    """The objectSelector (`createdForResourceType` Exists), matched by the new or old object."""
    return any(
        RESOURCE_TYPE_LABEL in ((o or {}).get("metadata", {}).get("labels") or {})
        for o in (obj, old)
    )


def _labels(secret: Obj) -> dict[str, str]:
    return secret.get("metadata", {}).get("labels") or {}


def _allow() -> Obj:
    return {"allowed": True}


def _refuse(message: str, code: int = 400) -> Obj:
    return {"allowed": False, "status": {"metadata": {}, "message": message, "code": code}}


def validate(
    request: Obj, release: ForkliftVersion, test: Callable[[ConnectionParams], ConnectionOutcome]
) -> tuple[Obj, str]:
    """(AdmissionResponse without uid, what forklift-api logs) for the validating webhook."""
    secret = request.get("object") or {}
    if _labels(secret).get(RESOURCE_TYPE_LABEL) != "providers":
        return _allow(), "not a provider secret (vSphere host secrets are not imitated), passing"
    insecure = False
    flag = secret_value(secret, "insecure")
    if flag is not None:
        parsed = parse_bool(flag)
        if parsed is None:
            return _refuse("invalid value for 'insecure' field"), "refused"
        insecure = parsed
    if insecure and has_ca(secret, release):
        return _refuse("received a request to add insecure provider with a CA certificate"), (
            "refused"
        )
    provider_type = _labels(secret).get(PROVIDER_TYPE_LABEL)
    if provider_type is None:
        return _refuse(
            "provider secret is labeled with 'createdForResourceType' but without "
            "'createdForProviderType'"
        ), "refused"
    if provider_type not in release.provider_types:
        types = " ".join(release.provider_types)
        return _refuse(f"incorrect 'createdForProviderType' value. Options [{types}]"), "refused"
    if provider_type != "openshift":
        return _allow(), f"{provider_type} connection test is not imitated, passing"
    outcome = test(connection_params(secret_value(secret, "url") or "", secret, release))
    if outcome.ok:
        return _allow(), "Test succeeded, passing"
    if outcome.code in (401, 400):
        return _refuse(
            "Invalid credentials", 403
        ), f"Connection test failed, failing ({outcome.code})"
    return _allow(), f"Connection test failed, yet passing ({outcome.code}): {outcome.message}"


def mutate(request: Obj) -> Obj | None:
    """AdmissionResponse without uid for the mutating webhook; None where forklift-api panics
    (a Secret with no `data` at all: Go writes into a nil map) and the call fails."""
    secret = request.get("object") or {}
    if _labels(secret).get(RESOURCE_TYPE_LABEL) != "providers":
        return _allow()
    data = secret.get("data")
    if data is not None and "insecureSkipVerify" in data:
        flag = secret_value(secret, "insecureSkipVerify") or ""
        if parse_bool(flag) is None:
            return _refuse(parse_bool_error(flag))
        return {
            "allowed": True,
            "status": {
                "metadata": {},
                "message": "Certificate retrieval is not required, passing ",
                "code": 200,
            },
        }
    if data is None:
        return None
    patch = [
        {"op": "replace", "path": "/data", "value": {**data, "insecureSkipVerify": _b64("false")}},
        {"op": "replace", "path": "/metadata/labels", "value": _labels(secret) or None},
    ]
    return {
        "allowed": True,
        "patch": _b64(json.dumps(patch, separators=(",", ":"))),
        "patchType": "JSONPatch",
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def review(request_review: Obj, response: Obj) -> Obj:
    """The AdmissionReview answer: the request's apiVersion echoed, its uid in the response."""
    return {
        "apiVersion": request_review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": {"uid": (request_review.get("request") or {}).get("uid", ""), **response},
    }


def denial(webhook: str, response: Obj) -> tuple[int, str]:
    """(code, message) the API server answers for a refusal (webhookerrors.ToStatusErr)."""
    result = response.get("status") or {}
    code = int(result.get("code") or 0)
    denied = f'admission webhook "{webhook}" denied the request'
    if result.get("message"):
        message = f"{denied}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied}: {result['reason']}"
    else:
        message = f"{denied} without explanation"
    return max(code, 400), message


def call_failure(webhook: str, namespace: str, path: str, cause: str) -> str:
    """The API server's message when calling a webhook failed (failurePolicy Fail)."""
    url = f"https://{SERVICE}.{namespace}.svc:443{path}?timeout=30s"
    return (
        f'Internal error occurred: failed calling webhook "{webhook}": failed to call webhook: '
        f'Post "{url}": {cause}'
    )


def configurations(base_url: str, ca_pem: str, timeout: int = 30) -> tuple[Obj, Obj]:
    """(ValidatingWebhookConfiguration, MutatingWebhookConfiguration) as the operator writes
    them, pointing at `base_url` instead of the forklift-api Service."""
    bundle = _b64(ca_pem)

    def hook(name: str, path: str) -> Obj:
        return {
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": f"{base_url}{path}", "caBundle": bundle},
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "name": name,
            "namespaceSelector": {},
            "objectSelector": {
                "matchExpressions": [{"key": RESOURCE_TYPE_LABEL, "operator": "Exists"}]
            },
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["secrets"],
                    "scope": "Namespaced",
                }
            ],
            "sideEffects": "None",
            "timeoutSeconds": timeout,
        }

    def configuration(kind: str, name: str, path: str) -> Obj:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": CONFIGURATION},
            "webhooks": [hook(name, path)],
        }

    return (
        configuration("ValidatingWebhookConfiguration", VALIDATING_WEBHOOK, VALIDATE_PATH),
        configuration("MutatingWebhookConfiguration", MUTATING_WEBHOOK, MUTATE_PATH),
    )
