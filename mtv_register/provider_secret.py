"""The provider Secret on the MTV host: what Forklift reads a Provider's credentials from, and
what the tool records there about the registration. Written by `to_secret` and read by
`from_secret`, and by nothing else, so its keys and annotations are spelled in one place."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from mtv_register import manifests, naming
from mtv_register.redaction import remember

Obj = dict[str, Any]


@dataclass(frozen=True)
class ProviderSecret:
    """A Provider's credentials and what the tool recorded of how they were made."""

    url: str
    token: str = field(repr=False)
    ca_pem: str | None = field(repr=False)
    insecure: bool
    token_secret_ref: str  # "<namespace>/<name>" on the registered cluster ("" when bound)
    token_created: str  # a `naming.stamp`
    token_type: str = "secret"  # or "bound"; read: "" from a registration that predates it
    service_account_ref: str = ""  # "<namespace>/<name>"
    token_expires: str = ""  # bound tokens: a `naming.stamp`
    cluster_role: str = ""  # "<name>", or "existing:<name>" for a role the tool did not create
    token_ttl: int = 0  # bound tokens: their lifetime in seconds
    rotated_at: str = ""  # the last rotation's `naming.stamp`
    ca_only_under_cacert: bool = False  # read: the CA is only under the key Forklift 2.14 drops

    # -- as read ----------------------------------------------------------------------------

    @classmethod
    def from_secret(cls, secret: Obj) -> ProviderSecret:
        """The Secret as the API server gave it. The token it holds is remembered, so that no
        message can show it."""
        data = secret.get("data") or {}
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        ca_pem = _decoded(data, naming.PROVIDER_SECRET_CA_KEY) or _decoded(
            data, naming.PROVIDER_SECRET_LEGACY_CA_KEY
        )
        try:
            ttl = int(annotations.get(naming.TOKEN_TTL_ANNOTATION, "0") or 0)
        except ValueError:
            ttl = 0
        return cls(
            url=_decoded(data, naming.PROVIDER_SECRET_URL_KEY),
            token=remember(_decoded(data, naming.PROVIDER_SECRET_TOKEN_KEY)),
            ca_pem=ca_pem or None,
            insecure=_decoded(data, naming.PROVIDER_SECRET_INSECURE_KEY).lower()
            in ("1", "t", "true"),
            token_secret_ref=annotations.get(naming.TOKEN_SECRET_ANNOTATION, ""),
            token_created=annotations.get(naming.TOKEN_CREATED_ANNOTATION, ""),
            token_type=annotations.get(naming.TOKEN_TYPE_ANNOTATION, ""),
            service_account_ref=annotations.get(naming.SERVICE_ACCOUNT_ANNOTATION, ""),
            token_expires=annotations.get(naming.TOKEN_EXPIRES_ANNOTATION, ""),
            cluster_role=annotations.get(naming.CLUSTER_ROLE_ANNOTATION, ""),
            token_ttl=ttl,
            rotated_at=annotations.get(naming.ROTATED_AT_ANNOTATION, ""),
            ca_only_under_cacert=bool(
                data.get(naming.PROVIDER_SECRET_LEGACY_CA_KEY)
                and not data.get(naming.PROVIDER_SECRET_CA_KEY)
            ),
        )

    @property
    def bound(self) -> bool:
        return self.token_type == "bound"

    @property
    def token_secret(self) -> tuple[str, str]:
        """(namespace, name) of the token Secret on the registered cluster."""
        namespace, _, name = self.token_secret_ref.partition("/")
        return namespace, name

    @property
    def service_account(self) -> tuple[str, str]:
        namespace, _, name = self.service_account_ref.partition("/")
        return namespace, name

    @property
    def created_at(self) -> dt.datetime | None:
        return naming.parse_stamp(self.token_created)

    @property
    def expires_at(self) -> dt.datetime | None:
        return naming.parse_stamp(self.token_expires)

    # -- as written -------------------------------------------------------------------------

    def to_secret(self, name: str, namespace: str, *, legacy_cacert: bool) -> Obj:
        """The Secret `name` in `namespace` on the MTV host, as the API server stores it."""
        secret = manifests.provider_secret(
            name,
            namespace,
            url=self.url,
            token=self.token,
            ca_cert=self.ca_pem,
            insecure_skip_verify=self.insecure,
            legacy_cacert=legacy_cacert,
            token_secret_ref=self.token_secret_ref or None,
        )
        annotations = secret["metadata"].setdefault("annotations", {})
        annotations[naming.TOKEN_CREATED_ANNOTATION] = self.token_created
        annotations[naming.TOKEN_TYPE_ANNOTATION] = self.token_type
        optional = {
            naming.SERVICE_ACCOUNT_ANNOTATION: self.service_account_ref,
            naming.TOKEN_EXPIRES_ANNOTATION: self.token_expires,
            naming.CLUSTER_ROLE_ANNOTATION: self.cluster_role,
            naming.TOKEN_TTL_ANNOTATION: str(self.token_ttl) if self.bound else "",
            naming.ROTATED_AT_ANNOTATION: self.rotated_at,
        }
        annotations.update({key: value for key, value in optional.items() if value})
        if annotations.get(naming.TOKEN_TTL_ANNOTATION) == "0":
            del annotations[naming.TOKEN_TTL_ANNOTATION]
        return secret


def switched(
    secret: Obj,
    token: str,
    *,
    created: str,
    rotated_at: dt.datetime,
    token_secret_ref: str = "",
    extra: dict[str, str] | None = None,
) -> Obj:
    """`secret` (as read, with its resourceVersion) switched to a new token: what rotation
    writes. Every other key and annotation stays."""
    updated = dict(secret)
    updated["data"] = {
        **(secret.get("data") or {}),
        naming.PROVIDER_SECRET_TOKEN_KEY: base64.b64encode(token.encode()).decode(),
    }
    annotations = {
        **(secret["metadata"].get("annotations") or {}),
        naming.TOKEN_CREATED_ANNOTATION: created,
        naming.ROTATED_AT_ANNOTATION: naming.stamp(rotated_at),
        **(extra or {}),
    }
    if token_secret_ref:
        annotations[naming.TOKEN_SECRET_ANNOTATION] = token_secret_ref
    updated["metadata"] = {**secret["metadata"], "annotations": annotations}
    return updated


def _decoded(data: Obj, key: str) -> str:
    raw = data.get(key)
    if not raw:
        return ""
    try:
        return base64.b64decode(raw).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
