"""Kubernetes `Status` failures, worded as kube-apiserver words them.

One exception, `ApiError`, carries the HTTP code and the `Status` body; the helpers below build
the common ones so every part of the sandbox answers in the same shape and wording.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failure the API server answers with a `Status` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(resource: str, group: str) -> str:
    """`secrets` or `clusterroles.rbac.authorization.k8s.io`, as messages name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(resource: str, group: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource} if name else {"kind": resource}
    if group:
        details["group"] = group
    return details


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        details=_details(resource, group, name),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        details=_details(resource, group, name),
    )


def conflict(resource: str, group: str, name: str, cause: str = "") -> ApiError:
    cause = cause or (
        "the object has been modified; please apply your changes to the latest version and "
        "try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {cause}',
        details=_details(resource, group, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid; `causes` are (field, message) pairs like ("metadata.name", "Required value")."""
    text = ", ".join(f"{field}: {message}" for field, message in causes)
    if len(causes) > 1:
        text = f"[{text}]"
    details: dict[str, Any] = {
        **({"name": name} if name else {}),  # StatusDetails.name is omitempty
        "kind": kind,
        "causes": [
            {"reason": _cause_reason(message), "message": message, "field": field}
            for field, message in causes
        ],
    }
    if group:
        details["group"] = group
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {text}'
        if group
        else f'{kind} "{name}" is invalid: {text}',
        details=details,
    )


def _cause_reason(message: str) -> str:
    for prefix, reason in (
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Duplicate value", "FieldValueDuplicate"),
    ):
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(
    message: str,
    *,
    resource: str = "",
    group: str = "",
    name: str = "",
    causes: list[dict[str, str]] | None = None,
) -> ApiError:
    details: dict[str, Any] = {}
    if resource:
        details = {"kind": resource}
        if group:
            details["group"] = group
        if name:
            details["name"] = name
    if causes:
        details["causes"] = causes
    return ApiError(403, "Forbidden", message, details=details or None)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


BODY_MEDIA_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


def unsupported_media_type(accepted: tuple[str, ...] = BODY_MEDIA_TYPES) -> ApiError:
    """415, listing what the endpoint accepts (negotiation.NewUnsupportedMediaTypeError)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def server_error(code: int, retry_after: int | None = None) -> ApiError:
    reasons = {
        429: ("TooManyRequests", "Too many requests, please try again later."),
        500: ("InternalError", "Internal error occurred: injected fault"),
        502: ("InternalError", "Bad Gateway"),
        503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
        504: ("Timeout", "The server was unable to return a response in the time allotted"),
    }
    reason, message = reasons.get(code, ("InternalError", f"injected status {code}"))
    details = {"retryAfterSeconds": retry_after} if retry_after is not None else None
    return ApiError(code, reason, message, details=details, retry_after=retry_after)
