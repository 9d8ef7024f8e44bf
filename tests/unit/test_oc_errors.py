"""kubectl's stderr read back as `errors`, without a binary: each line kubectl prints for a
failure, and the error class and message the `oc` backend raises for it (the same as the default
backend's for the same answer)."""

from __future__ import annotations

from typing import Any

import pytest

from mtv_register import errors, oc_errors
from mtv_register.redaction import REDACTED, remember
from mtv_register.timing import Transient

BUILT = "the API server refused an object mtv-register built: "
INVALID_FIX = (
    "a value the tool did not check; if it came from a flag, correct that flag, and report it "
    "(mtv-register checks what it is given before any request)"
)

CLIENT = {
    "context": "source",
    "url": "https://api.source.example:6443",
    "kubeconfig": "/home/me/.kube/config",
    "oc_path": "/usr/local/bin/kubectl",
    "tls_fix": "check the CA (--ca-source) or the server address",
}
WEBHOOK_CALL = (
    'Error from server (InternalError): error when creating "STDIN": Internal error occurred: '
    'failed calling webhook "secrets.forklift.konveyor": failed to call webhook: Post '
    '"https://forklift-api.openshift-mtv.svc:443/secret-validate?timeout=30s": '
    "dial tcp 10.0.0.7:443: connect: connection refused"
)
# What client-go logs before kubectl's own last line, when discovery fails first.
DISCOVERY_NOISE = (
    'E0610 12:00:00.000000   4242 memcache.go:265] "Unhandled Error" err="couldn\'t get current '
    'server API group list: Get \\"https://api.source.example:6443/api?timeout=30s\\": tls: '
    'failed to verify certificate: x509: certificate signed by unknown authority"\n'
)


