"""Recovery with admin credentials, for a Provider whose own token is already dead.

Rotation needs a working token; when it was revoked (its token Secret or service account
deleted), `recover_provider` bootstraps the registered cluster again as an admin, from what the
provider Secret records of the registration (`recorded_spec`), switches the provider Secret to
the new token, waits until Forklift has taken it up, and deletes the account's other token
Secrets. `recovery_for` picks the admin context that serves each Provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mtv_register import errors, naming, verdicts
from mtv_register.bootstrap import RemoteSpec
from mtv_register.kube import SECRET, Kube
from mtv_register.records import Report
from mtv_register.registration import (
    Registration,
    RotateOptions,
    RotationResult,
    read_registration,
    remove_token_secret,
    switch,
    switched_to,
    wait_taken_up,
)
from mtv_register.tokens import create_token_secret, wait_for_token

if TYPE_CHECKING:
    from mtv_register.clusters import Connector

Obj = dict[str, Any]


def recover_provider(
    host: Kube, admin: Kube, provider: Obj, options: RotateOptions, report: Report
) -> RotationResult:
    """When the Provider's token is already dead: re-bootstrap its cluster with admin
    credentials, switch the provider Secret to the new token, then clear old token Secrets."""
    from mtv_register.bootstrap import bootstrap

    registration = read_registration(host, provider)
    spec = recorded_spec(registration)
    token_name = registration.token_secret[1]
    service_account = spec.service_account
    if options.dry_run:
        return RotationResult(registration.name, "would recover", old_secret=token_name)
    issued = bootstrap(admin, spec, report, timeout=options.timeout)
    if not spec.bound:
        # A legacy token is a signature over the account and the Secret's *name*: the Secret
        # bootstrap just made again under the documented name carries the very token that was
        # revoked (a real token controller signs the same claims the same way). A token Secret
        # under a new name gives a new token; the sweep below deletes the other.
        created = create_token_secret(
            admin, spec.service_account, spec.namespace, replaces=issued.secret_name, report=report
        )
        issued = wait_for_token(admin, created, options.timeout)
    ref = "" if spec.bound else f"{issued.namespace}/{issued.secret_name}"
    if registration.token != issued.token:
        extra = {naming.TOKEN_EXPIRES_ANNOTATION: issued.expires} if spec.bound else None
        switch(host, registration.secret, issued.token, ref, issued.created, options.clock(), extra)
        report(switched_to(host, registration, "the recovered token"))
        wait_taken_up(host, registration, options.timeout, report)
    else:
        verdicts.wait_ready(host, registration.namespace, registration.name, options.timeout)
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    for secret in admin.list(SECRET, spec.namespace, label_selector=selector).get("items", []):
        annotations = secret["metadata"].get("annotations") or {}
        if annotations.get(naming.SERVICE_ACCOUNT_NAME_ANNOTATION) == service_account and (
            spec.bound or secret["metadata"]["name"] != issued.secret_name
        ):
            remove_token_secret(admin, secret["metadata"]["name"], spec.namespace, report)
    return RotationResult(
        registration.name,
        "recovered",
        old_secret=token_name,
        new_secret="" if spec.bound else issued.secret_name,
    )


def recorded_spec(registration: Registration) -> RemoteSpec:
    """The registration as it was made, from what its provider Secret records: account, role
    (created by the tool or the user's own), token type and lifetime. Older Secrets that do not
    record the role get the default one."""
    sa_ns, sa_name = registration.service_account
    token_ns, token_name = registration.token_secret
    existing, _, role = registration.cluster_role.rpartition(":")
    return RemoteSpec(
        service_account=sa_name or service_account_of(token_name),
        namespace=sa_ns or token_ns,
        role_name=role or naming.DEFAULT_ROLE_NAME,
        existing_role=existing == "existing",
        token_type=registration.token_type,
        token_ttl=registration.token_ttl or RemoteSpec.token_ttl,
    )


def service_account_of(token_secret_name: str) -> str:
    """`<sa>-token` or `<sa>-token-<suffix>` (the documented names) -> `<sa>`."""
    base, found, _ = token_secret_name.rpartition(naming.TOKEN_SECRET_SUFFIX)
    return base if found and base else token_secret_name


def recovery_for(
    kubeconfig: str | None,
    contexts: list[str],
    connector: Connector | None = None,
) -> Callable[[Obj], Kube | None]:
    """Admin clients for dead-token recovery: a context serves the Provider named after it,
    or the one whose URL is the context's server URL."""
    from mtv_register import clusters

    connector = connector or clusters.Connector()
    if not contexts:
        return lambda provider: None
    config = clusters.load_kubeconfig(kubeconfig)
    for context in contexts:
        if context not in config.contexts:
            raise errors.KubeconfigError(
                f'context "{context}" is not in {config.path}',
                fix=f"use one of: {', '.join(config.contexts)}",
            )

    def pick(provider: Obj) -> Kube | None:
        name = provider["metadata"]["name"]
        url = (provider.get("spec") or {}).get("url", "")
        for context in contexts:
            server = str(config.cluster_of(context).get("server", ""))
            if name == naming.provider_name(context) or (url and url == server):
                return connector.connect(config, context)
        return None

    return pick
