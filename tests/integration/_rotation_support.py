"""What the rotation and schedule tests share: a registered pair, reads of the sandbox's own
stores (tokens are read there and never shown), and the checks of a healthy Provider."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from mtv_register import errors, forklift, manifests
from mtv_register.kube import NAMESPACE, Kube, RetryPolicy
from mtv_register.orchestrator import PairOptions, register_pair
from mtv_register.sandbox import MTV_NAMESPACE, Sandbox
from mtv_register.sandbox.controllers import TOKEN_TYPE
from mtv_register.sandbox.forklift import connection_test
from tests.integration.conftest import wait_for

Obj = dict[str, Any]
SA = manifests.DEFAULT_SERVICE_ACCOUNT
SA_NAMESPACE = manifests.DEFAULT_SERVICE_ACCOUNT_NAMESPACE
PROVIDERS = ("source", "destination")  # each named after its context, registered on `mtv`
HOST = "mtv"


def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's Forklift re-tests in milliseconds, so the rotation's grace for it is cut;
    the CLI's clients keep their retry attempts but lose the back-off between them."""
    monkeypatch.setattr(forklift, "RETEST_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(RetryPolicy.__init__, "__defaults__", (6, 0.0, 0.0, False))


def register(sandbox: Sandbox, kubeconfig: Path) -> None:
    result = register_pair(
        PairOptions(
            source="source",
            destination="destination",
            host=HOST,
            kubeconfig=kubeconfig,
            retry=RetryPolicy.immediate(),
            timeout=30,
        )
    )
    assert sorted((p.name, p.phase) for p in result.providers) == [
        ("destination", "Ready"),
        ("source", "Ready"),
    ]


def _secrets(sandbox: Sandbox, context: str) -> Any:
    return sandbox[context].cluster.rtype("", "v1", "secrets")


def _decoded(obj: Obj, key: str) -> str:
    raw = (obj.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


def provider_secret(sandbox: Sandbox, provider: str) -> Obj:
    cluster = sandbox[HOST].cluster
    secret = cluster.store.find(
        _secrets(sandbox, HOST), MTV_NAMESPACE, forklift.secret_name_for(provider)
    )
    assert secret is not None, f"the provider Secret of {provider} is gone"
    return secret


def provider_token(sandbox: Sandbox, provider: str) -> str:
    return _decoded(provider_secret(sandbox, provider), manifests.PROVIDER_SECRET_TOKEN_KEY)


def referenced_token_secret(sandbox: Sandbox, provider: str) -> str:
    """The token Secret the provider Secret records (its name on the registered cluster)."""
    annotations = provider_secret(sandbox, provider)["metadata"].get("annotations") or {}
    namespace, _, name = annotations.get(manifests.TOKEN_SECRET_ANNOTATION, "").partition("/")
    assert namespace == SA_NAMESPACE, annotations
    return name


def managed_token_secrets(sandbox: Sandbox, context: str) -> dict[str, Obj]:
    """The service account's token Secrets that mtv-register made on a registered cluster."""
    items, _ = sandbox[context].cluster.store.list(
        _secrets(sandbox, context),
        SA_NAMESPACE,
        label_selector=f"{manifests.MANAGED_BY_LABEL}={manifests.MANAGED_BY}",
    )
    return {
        item["metadata"]["name"]: item
        for item in items
        if item.get("type") == TOKEN_TYPE
        and (item["metadata"].get("annotations") or {}).get(
            manifests.SERVICE_ACCOUNT_NAME_ANNOTATION
        )
        == SA
    }


def provider_object(sandbox: Sandbox, provider: str) -> Obj:
    cluster = sandbox[HOST].cluster
    rtype = cluster.rtype("forklift.konveyor.io", "v1beta1", "providers")
    found = cluster.store.find(rtype, MTV_NAMESPACE, provider)
    assert found is not None, f"Provider {provider} is gone"
    return found


def authenticates(sandbox: Sandbox, context: str, token: str) -> bool:
    return sandbox[context].cluster.authenticate(token) is not None


def refused_over_https(sandbox: Sandbox, context: str, token: str) -> bool:
    """True when the cluster's API server answers a request with this token 401."""
    client = Kube.from_token(
        sandbox[context].url,
        token,
        ca_pem=sandbox[context].serving_ca_pem,
        context=f"{context} (old token)",
        retry=RetryPolicy.immediate(),
    )
    try:
        client.list(NAMESPACE, limit=1)
    except errors.AuthenticationFailed:
        return True
    finally:
        client.close()
    return False


def working(sandbox: Sandbox, provider: str) -> str:
    """ "" when the Provider is Ready and its token is accepted by its cluster and by Forklift's
    connection test, else what is wrong (this may still change: Forklift re-tests)."""
    secret = provider_secret(sandbox, provider)
    token = _decoded(secret, manifests.PROVIDER_SECRET_TOKEN_KEY)
    phase = (provider_object(sandbox, provider).get("status") or {}).get("phase")
    if phase != "Ready":
        return f"Provider {provider} is {phase}"
    if not authenticates(sandbox, provider, token):
        return f"the token of Provider {provider} does not authenticate"
    test = connection_test(
        sandbox[provider].url,
        token,
        _decoded(secret, manifests.PROVIDER_SECRET_CA_KEY),
        insecure=False,
    )
    if not test.ok:
        return f"Forklift's connection test fails for {provider}: {test.message}"
    return ""


def tidy(sandbox: Sandbox, provider: str) -> str:
    """ "" when the service account has exactly one managed token Secret, the one the provider
    Secret refers to and holds the token of, else what is wrong (this never settles alone)."""
    referenced = referenced_token_secret(sandbox, provider)
    managed = managed_token_secrets(sandbox, provider)
    if sorted(managed) != [referenced]:
        return f"{provider}: managed token Secrets {sorted(managed)}, referenced {referenced!r}"
    if _decoded(managed[referenced], "token") != provider_token(sandbox, provider):
        return f"{provider}: the referenced token Secret does not hold the Provider's token"
    return ""


def health(sandbox: Sandbox, provider: str) -> str:
    """ "" when the Provider is as it must be after any rotation, else what is wrong."""
    return working(sandbox, provider) or tidy(sandbox, provider)


def settle(sandbox: Sandbox, provider: str, *, timeout: float = 10.0) -> str:
    """Wait until the Provider works (Forklift re-tests after a switch back); "" when it does,
    else what is still wrong at the deadline."""
    problems = [""]

    def works() -> bool:
        problems[0] = working(sandbox, provider)
        return not problems[0]

    try:
        wait_for(works, timeout=timeout, what=f"Provider {provider} to work")
    except AssertionError:
        return problems[0]
    return ""


def assert_healthy(sandbox: Sandbox, *providers: str, timeout: float = 10.0) -> None:
    """Every Provider working and tidy."""
    for provider in providers or PROVIDERS:
        problem = settle(sandbox, provider, timeout=timeout) or tidy(sandbox, provider)
        if problem:
            raise AssertionError(problem)
