"""One simulated cluster: its store, its identities, its admission chain, and its controllers."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from mtv_register.sandbox import apistatus
from mtv_register.sandbox.certs import CertificateAuthority, new_ca
from mtv_register.sandbox.faults import AuditLog, FaultInjector
from mtv_register.sandbox.rbac import Authorizer, UserInfo
from mtv_register.sandbox.resources import Registry, ResourceType
from mtv_register.sandbox.store import Store
from mtv_register.sandbox.tokenauth import Clock, TokenTable

Obj = dict[str, Any]
AdmissionHook = Callable[[str, ResourceType, Obj, "Obj | None", UserInfo], None]
ADMIN_USER = "system:admin"
NAMESPACE_TERMINATION = 0.5
LEGACY_TOKEN_LAST_USED = "kubernetes.io/legacy-token-last-used"


class Cluster:
    """Everything of one cluster but its HTTP server (see `server.py`)."""

    def __init__(
        self, name: str, *, token_delay: float = 0.0, audit: AuditLog | None = None
    ) -> None:
        self.name = name
        self.ca: CertificateAuthority = new_ca(f"{name}-kube-apiserver-ca")
        self.store = Store()
        self.registry = Registry()
        self.authorizer = Authorizer(self._rbac_objects)
        self.tokens = TokenTable(f"https://{name}.sandbox")
        self.clock = Clock()
        self.faults = FaultInjector()
        self.audit = audit or AuditLog()
        self.token_delay = token_delay
        # A deleted namespace stays Terminating this long before its controller empties it
        # (a real kube-controller-manager on an idle cluster: about 5 s, docs/testing.md).
        self.namespace_termination = NAMESPACE_TERMINATION
        self.admission_hooks: list[AdmissionHook] = []
        self.stopping = False
        self.url = ""  # set when the server listens
        self.admin_token = self.tokens.add_static(ADMIN_USER, ("system:masters",))
        self.lock = threading.RLock()
        self.token_filled_at: dict[tuple[str, str], float] = {}

    # -- lookups ---------------------------------------------------------------------------

    def rtype(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.registry.lookup(group, version, plural)
        if rtype is None:
            raise KeyError(f"{plural}.{group}/{version} is not served")
        return rtype

    def _rbac_objects(self, plural: str, namespace: str | None) -> list[Obj]:
        items, _ = self.store.list(self.rtype("rbac.authorization.k8s.io", "v1", plural), namespace)
        return items

    # -- authentication --------------------------------------------------------------------

    def add_user(self, username: str, groups: tuple[str, ...] = ()) -> str:
        """A static bearer token for a user (tests use it for limited, non-admin users)."""
        return self.tokens.add_static(username, groups)

    def authenticate(self, token: str) -> UserInfo | None:
        record = self.tokens.lookup(token)
        if record is None:
            return None
        if record.kind == "static":
            return record.user
        account = self.store.find(
            self.rtype("", "v1", "serviceaccounts"), record.namespace, record.service_account
        )
        if account is None or account["metadata"]["uid"] != record.service_account_uid:
            return None
        if record.secret_name:
            secret = self.store.find(
                self.rtype("", "v1", "secrets"), record.namespace, record.secret_name
            )
            if secret is None or secret["metadata"]["uid"] != record.secret_uid:
                return None
            if record.kind == "secret":
                stored = (secret.get("data") or {}).get("token", "")
                if stored != base64.b64encode(token.encode()).decode():
                    return None
                self._track_legacy_use(secret)
        if record.expires_at is not None and self.clock.now() >= record.expires_at:
            return None
        return record.user

    def _track_legacy_use(self, secret: Obj) -> None:
        """LegacyServiceAccountTokenTracking: the API server labels a token Secret with the
        day its token was last used, once a day."""
        today = time.strftime("%Y-%m-%d", time.gmtime())
        labels = secret["metadata"].get("labels") or {}
        if labels.get(LEGACY_TOKEN_LAST_USED) == today:
            return
        secret["metadata"]["labels"] = {**labels, LEGACY_TOKEN_LAST_USED: today}
        with contextlib.suppress(
            apistatus.ApiError
        ):  # deleted or changed meanwhile: next use tries again
            self.store.update(self.rtype("", "v1", "secrets"), secret)

    # -- admission -------------------------------------------------------------------------

    def admit(
        self, operation: str, rtype: ResourceType, obj: Obj, old: Obj | None, user: UserInfo
    ) -> None:
        if rtype.group == "rbac.authorization.k8s.io":
            self._prevent_escalation(rtype, obj, user)
        for hook in self.admission_hooks:
            hook(operation, rtype, obj, old, user)

    def _prevent_escalation(self, rtype: ResourceType, obj: Obj, user: UserInfo) -> None:
        """RBAC's own admission: no one grants permissions they do not hold."""
        namespace = obj["metadata"].get("namespace", "")
        name = obj["metadata"].get("name", "")
        if rtype.kind in ("ClusterRole", "Role"):
            if self._may(user, "escalate", rtype, namespace, name):
                return
            rules = obj.get("rules") or []
        else:
            role_ref = obj.get("roleRef") or {}
            role_kind = role_ref.get("kind", "")
            role_plural = "clusterroles" if role_kind == "ClusterRole" else "roles"
            role_type = self.rtype("rbac.authorization.k8s.io", "v1", role_plural)
            if self._may(
                user,
                "bind",
                role_type,
                namespace if role_kind == "Role" else "",
                role_ref.get("name", ""),
            ):
                return
            role = self.store.find(
                role_type, namespace if role_kind == "Role" else "", role_ref.get("name", "")
            )
            rules = (role or {}).get("rules") or []
        denial = self.authorizer.escalation_denial(user, namespace, rules)
        if denial:
            raise apistatus.forbidden(
                f'{rtype.plural}.{rtype.group} "{name}" is forbidden: {denial}',
                resource=rtype.plural,
                group=rtype.group,
                name=name,
            )

    def _may(
        self, user: UserInfo, verb: str, rtype: ResourceType, namespace: str, name: str
    ) -> bool:
        from mtv_register.sandbox.rbac import Attributes

        attrs = Attributes(
            verb=verb,
            api_group=rtype.group,
            api_version=rtype.version,
            resource=rtype.plural,
            namespace=namespace,
            name=name,
        )
        return self.authorizer.authorize(user, attrs).allowed

    # -- hooks the controllers fill in ---------------------------------------------------

    def after_delete(self, rtype: ResourceType, obj: Obj) -> None:
        """An object is gone; the garbage collector looks for its dependents."""

    def after_delete_requested(self, rtype: ResourceType, obj: Obj, policy: str) -> None:
        """An object with finalizers (or a namespace) is marked for deletion."""

    def orphan_dependents(self, uid: str) -> None:
        """Remove ownerReferences to `uid` (propagationPolicy Orphan)."""
