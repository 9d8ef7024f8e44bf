"""What the rotation and schedule tests share: a registered pair, reads of the clusters through
`target` (tokens are read there and never shown), and the checks of a healthy Provider."""

from __future__ import annotations

import base64
import time
from typing import Any

from mtv_register import errors, forklift, naming
from mtv_register.api_kube import ApiKube
from mtv_register.kube import NAMESPACE
from mtv_register.orchestrator import register_pair
from mtv_register.sandbox import MTV_NAMESPACE
from mtv_register.sandbox.controllers import TOKEN_TYPE
from mtv_register.sandbox.mtv.controller import connection_test
from mtv_register.timing import Timing
from tests.integration.conftest import pair_options, wait_for
from tests.target import TOKEN_CACHE_SECONDS, Target

Obj = dict[str, Any]
SA = naming.DEFAULT_SERVICE_ACCOUNT
SA_NAMESPACE = naming.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
PROVIDERS = ("source", "destination")  # each named after its context, registered on `mtv`
HOST = "mtv"


def register(target: Target) -> None:
    """Register the pair source -> destination on the separate host, on the test's backend."""
    result = register_pair(pair_options(target.kubeconfig, host=HOST))
    assert sorted((p.name, p.phase) for p in result.providers) == [
        ("destination", "Ready"),
        ("source", "Ready"),
    ]


def _decoded(obj: Obj, key: str) -> str:
    raw = (obj.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


def provider_secret(target: Target, provider: str) -> Obj:
    secret = target.find(HOST, "secrets", forklift.secret_name_for(provider), MTV_NAMESPACE)
    assert secret is not None, f"the provider Secret of {provider} is gone"
    return secret


def provider_token(target: Target, provider: str) -> str:
    return _decoded(provider_secret(target, provider), naming.PROVIDER_SECRET_TOKEN_KEY)


def referenced_token_secret(target: Target, provider: str) -> str:
    """The token Secret the provider Secret records (its name on the registered cluster)."""
    annotations = provider_secret(target, provider)["metadata"].get("annotations") or {}
    namespace, _, name = annotations.get(naming.TOKEN_SECRET_ANNOTATION, "").partition("/")
    assert namespace == SA_NAMESPACE, annotations
    return name


def managed_token_secrets(target: Target, context: str) -> dict[str, Obj]:
    """The service account's token Secrets that mtv-register made on a registered cluster."""
    return {
        item["metadata"]["name"]: item
        for item in target.list(context, "secrets", SA_NAMESPACE)
        if item.get("type") == TOKEN_TYPE
        and (item["metadata"].get("labels") or {}).get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY
        and (item["metadata"].get("annotations") or {}).get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION)
        == SA
    }


def provider_object(target: Target, provider: str) -> Obj:
    found = target.find(HOST, "providers", provider, MTV_NAMESPACE)
    assert found is not None, f"Provider {provider} is gone"
    return found


def refused_over_https(target: Target, context: str, token: str) -> bool:
    """True when the cluster's API server answers a request with this token 401 (within its
    token cache's 10 s, as `Target.refuses`)."""
    client = ApiKube.from_token(
        target.url(context),
        token,
        ca_pem=target.serving_ca_pem(context),
        context=f"{context} (old token)",
        timing=Timing.immediate(),
    )
    deadline = time.monotonic() + TOKEN_CACHE_SECONDS + 5
    try:
        while time.monotonic() < deadline:
            try:
                client.list(NAMESPACE, limit=1)
            except errors.AuthenticationFailed:
                return True
            time.sleep(0.2)
    finally:
        client.close()
    return False


def working(target: Target, provider: str) -> str:
    """ "" when the Provider is Ready and its token is accepted by its cluster and by Forklift's
    connection test, else what is wrong (this may still change: Forklift re-tests)."""
    secret = provider_secret(target, provider)
    token = _decoded(secret, naming.PROVIDER_SECRET_TOKEN_KEY)
    phase = (provider_object(target, provider).get("status") or {}).get("phase")
    if phase != "Ready":
        return f"Provider {provider} is {phase}"
    if not target.authenticates(provider, token):
        return f"the token of Provider {provider} does not authenticate"
    test = connection_test(
        target.url(provider),
        token,
        _decoded(secret, naming.PROVIDER_SECRET_CA_KEY),
        insecure=False,
    )
    if not test.ok:
        return f"Forklift's connection test fails for {provider}: {test.message}"
    return ""


def tidy(target: Target, provider: str) -> str:
    """ "" when the service account has exactly one managed token Secret, the one the provider
    Secret refers to and holds the token of, else what is wrong (this never settles alone)."""
    referenced = referenced_token_secret(target, provider)
    managed = managed_token_secrets(target, provider)
    if sorted(managed) != [referenced]:
        return f"{provider}: managed token Secrets {sorted(managed)}, referenced {referenced!r}"
    if _decoded(managed[referenced], "token") != provider_token(target, provider):
        return f"{provider}: the referenced token Secret does not hold the Provider's token"
    return ""


def health(target: Target, provider: str) -> str:
    """ "" when the Provider is as it must be after any rotation, else what is wrong."""
    return working(target, provider) or tidy(target, provider)


def settle(target: Target, provider: str, *, timeout: float | None = None) -> str:
    """Wait until the Provider works (Forklift re-tests after a switch back); "" when it does,
    else what is still wrong at the deadline."""
    problems = [""]

    def works() -> bool:
        problems[0] = working(target, provider)
        return not problems[0]

    if timeout is None:  # the sandbox's Forklift answers in milliseconds, a real one in seconds
        timeout = 10.0 if target.sandbox is not None else 120.0
    try:
        wait_for(works, timeout=timeout, what=f"Provider {provider} to work")
    except AssertionError:
        return problems[0]
    return ""


def assert_healthy(target: Target, *providers: str, timeout: float | None = None) -> None:
    """Every Provider working and tidy."""
    for provider in providers or PROVIDERS:
        problem = settle(target, provider, timeout=timeout) or tidy(target, provider)
        if problem:
            raise AssertionError(problem)
