"""`Kube` on the official `kubernetes` client: the one place its HTTP requests are sent.

Plain JSON dicts over the client's REST layer and connection pool (TLS, client certificates and
proxy as the kubeconfig says), so every request is one request (no discovery round trips). A
connection that fails becomes `errors` (TLS, unreachable) or `Transient` here; an answer that is
not 2xx goes to `kube.translate`; each request is retried with `timing.retrying`, and each try
waits its turn in the server's `throttle` bucket (`--qps`, `--burst`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3

from mtv_register import deadline, errors, throttle
from mtv_register.kube import MERGE_PATCH, Kind, NotFound, translate
from mtv_register.redaction import scrub
from mtv_register.timing import Timing, Transient, retrying

if TYPE_CHECKING:  # imported where used: `--client oc` never loads the kubernetes client
    from kubernetes import client as k8s

    from mtv_register.clusters import Connector

Obj = dict[str, Any]
USER_AGENT = "mtv-register/0.1.0"


class ApiKube:
    """`Kube` on the official `kubernetes` client's REST layer."""

    # What to do when TLS fails: a token client checks the CA the Provider will carry.
    tls_fix = "check the CA (--ca-source) or the server address"

    def __init__(
        self, api_client: k8s.ApiClient, *, context: str, url: str, timing: Timing | None = None
    ) -> None:
        self.api_client = api_client
        self.context = context
        self.url = url
        self.timing = timing or Timing()

    @classmethod
    def from_token(
        cls,
        url: str,
        token: str,
        *,
        ca_pem: str | None,
        insecure: bool = False,
        context: str,
        timing: Timing | None = None,
    ) -> ApiKube:
        """A client holding a service account's token, e.g. to prove it works."""
        from kubernetes import client as k8s

        configuration = k8s.Configuration()
        configuration.host = url
        configuration.api_key = {"authorization": f"Bearer {token}"}
        configuration.verify_ssl = not insecure
        if ca_pem and not insecure:
            handle, ca_file = tempfile.mkstemp(prefix="mtv-register-ca-", suffix=".crt")
            with os.fdopen(handle, "w") as stream:
                stream.write(ca_pem)
            configuration.ssl_ca_cert = ca_file
        return cls(k8s.ApiClient(configuration), context=context, url=url, timing=timing)

    @property
    def connector(self) -> Connector:
        from mtv_register.clusters import Connector

        return Connector(timing=self.timing)

    def close(self) -> None:
        self.api_client.close()
        ca_file = self.api_client.configuration.ssl_ca_cert
        if ca_file and os.path.basename(ca_file).startswith("mtv-register-ca-"):
            with _suppress_os_error():
                os.unlink(ca_file)

    # -- the verbs -------------------------------------------------------------------------

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.request("GET", kind.path(namespace, name))
        except NotFound:
            return None

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
    ) -> Obj:
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": str(limit) if limit else "",
        }
        return self.request("GET", kind.path(namespace), query=query)

    def create(self, kind: Kind, obj: Obj, *, dry_run: bool = False) -> Obj:
        namespace = obj.get("metadata", {}).get("namespace")
        return self.request(
            "POST", kind.path(namespace), body=obj, query={"dryRun": "All" if dry_run else ""}
        )

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return self.request("PUT", kind.path(meta.get("namespace"), meta["name"]), body=obj)

    def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        content_type: str = MERGE_PATCH,
    ) -> Obj:
        return self.request(
            "PATCH", kind.path(namespace, name), body=patch, content_type=content_type
        )

    def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """True when deleted, False when it was already gone."""
        options: Obj = {"propagationPolicy": "Background"}
        preconditions = {
            k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v
        }
        if preconditions:
            options["preconditions"] = preconditions
        try:
            self.request("DELETE", kind.path(namespace, name), body=options)
        except NotFound:
            return False
        return True

    def post(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        name: str | None,
        resource_version: str,
        timeout: float,
    ) -> Iterator[Obj]:
        """Events after `resource_version` (of one object, or of the whole collection when
        `name` is None), until the server ends the watch."""
        query = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}" if name else "",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "false",
            "timeoutSeconds": str(max(1, int(deadline.cap(timeout) or timeout))),
        }
        response = self._send(
            "GET",
            kind.path(namespace),
            query,
            None,
            "application/json",
            stream=True,
            timeout=timeout + 5,
        )
        try:
            # A Ctrl-C shuts the socket, so the thread blocked in this read stops at once.
            with deadline.on_cancel(response.shutdown):
                buffer = b""
                for chunk in response.stream(4096, decode_content=True):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise Transient(f"the watch was interrupted: {err}") from None
        finally:
            response.release_conn()

    # -- the one request path ----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        params = {k: v for k, v in (query or {}).items() if v}

        def send() -> Obj:
            data = self._send(method, path, params, body, content_type).data
            return json.loads(data) if data else {}

        return retrying(self.timing, send, what=f"{method} {path}", context=self.context)

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        content_type: str,
        *,
        stream: bool = False,
        timeout: float | None = 30.0,
    ) -> Any:
        """One HTTP request through the client's own connection pool (TLS, client
        certificates and proxy as the kubeconfig says); urllib3 never retries by itself."""
        configuration = self.api_client.configuration
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
        }
        for setting in configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"]).title()] = str(setting["value"])
        url = configuration.host.rstrip("/") + path
        if query:
            url += "?" + urlencode(query)
        payload = json.dumps(body).encode() if body is not None else None
        step = f"{method} {path} on context {self.context}"
        deadline.check(step)
        throttle.take(self.url, self.timing.qps, self.timing.burst, step=step)
        timeout = deadline.cap(timeout)
        try:
            response = self.api_client.rest_client.pool_manager.request(
                method,
                url,
                body=payload,
                headers=headers,
                retries=False,
                preload_content=not stream,
                timeout=timeout,
            )
        except urllib3.exceptions.SSLError as exc:
            raise errors.TlsError(
                f"TLS to {self.url} (context {self.context}) failed: {_reason(exc)}",
                fix=self.tls_fix,
            ) from None
        except urllib3.exceptions.ConnectTimeoutError as exc:  # NewConnectionError is one too
            raise errors.UnreachableError(
                f"cannot reach {self.url} (context {self.context}): {_reason(exc)}",
                fix="check that the cluster is up and the kubeconfig's server address",
            ) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            if deadline.passed():  # a server that accepts and never answers
                raise errors.UnreachableError(
                    f"no answer from {self.url} (context {self.context}) to {method} {path} "
                    "before the --timeout ran out",
                    fix="check that API server's health (it accepts connections but does not "
                    "answer), or raise --timeout",
                ) from None
            raise Transient(f"{method} {path}: no answer: {_reason(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(f"{method} {path}: connection lost: {_reason(exc)}") from None
        if 200 <= response.status < 300:
            return response
        data = response.read() if stream else response.data
        response.release_conn()
        raise translate(response.status, data, response.headers, method, path, self.context)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    return scrub(text.split(": ", 1)[-1] if "object at 0x" in text else text)


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return isinstance(exc[1], OSError)
