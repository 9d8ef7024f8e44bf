"""`status`: every Provider on the MTV host (ready or why not, URL, token age, CA expiry, last
rotation), and, on the clusters asked for, the objects behind a Provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtv_register import clusters, errors, forklift, naming, verdicts
from mtv_register.bootstrap import RemoteSpec
from mtv_register.kube import Kube
from mtv_register.provider_secret import ProviderSecret

Obj = dict[str, Any]


def provider_status(host: Kube, namespace: str) -> list[Obj]:
    """One row per Provider on the host: readiness, failing condition, URL, token age, CA
    expiry, last rotation."""
    from mtv_register.kube import SECRET

    rows = []
    for name, provider in sorted(forklift.list_providers(host, namespace).items()):
        spec = provider.get("spec") or {}
        row: Obj = {
            "name": name,
            "namespace": namespace,
            "url": spec.get("url", "") or "(local host)",
            "managed": forklift.is_managed(provider),
            "phase": (provider.get("status") or {}).get("phase", "Unknown"),
            "ready": verdicts.verdict(provider) == "ready",
            "message": "",
            "tokenCreated": "",
            "tokenType": "",
            "tokenExpires": "",
            "caExpires": "",
            "tokenSecret": "",
            "caOnlyUnderCacert": False,
            "submariner": (spec.get("settings") or {}).get("submariner") == "true",
        }
        if verdicts.verdict(provider) in ("failed", "retrying"):
            row["message"] = verdicts.failure_message(provider)
        ref = spec.get("secret") or {}
        secret = (
            host.get(SECRET, ref["name"], ref.get("namespace") or namespace)
            if ref.get("name")
            else None
        )
        if secret is not None:
            held = ProviderSecret.from_secret(secret)
            row["tokenCreated"] = held.token_created
            row["tokenType"] = held.token_type
            row["tokenExpires"] = held.token_expires
            row["tokenSecret"] = held.token_secret_ref
            row["rotatedAt"] = held.rotated_at
            # Forklift 2.12 reads `ca.crt`, then `cacert`, which 2.14 is to drop.
            row["caOnlyUnderCacert"] = held.ca_only_under_cacert
            if held.ca_pem:
                try:
                    row["caExpires"] = naming.stamp(clusters.ca_expiry(held.ca_pem))
                except errors.MtvRegisterError:
                    row["caExpires"] = "(not a PEM certificate)"
        rows.append(row)
    return rows


def status(
    *,
    host: str | None = None,  # default: the kubeconfig's current-context
    kubeconfig: str | Path | None = None,
    mtv_namespace: str | None = None,
    remotes: dict[str, str] | None = None,
    connector: clusters.Connector | None = None,
) -> Obj:
    connector = connector or clusters.Connector()
    config = clusters.load_kubeconfig(kubeconfig)
    host = config.host_or_current(host)
    host_kube = connector.connect(config, host)
    try:
        namespace = forklift.find_mtv_namespace(host_kube, mtv_namespace)
        rows = provider_status(host_kube, namespace)
    finally:
        host_kube.close()
    remote_rows = []
    in_use = {row["name"]: row.get("tokenSecret", "").partition("/")[2] for row in rows}
    for context, provider in (remotes or {}).items():
        remote = connector.connect(config, context)
        remote_rows.append(_remote_objects(remote, context, provider, in_use.get(provider, "")))
    return {"host": host, "namespace": namespace, "providers": rows, "remotes": remote_rows}


def _remote_objects(kube: Kube, context: str, provider: str, in_use: str = "") -> Obj:
    """The objects behind a Provider on its cluster; `leftoverTokenSecrets` are token Secrets
    of the account other than the one the Provider uses (an interrupted rotation's): each one's
    token still works until it is deleted."""
    from mtv_register.kube import CLUSTER_ROLE, CLUSTER_ROLE_BINDING, SECRET, SERVICE_ACCOUNT

    spec = RemoteSpec()
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    try:
        secrets = kube.list(SECRET, spec.namespace, label_selector=selector).get("items", [])
        return {
            "context": context,
            "provider": provider,
            "clusterRole": kube.get(CLUSTER_ROLE, spec.role_name) is not None,
            "serviceAccount": kube.get(SERVICE_ACCOUNT, spec.service_account, spec.namespace)
            is not None,
            "clusterRoleBinding": kube.get(CLUSTER_ROLE_BINDING, spec.service_account) is not None,
            "tokenSecrets": [s["metadata"]["name"] for s in secrets],
            "leftoverTokenSecrets": [
                s["metadata"]["name"]
                for s in secrets
                if s.get("type") == naming.SERVICE_ACCOUNT_TOKEN_TYPE
                and in_use
                and s["metadata"]["name"] != in_use
            ],
        }
    finally:
        kube.close()
