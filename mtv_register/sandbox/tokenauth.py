"""Bearer tokens of one simulated cluster: admin users, token Secrets, TokenRequest tokens.

Every token any sandbox issues is also recorded in `ISSUED_TOKENS`, so tests can prove that no
token ever reaches output, logs or exceptions.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass

from mtv_register.sandbox.rbac import UserInfo, user_for_service_account

ISSUED_TOKENS: set[str] = set()
_ISSUED_LOCK = threading.Lock()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(issuer: str, subject: str, extra: dict[str, object] | None = None) -> str:
    """A JWT-shaped opaque token: clients treat it as opaque, as they must with real ones."""
    header = _b64url(json.dumps({"alg": "RS256", "kid": secrets.token_hex(8)}).encode())
    claims = {"iss": issuer, "sub": subject, "iat": int(time.time()), **(extra or {})}
    token = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(48))}"
    with _ISSUED_LOCK:
        ISSUED_TOKENS.add(token)
    return token


@dataclass(frozen=True)
class TokenRecord:
    user: UserInfo
    kind: str  # "static", "secret" (legacy token Secret) or "bound" (TokenRequest)
    namespace: str = ""
    service_account: str = ""
    service_account_uid: str = ""
    secret_name: str = ""
    secret_uid: str = ""
    expires_at: float | None = None  # on the cluster's clock


class TokenTable:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._records: dict[str, TokenRecord] = {}
        self._lock = threading.Lock()

    def add_static(self, username: str, groups: tuple[str, ...]) -> str:
        token = mint(self.issuer, username)
        with self._lock:
            self._records[token] = TokenRecord(
                UserInfo(username, (*groups, "system:authenticated")), "static"
            )
        return token

    def add_service_account(
        self,
        namespace: str,
        name: str,
        sa_uid: str,
        *,
        secret_name: str = "",
        secret_uid: str = "",
        expires_at: float | None = None,
        bound_secret: tuple[str, str] | None = None,
    ) -> str:
        token = mint(
            self.issuer,
            f"system:serviceaccount:{namespace}:{name}",
            {"kubernetes.io/serviceaccount/namespace": namespace},
        )
        kind = "secret" if secret_name else "bound"
        if bound_secret:
            secret_name, secret_uid = bound_secret
        record = TokenRecord(
            user_for_service_account(namespace, name, sa_uid),
            kind,
            namespace,
            name,
            sa_uid,
            secret_name,
            secret_uid,
            expires_at,
        )
        with self._lock:
            self._records[token] = record
        return token

    def lookup(self, token: str) -> TokenRecord | None:
        with self._lock:
            return self._records.get(token)

    def tokens(self) -> list[str]:
        with self._lock:
            return list(self._records)


@dataclass
class Clock:
    """Wall-clock time plus an offset tests can advance, so expiry is tested without sleeping."""

    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
