"""A real API server as the remote Forklift imitation reaches it: the kubeconfig's credentials
(client certificate, token, CA) loaded by the `kubernetes` client's own loader, then plain JSON
over HTTPS, watches streamed line by line. No token is ever part of a message or an error.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import kubernetes

from mtv_register.sandbox.mtv.probe import Endpoint

Obj = dict[str, Any]
REQUEST_TIMEOUT = 30.0
USER_AGENT = "forklift-imitation (mtv-register sandbox)"


class KubeError(Exception):
    """A failed request: the HTTP code (0: no answer) and the server's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


def collection(group: str, version: str, plural: str, namespace: str = "") -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{base}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{base}/{plural}"


class Kube:
    def __init__(self, kubeconfig: str, context: str) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        self._configuration = configuration
        self.url = str(configuration.host).rstrip("/")
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname or "", parts.port or 443
        self._prefix = parts.path.rstrip("/")
        self.context = _tls_context(configuration)

    def _token(self) -> str:
        value = self._configuration.get_api_key_with_prefix("BearerToken", "authorization") or ""
        return value.removeprefix("Bearer ").strip()

    def endpoint(self) -> Endpoint:
        """These credentials for Forklift's connection test of the `host` provider."""
        return Endpoint(self.url, self._token(), self.context)

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self._host, self._port, context=self.context, timeout=timeout
        )

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if body:
            headers["Content-Type"] = "application/json"
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def request(
        self, method: str, path: str, body: Obj | None = None, timeout: float = REQUEST_TIMEOUT
    ) -> Obj:
        """The answer's JSON; KubeError on a failed answer or none."""
        connection = self._connect(timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(
                method, self._prefix + path, body=payload, headers=self._headers(body is not None)
            )
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise KubeError(0, f"{method} {path}: {err or type(err).__name__}") from None
        finally:
            connection.close()
        if response.status >= 300:
            raise KubeError(response.status, _message(data) or response.reason)
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            raise KubeError(response.status, f"{method} {path}: the answer is not JSON") from None
        return answer if isinstance(answer, dict) else {}

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[Obj]:
        """The events of a watch from `resource_version`, until the server ends it."""
        query = (
            f"watch=true&allowWatchBookmarks=true&timeoutSeconds={timeout_seconds}"
            f"&resourceVersion={quote(resource_version)}"
        )
        connection = self._connect(timeout_seconds + REQUEST_TIMEOUT)
        try:
            try:
                connection.request(
                    "GET", f"{self._prefix}{path}?{query}", headers=self._headers(False)
                )
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as err:
                raise KubeError(0, f"watch {path}: {err or type(err).__name__}") from None
            if response.status >= 300:
                raise KubeError(response.status, _message(response.read()) or response.reason)
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as err:
                    raise KubeError(0, f"watch {path}: {err or type(err).__name__}") from None
                if not line:
                    return
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        finally:
            connection.close()


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message", ""))
    except (ValueError, AttributeError):
        return data.decode(errors="replace").strip()[:200]


def _tls_context(configuration: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context