@pytest.mark.parametrize(
    ("verb", "what", "stderr", "expected", "message", "attributes"),
    [
        pytest.param(
            "get",
            "secrets x",
            'Error from server (NotFound): secrets "x" not found',
            errors.NotFound,
            'secrets "x" not found (context source)',
            {},
            id="NotFound",
        ),
        pytest.param(
            "create",
            "create",
            'Error from server (AlreadyExists): error when creating "STDIN": '
            'configmaps "twice" already exists',
            errors.AlreadyExists,
            'configmaps "twice" already exists (context source)',  # kubectl's "STDIN" is dropped
            {"fix": "re-run: the tool converges on what it finds"},
            id="AlreadyExists",
        ),
        pytest.param(
            "replace",
            "replace",
            'Error from server (Conflict): error when replacing "STDIN": Operation cannot be '
            'fulfilled on configmaps "raced": the object has been modified; please apply your '
            "changes to the latest version and try again",
            errors.Conflict,
            'Operation cannot be fulfilled on configmaps "raced": the object has been modified; '
            "please apply your changes to the latest version and try again (context source)",
            {},
            id="Conflict",
        ),
        pytest.param(
            "create",
            "create",
            # kubectl words a lone 422 itself, with no "Error from server".
            'The ConfigMap "Not_A_Name" is invalid: metadata.name: Invalid value: "Not_A_Name": '
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
            errors.Invalid,
            f'{BUILT}The ConfigMap "Not_A_Name" is invalid: metadata.name: Invalid value: '
            '"Not_A_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters (context source)",
            {"fix": INVALID_FIX, "exit_code": 1},
            id="Invalid-alone",
        ),
        pytest.param(
            "create",
            "create",
            'Error from server (Invalid): error when creating "STDIN": ConfigMap "Bad_One" is '
            'invalid: metadata.name: Invalid value: "Bad_One"',
            errors.Invalid,
            f'{BUILT}ConfigMap "Bad_One" is invalid: metadata.name: Invalid value: "Bad_One" '
            "(context source)",
            {},
            id="Invalid-in-a-list",
        ),
        pytest.param(
            "create",
            "create",
            'Error from server (Forbidden): error when creating "STDIN": clusterroles.rbac.'
            'authorization.k8s.io is forbidden: User "alice" cannot create resource '
            '"clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope',
            errors.PermissionDenied,
            'clusterroles.rbac.authorization.k8s.io is forbidden: User "alice" cannot create '
            'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster '
            "scope (context source)",
            {"denied_by": ""},
            id="Forbidden",
        ),
        pytest.param(
            "get",
            "namespaces",
            "error: You must be logged in to the server (Unauthorized)",
            errors.AuthenticationFailed,
            "the API server of context source refused the credentials (401 Unauthorized)",
            {},
            id="Unauthorized",
        ),
        pytest.param(
            "get",
            "namespaces",
            # With no discovery cache the 401 comes from discovery, which kubectl words so.
            "error: You must be logged in to the server "
            "(the server has asked for the client to provide credentials)",
            errors.AuthenticationFailed,
            "the API server of context source refused the credentials (401 Unauthorized)",
            {},
            id="Unauthorized-in-discovery",
        ),
        pytest.param(
            "get",
            "providers.v1beta1.forklift.konveyor.io",
            'error: the server doesn\'t have a resource type "providers"',
            errors.NotFound,
            'the server doesn\'t have a resource type "providers" (context source)',
            {},
            id="no-resource-type",
        ),
        pytest.param(
            "get",
            "namespaces",
            DISCOVERY_NOISE + "Unable to connect to the server: tls: failed to verify "
            "certificate: x509: certificate signed by unknown authority",
            errors.TlsError,
            "TLS to https://api.source.example:6443 (context source) failed: tls: failed to "
            "verify certificate: x509: certificate signed by unknown authority",
            {"fix": "check the CA (--ca-source) or the server address"},
            id="x509",
        ),
        pytest.param(
            "get",
            "namespaces",
            "The connection to the server api.source.example:6443 was refused - did you specify "
            "the right host or port?",
            errors.UnreachableError,
            "cannot reach https://api.source.example:6443 (context source): The connection to "
            "the server api.source.example:6443 was refused - did you specify the right host or "
            "port?",
            {},
            id="connection-refused",
        ),
        pytest.param(
            "get",
            "namespaces",
            "Unable to connect to the server: dial tcp: lookup api.source.example: no such host",
            errors.UnreachableError,
            "cannot reach https://api.source.example:6443 (context source): dial tcp: lookup "
            "api.source.example: no such host",
            {},
            id="no-such-host",
        ),
        pytest.param(
            "get",
            "namespaces",
            'error: context "nope" does not exist',
            errors.KubeconfigError,
            'context "nope" does not exist in /home/me/.kube/config',
            {},
            id="unknown-context",
        ),
        pytest.param(
            "get",
            "secrets x",
            # client-go has retried the read already: not a Transient, so not retried again.
            "Unable to connect to the server: EOF",
            errors.MtvRegisterError,
            "the API server of context source kept dropping the connection: get secrets x, "
            "retried by kubectl itself: EOF",
            {},
            id="dropped-on-get",
        ),
        pytest.param(
            "create",
            "create",
            "Unable to connect to the server: EOF",
            Transient,
            "create create: connection lost: EOF",
            {},
            id="dropped-on-a-write",
        ),
        pytest.param(
            "create",
            "--raw /api/v1/namespaces/default/configmaps",
            "Unable to connect to the server: net/http: HTTP/1.x transport connection broken: "
            "write tcp 127.0.0.1:42474->127.0.0.1:6443: write: broken pipe",
            Transient,
            "create --raw /api/v1/namespaces/default/configmaps: connection lost: net/http: "
            "HTTP/1.x transport connection broken: write tcp 127.0.0.1:42474->127.0.0.1:6443: "
            "write: broken pipe",
            {},
            id="broken-pipe-on-a-write",
        ),
        pytest.param(
            "get",
            "secrets x",
            "Error from server (TooManyRequests): the server has received too many requests and "
            "has asked us to try again later",
            Transient,
            "get secrets x: 429 the server has received too many requests and has asked us to "
            "try again later",
            {"retry_after": None, "webhook": ""},
            id="TooManyRequests",
        ),
        pytest.param(
            "create",
            "create",
            # The server's Status is the last line that counts, though this one names a refusal.
            WEBHOOK_CALL,
            Transient,
            "create create: 500 " + WEBHOOK_CALL.split('"STDIN": ', 1)[1],
            {"webhook": "secrets.forklift.konveyor"},
            id="webhook-not-called",
        ),
        pytest.param(
            "create",
            "create",
            'Error from server (Forbidden): error when creating "STDIN": admission webhook '
            '"validation.gatekeeper.sh" denied the request: [must-have-owner] you must provide '
            'labels: {"owner"}',
            errors.PermissionDenied,
            'admission webhook "validation.gatekeeper.sh" denied the request: [must-have-owner] '
            'you must provide labels: {"owner"} (context source)',
            {"denied_by": "validation.gatekeeper.sh"},
            id="webhook-denial",
        ),
        pytest.param(
            "create",
            "create",
            'Error from server (BadRequest): error when creating "STDIN": admission webhook '
            '"secrets.forklift.konveyor" denied the request: Invalid credentials',
            errors.MtvRegisterError,
            'create create failed on context source: 400 admission webhook "secrets.forklift.'
            'konveyor" denied the request: Invalid credentials',
            {"denied_by": "secrets.forklift.konveyor"},
            id="webhook-denial-400",
        ),
        pytest.param(
            "get",
            "secrets x",
            "Error from server (SomethingNew): a reason this tool does not know",
            errors.MtvRegisterError,
            "get secrets x failed on context source: SomethingNew: a reason this tool does not "
            "know",
            {"denied_by": ""},
            id="unknown-reason",
        ),
        pytest.param(
            # kubectl prints no reason when the Status has none (as the sandbox's Forklift
            # webhook answers): still the webhook's refusal, as the default backend reads it.
            "create",
            "create",
            'Error from server: error when creating "STDIN": admission webhook '
            '"secrets.forklift.konveyor" denied the request: Invalid credentials',
            errors.MtvRegisterError,
            'create create failed on context source: error: admission webhook "secrets.forklift.'
            'konveyor" denied the request: Invalid credentials',
            {"denied_by": "secrets.forklift.konveyor"},
            id="webhook-denial-without-reason",
        ),
        pytest.param(
            "patch",
            "providers.v1beta1.forklift.konveyor.io source",
            'error: unable to parse "{": yaml: line 1: did not find expected node content',
            errors.MtvRegisterError,
            "patch providers.v1beta1.forklift.konveyor.io source failed on context source: "
            'unable to parse "{": yaml: line 1: did not find expected node content',
            {},
            id="anything-else",
        ),
        pytest.param(
            "get",
            "secrets x",
            "",
            errors.MtvRegisterError,
            "get secrets x failed on context source: /usr/local/bin/kubectl exited with an error",
            {},
            id="no-stderr",
        ),
    ],
)
def test_kubectls_error_line_is_the_error_the_default_backend_raises(
    verb: str,
    what: str,
    stderr: str,
    expected: type[Exception],
    message: str,
    attributes: dict[str, Any],
) -> None:
    error = oc_errors.failure(stderr, verb, what, **CLIENT)

    assert type(error) is expected
    assert str(error) == message
    for name, value in attributes.items():
        assert getattr(error, name) == value, name


