"""`kube.translate`, without a server: an HTTP answer (its code, Status body and headers) and the
error either backend raises for it, with what the retry loop and Forklift's checks read from it
(`Transient.retry_after`, the webhook not called, the webhook that denied)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mtv_register import errors
from mtv_register.kube import translate
from mtv_register.timing import Transient

SECRETS = "/api/v1/namespaces/openshift-mtv/secrets"
CALL_FAILED = (
    'failed calling webhook "secrets.forklift.konveyor": failed to call webhook: Post '
    '"https://forklift-api.openshift-mtv.svc:443/secret-validate?timeout=30s": '
    "dial tcp 10.0.0.7:443: connect: connection refused"
)


def status(reason: str, message: str, **extra: Any) -> bytes:
    """The body of a failed answer, as kube-apiserver writes it."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason}
    return json.dumps({**body, "message": message, **extra}).encode()


@pytest.mark.parametrize(
    ("code", "data", "headers", "expected", "message", "attributes"),
    [
        pytest.param(
            404,
            status("NotFound", 'secrets "x" not found'),
            {},
            errors.NotFound,
            'secrets "x" not found (context source)',
            {"denied_by": ""},
            id="404",
        ),
        pytest.param(
            404,
            b"",
            {},
            errors.NotFound,
            "HTTP 404 (context source)",
            {},
            id="404-without-a-body",
        ),
        pytest.param(
            409,
            status("AlreadyExists", 'secrets "x" already exists'),
            {},
            errors.AlreadyExists,
            'secrets "x" already exists (context source)',
            {"fix": "re-run: the tool converges on what it finds"},
            id="409-AlreadyExists",
        ),
        pytest.param(
            409,
            status(
                "Conflict",
                'Operation cannot be fulfilled on secrets "x": the object has been '
                "modified; please apply your changes to the latest version and try again",
            ),
            {},
            errors.Conflict,
            'Operation cannot be fulfilled on secrets "x": the object has been modified; please '
            "apply your changes to the latest version and try again (context source)",
            {},
            id="409-Conflict",
        ),
        pytest.param(
            422,
            status("Invalid", 'Secret "Bad_Name" is invalid: metadata.name: Invalid value'),
            {},
            errors.Invalid,
            "the API server refused an object mtv-register built: "
            'Secret "Bad_Name" is invalid: metadata.name: Invalid value (context source)',
            {
                "fix": "a value the tool did not check; if it came from a flag, correct that "
                "flag, and report it (mtv-register checks what it is given before any request)",
                "exit_code": 1,
            },
            id="422",
        ),
        pytest.param(
            403,
            status(
                "Forbidden",
                'secrets is forbidden: User "alice" cannot create resource '
                '"secrets" in API group "" in the namespace "openshift-mtv"',
            ),
            {},
            errors.PermissionDenied,
            'secrets is forbidden: User "alice" cannot create resource "secrets" in API group "" '
            'in the namespace "openshift-mtv" (context source)',
            {"denied_by": ""},
            id="403",
        ),
        pytest.param(
            401,
            status("Unauthorized", "Unauthorized"),
            {},
            errors.AuthenticationFailed,
            "the API server of context source refused the credentials (401 Unauthorized)",
            {"fix": "log in again or refresh the kubeconfig's token for that context"},
            id="401",
        ),
        pytest.param(
            400,
            status("BadRequest", "the body of the request was in an unknown format"),
            {},
            errors.MtvRegisterError,
            f"POST {SECRETS} failed on context source: 400 the body of the request was in an "
            "unknown format",
            {},
            id="400",
        ),
        pytest.param(
            429,
            status("TooManyRequests", "Too many requests, please try again later."),
            {"Retry-After": "3"},
            Transient,
            f"POST {SECRETS}: 429 Too many requests, please try again later.",
            {"retry_after": 3.0, "webhook": ""},
            id="429-with-Retry-After",
        ),
        pytest.param(
            503,
            status("ServiceUnavailable", "the server is currently unable to handle the request"),
            {},
            Transient,
            f"POST {SECRETS}: 503 the server is currently unable to handle the request",
            {"retry_after": None},
            id="503-without-Retry-After",
        ),
        pytest.param(
            502,
            b"<html><body>502 Bad Gateway</body></html>",  # a proxy's page, not a Status
            {},
            Transient,
            f"POST {SECRETS}: 502 HTTP 502",
            {"retry_after": None, "webhook": ""},
            id="502-not-a-Status",
        ),
        pytest.param(
            500,
            # apierrors.NewInternalError: the cause's message names the webhook.
            status(
                "InternalError",
                "Internal error occurred: " + CALL_FAILED,
                details={"causes": [{"message": CALL_FAILED}]},
            ),
            {},
            Transient,
            f"POST {SECRETS}: 500 Internal error occurred: {CALL_FAILED}",
            {"webhook": "secrets.forklift.konveyor"},
            id="500-failed-calling-webhook",
        ),
        pytest.param(
            500,
            status("InternalError", "Internal error occurred: " + CALL_FAILED),
            {},
            Transient,
            f"POST {SECRETS}: 500 Internal error occurred: {CALL_FAILED}",
            {"webhook": "secrets.forklift.konveyor"},  # as kubectl hands it on: no details
            id="500-failed-calling-webhook-message-only",
        ),
        pytest.param(
            500,
            status("", CALL_FAILED),  # not kube-apiserver's InternalError: no webhook named
            {},
            Transient,
            f"POST {SECRETS}: 500 {CALL_FAILED}",
            {"webhook": ""},
            id="500-without-InternalError",
        ),
        pytest.param(
            400,
            status(
                "",  # webhookerrors.ToStatusErr keeps the webhook's own (here empty) reason
                'admission webhook "secrets.forklift.konveyor" denied the request: Invalid '
                "credentials",
                code=400,
            ),
            {},
            errors.MtvRegisterError,
            f'POST {SECRETS} failed on context source: 400 admission webhook "secrets.forklift.'
            'konveyor" denied the request: Invalid credentials',
            {"denied_by": "secrets.forklift.konveyor"},
            id="400-webhook-denial",
        ),
        pytest.param(
            403,
            status(
                "Forbidden",
                'admission webhook "validation.gatekeeper.sh" denied the request: '
                "[must-have-owner] you must provide labels",
            ),
            {},
            errors.PermissionDenied,
            'admission webhook "validation.gatekeeper.sh" denied the request: [must-have-owner] '
            "you must provide labels (context source)",
            {"denied_by": "validation.gatekeeper.sh"},
            id="403-webhook-denial",
        ),
        pytest.param(
            403,
            # Only the message's fixed start names the webhook that refused.
            status("Forbidden", 'quota says no; admission webhook "x" denied the request: no'),
            {},
            errors.PermissionDenied,
            'quota says no; admission webhook "x" denied the request: no (context source)',
            {"denied_by": ""},
            id="403-not-a-webhook-denial",
        ),
    ],
)
def test_an_http_answer_is_the_error_its_code_and_status_stand_for(
    code: int,
    data: bytes,
    headers: dict[str, str],
    expected: type[Exception],
    message: str,
    attributes: dict[str, Any],
) -> None:
    error = translate(code, data, headers, "POST", SECRETS, "source")

    assert type(error) is expected
    assert str(error) == message
    for name, value in attributes.items():
        assert getattr(error, name) == value, name
