"""kubectl's failures, read back: the one place the `oc` backend turns stderr into `errors`.

kubectl prints the server's Status as `Error from server (Reason): message` (and a few answers in
words of its own); the reason is turned back into its HTTP status and handed to `kube.translate`,
so both backends raise the same errors for the same answer. What never had an answer from the
server (TLS, a refused or dropped connection, a context the kubeconfig lacks) is read from
kubectl's last line.
"""

from __future__ import annotations

import json
import os
import re

from mtv_register import errors
from mtv_register.kube import denying_webhook, translate
from mtv_register.redaction import scrub
from mtv_register.timing import Transient

# Status reasons as kubectl prints them, back to the HTTP status the server sent.
REASON_CODES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "NotAcceptable": 406,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Gone": 410,
    "Expired": 410,
    "RequestEntityTooLarge": 413,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServerTimeout": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}
_SERVER_ERROR = re.compile(r"^Error from server(?: \((?P<reason>\w+)\))?: (?P<message>.*)$")
_FROM_FILE = re.compile(r'^error when \w+ "STDIN": ')
_INVALID = re.compile(r'^The \w+ "[^"]*" is invalid: ')
_UNREACHABLE = ("was refused", "connection refused", "no such host", "no route to host", "dial tcp")
_DROPPED = ("EOF", "connection reset", "broken pipe", "http2:", "TLS handshake timeout", "timeout")


def reason_of(stderr: str) -> str:
    """A failure in a word where kubectl gives one (NotFound, Conflict, ...), else its last line."""
    for line in reversed(_lines(stderr)):
        match = _SERVER_ERROR.match(line)
        if match:
            return match["reason"] or "error"
        if line.startswith("error: You must be logged in to the server"):
            return "Unauthorized"
        if _INVALID.match(line):
            return "Invalid"
        if line.startswith("error: the server doesn't have a resource type"):
            return "NotFound (the API is not served)"
    return (_lines(stderr) or ["failed"])[-1][:100]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def failure(
    stderr: str,
    verb: str,
    what: str,
    *,
    context: str,
    url: str,
    kubeconfig: str,
    oc_path: str,
    tls_fix: str,
) -> Exception:
    """kubectl's error text as the `errors` the default backend raises for the same answer."""
    lines = _lines(scrub(stderr))
    for line in reversed(lines):
        match = _SERVER_ERROR.match(line)
        if match:
            message = _FROM_FILE.sub("", match["message"])
            code = REASON_CODES.get(match["reason"] or "", 0)
            return _status(code, match["reason"] or "", message, verb, what, context)
        if line.startswith("error: You must be logged in to the server"):
            return _status(401, "Unauthorized", line, verb, what, context)
        if _INVALID.match(line):
            return _status(422, "Invalid", line, verb, what, context)
        if line.startswith("error: the server doesn't have a resource type"):
            return _status(404, "NotFound", line.removeprefix("error: "), verb, what, context)
    last = lines[-1] if lines else f"{oc_path} exited with an error"
    detail = last.removeprefix("error: ").removeprefix("Unable to connect to the server: ")
    if "x509:" in last or "tls:" in last:
        return errors.TlsError(
            f"TLS to {url} (context {context}) failed: {detail}",
            fix=tls_fix,
        )
    if any(sign in last for sign in _UNREACHABLE):
        return errors.UnreachableError(
            f"cannot reach {url} (context {context}): {detail}",
            fix="check that the cluster is up and the kubeconfig's server address",
        )
    if last.startswith("error: context ") and last.endswith("does not exist"):
        return errors.KubeconfigError(
            f"{detail} in {kubeconfig}", fix="pass a context the kubeconfig has"
        )
    if any(sign in last for sign in _DROPPED):
        if verb == "get":
            # client-go has already retried the read, about ten times in ten seconds:
            # retrying it again here would multiply that by the tool's attempts.
            return errors.MtvRegisterError(
                f"the API server of context {context} kept dropping the connection: "
                f"get {what}, retried by {os.path.basename(oc_path)} itself: {detail}",
                fix="check the API server's health, then re-run (the tool picks up where it "
                "stopped)",
            )
        return Transient(f"{verb} {what}: connection lost: {detail}")
    return errors.MtvRegisterError(f"{verb} {what} failed on context {context}: {detail}")


def _status(code: int, reason: str, message: str, verb: str, what: str, context: str) -> Exception:
    if not code:  # no reason this tool knows (or none: kubectl prints "Error from server:")
        error = errors.MtvRegisterError(
            f"{verb} {what} failed on context {context}: {reason or 'error'}: {message}"
        )
        error.denied_by = denying_webhook({"message": message})  # as `translate` reads it
        return error
    body = json.dumps({"kind": "Status", "reason": reason, "message": message}).encode()
    return translate(code, body, {}, verb, what, context)