def test_a_token_in_kubectls_stderr_is_not_in_the_error() -> None:
    token = remember("eyJhbGciOiJSUzI1NiJ9.unit-test-oc-errors.c2lnbmF0dXJl")

    error = oc_errors.failure(
        f"Error from server (Forbidden): secrets is forbidden: token {token} may not list",
        "get",
        "secrets",
        **CLIENT,
    )

    assert isinstance(error, errors.PermissionDenied)
    assert f"secrets is forbidden: token {REDACTED} may not list" in str(error)
    assert token not in str(error)


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ('Error from server (NotFound): secrets "x" not found', "NotFound"),
        ('Error from server (Conflict): error when replacing "STDIN": ...', "Conflict"),
        ('Error from server: admission webhook "x" denied the request: no', "error"),
        ("error: You must be logged in to the server (Unauthorized)", "Unauthorized"),
        ('The ConfigMap "Bad" is invalid: metadata.name: Invalid value', "Invalid"),
        (
            'error: the server doesn\'t have a resource type "providers"',
            "NotFound (the API is not served)",
        ),
        # The last line, cut to 100 characters, where kubectl gives no word.
        (
            "some warning\nUnable to connect to the server: EOF",
            "Unable to connect to the server: EOF",
        ),
        ("error: " + "x" * 200, ("error: " + "x" * 200)[:100]),
        ("", "failed"),
    ],
)
def test_the_trail_names_a_failed_command_in_a_word_where_kubectl_gives_one(
    stderr: str, reason: str
) -> None:
    assert oc_errors.reason_of(stderr) == reason
