"""The errors mtv-register reports, and the exit code of each.

    MtvRegisterError                 1  anything else the tool could not do
    ├── NotFound                     1  404; readers take it as an answer (`get` returns None)
    ├── WebhookUnavailable           1  an admission webhook could not be called (nothing written)
    ├── Invalid                      1  422: the server refused an object the tool built
    ├── UsageError                   2  a flag or input that cannot work (also Typer's own)
    ├── KubeconfigError              3  kubeconfig missing or malformed, unknown context
    ├── UnreachableError             4  the API server cannot be reached
    ├── TlsError                     5  the CA does not verify the server, or has expired
    ├── PreflightError               6  the cluster is not ready for this (Forklift missing, ...)
    ├── PermissionDenied             7  the user may not do what is needed (403)
    ├── AuthenticationFailed         8  the credentials were refused (401)
    ├── WaitTimeout                  9  something awaited did not happen before the deadline
    ├── ProviderNotReady            10  Forklift tested the Provider and reported a failure
    ├── ConflictError               11  another writer changed the same object meanwhile
    │   ├── Conflict                    409: a write guarded by a resourceVersion lost a race
    │   └── AlreadyExists               409: the name is taken (often by ourselves, a lost answer)
    ├── PartialFailure              12  some pairs of a fleet failed, the others held
    ├── SandboxMissing              13  `sandbox` in an installation without it (the rotation image)
    └── NotReadyForLiveMigration    14  `doctor` failed a check (or, with --strict, warned)

`timing.Transient` (429, 5xx, a dropped connection) is not among them: it never leaves the
request that is retried, and ends, when the tries run out, as `MtvRegisterError` or
`WebhookUnavailable`.

Every error carries the cause and the fix, rendered on one line; none ever carries a token.
"""

from __future__ import annotations

from typing import ClassVar


class MtvRegisterError(Exception):
    exit_code: ClassVar[int] = 1
    denied_by: str = ""  # the admission webhook whose refusal this is, from the server's Status

    def __init__(self, cause: str, *, fix: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def line(self) -> str:
        """The one line the CLI prints."""
        return f"{self.cause}: {self.fix}" if self.fix else self.cause


class UsageError(MtvRegisterError):
    exit_code = 2


class KubeconfigError(MtvRegisterError):
    exit_code = 3


class UnreachableError(MtvRegisterError):
    exit_code = 4


class TlsError(MtvRegisterError):
    exit_code = 5


class PreflightError(MtvRegisterError):
    exit_code = 6


class WebhookUnavailable(MtvRegisterError):
    """An admission webhook could not be called (its service down or hung): the API server
    refused the write with 500 "failed calling webhook", so nothing was written."""


class PermissionDenied(MtvRegisterError):
    exit_code = 7


class AuthenticationFailed(MtvRegisterError):
    exit_code = 8


class WaitTimeout(MtvRegisterError):
    exit_code = 9


class ProviderNotReady(MtvRegisterError):
    exit_code = 10


class ConflictError(MtvRegisterError):
    exit_code = 11


class PartialFailure(MtvRegisterError):
    exit_code = 12


class SandboxMissing(MtvRegisterError):
    exit_code = 13


class NotReadyForLiveMigration(MtvRegisterError):
    exit_code = 14


class NotFound(MtvRegisterError):
    """404: callers treat it as an answer (`get` returns None), not as a failure."""


class AlreadyExists(ConflictError):
    pass


class Conflict(ConflictError):
    pass


class Invalid(MtvRegisterError):
    """422: the server refused an object the tool built as invalid. Every value a user gives is
    checked before any request (a bad one is a `UsageError`, exit 2), so one that reaches the
    server is the tool's mistake, not the user's: exit 1."""


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        MtvRegisterError,
        UsageError,
        KubeconfigError,
        UnreachableError,
        TlsError,
        PreflightError,
        PermissionDenied,
        AuthenticationFailed,
        WaitTimeout,
        ProviderNotReady,
        ConflictError,
        PartialFailure,
        SandboxMissing,
        NotReadyForLiveMigration,
    )
}
