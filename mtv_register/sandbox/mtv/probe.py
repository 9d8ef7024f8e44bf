"""Forklift's connection test of an `openshift` Provider, over the network as Forklift makes it.

A fresh controller-runtime client per test (`pkg/lib/inventory/container/ocp/collector.go`,
`Test`): its lazy REST mapper discovers `/api` and `/apis` at the first list, then the six
cluster-wide `limit=1` lists run in order and the first error ends the test. Discovery errors
come back wrapped, so their status code is lost (500); a list refused by the server keeps its
code. client-go's transport decides the rest: 30 s to dial, 10 s for the TLS handshake, no
request timeout, GETs retried up to 10 times on a dropped connection or a Retry-After.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mtv_register.sandbox.mtv.golang import url_parse_error
from mtv_register.sandbox.mtv.reconcile import ConnectionOutcome, ConnectionParams, ForkliftTiming
from mtv_register.sandbox.mtv.trust import ca_pool, verify_failure

CONTROLLER_AGENT = "forklift-controller/v0.0.0 (linux/amd64) kubernetes/$Format"
API_AGENT = "forklift-api/v0.0.0 (linux/amd64) kubernetes/$Format"
# (name in Forklift's message, group, version, kind), in the order Forklift lists them.
TEST_RESOURCES = (
    ("namespaces", "", "v1", "Namespace"),
    ("storageclasses", "storage.k8s.io", "v1", "StorageClass"),
    ("network-attachment-definitions", "k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
    ("virtualmachines", "kubevirt.io", "v1", "VirtualMachine"),
    (
        "virtualmachineinstancetypes",
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineInstancetype",
    ),
    (
        "virtualmachineclusterinstancetypes",
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineClusterInstancetype",
    ),
)
DISCOVERY_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
MAX_RETRIES = 10  # client-go's per request
_GENERIC = {
    400: "the server rejected our request for an unknown reason",
    401: "the server has asked for the client to provide credentials",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    409: "the server reported a conflict",
    422: "the server rejected our request due to an error in our request",
    429: "the server has received too many requests and has asked us to try again later",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be "
    "processing the request",
}


@dataclass(frozen=True)
class Endpoint:
    """Where and how the test connects: a URL, a bearer token, a TLS context (None for http)."""

    url: str
    token: str = field(default="", repr=False)
    context: ssl.SSLContext | None = None


class Failure(Exception):
    """A failed step: its message as Go prints the error, and the status code Test reports."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def endpoint_for(params: ConnectionParams) -> Endpoint:
    """RestCfg then client-go's config checks (Failure with code 0: the client is not built)."""
    if params.insecure:
        context: ssl.SSLContext | None = ssl.create_default_context()
        assert context is not None
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif params.ca_pem:
        pem, problem = ca_pool(params.ca_pem)
        if problem:
            raise Failure(f"unable to load root certificates: {problem}", 0)
        context = ssl.create_default_context(cadata=pem)
        # Go trusts any certificate of the pool as an anchor, an intermediate too.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    else:
        context = ssl.create_default_context()
    url = _server_url(params.url, tls=params.insecure or params.ca_pem is not None)
    return Endpoint(url, params.token, context if url.startswith("https:") else None)


def _server_url(host: str, *, tls: bool) -> str:
    """rest.DefaultServerURL: a bare host:port gets a scheme, and then may carry no path."""
    if not host:
        raise Failure("host must be a URL or a host:port pair", 0)
    parts = urlsplit(host)
    if url_parse_error(host) or not parts.scheme or not parts.netloc:
        with_scheme = ("https://" if tls else "http://") + host
        problem = url_parse_error(with_scheme)
        if problem:
            raise Failure(problem, 0)
        if urlsplit(with_scheme).path not in ("", "/"):
            raise Failure(f'host must be a URL or a host:port pair: "{host}"', 0)
        return with_scheme
    return host


def run(
    endpoint: Endpoint, timing: ForkliftTiming, agent: str = CONTROLLER_AGENT
) -> ConnectionOutcome:
    """The test itself: discovery at the first list, then the six lists."""
    session = Session(endpoint, timing, agent)
    mapper = _Mapper(session)
    try:
        for name, group, version, kind in TEST_RESOURCES:
            try:
                plural, _ = mapper.resource_for(group, version, kind)
                prefix = "/api/v1" if not group else f"/apis/{group}/{version}"
                status, headers, body = session.get(f"{prefix}/{plural}?limit=1")
                if status != 200:
                    code, message = api_error(status, headers, body, f"{plural}.{group}".strip("."))
                    raise Failure(message, code)
            except Failure as failed:
                return ConnectionOutcome(
                    False, failed.code, f"Failed to get resource {name}: {failed}"
                )
    finally:
        session.close()
    return ConnectionOutcome(True)


class _Mapper:
    """controller-runtime's lazy dynamic REST mapper, as far as six lists need it."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.known: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}
        self.discovered = False

    def resource_for(self, group: str, version: str, kind: str) -> tuple[str, bool]:
        found = self.known.get((group, version), {}).get(kind)
        if found is None:
            self._reload(group, version)
            found = self.known.get((group, version), {}).get(kind)
        if found is None:
            raise Failure(f'no matches for kind "{kind}" in version "{_gv(group, version)}"')
        return found

    def _reload(self, group: str, version: str) -> None:
        if not self.discovered:
            aggregated = self._server_groups()
            self.discovered = True
            if aggregated is not None:
                self.known.update(aggregated)
                if (group, version) not in self.known:
                    raise Failure(
                        "unable to retrieve the complete list of server APIs: "
                        f"{_gv(group, version)}: no matches for {group}/{version}, Resource="
                    )
                return
        path = "/api/v1" if not group else f"/apis/{group}/{version}"
        status, headers, body = self.session.get(path, accept="application/json")
        if status == 404:
            self.known.pop((group, version), None)
            return
        if status != 200:
            _, message = api_error(status, headers, body, "")
            raise Failure(
                "failed to get API group resources: unable to retrieve the complete list of "
                f"server APIs: {_gv(group, version)}: {message}"
            )
        resources = _json(body).get("resources") or []
        self.known[(group, version)] = {
            r["kind"]: (r["name"], bool(r.get("namespaced")))
            for r in resources
            if "/" not in r.get("name", "/")
        }

    def _server_groups(self) -> dict[tuple[str, str], dict[str, tuple[str, bool]]] | None:
        """GroupsAndMaybeResources: the resources when both answers are aggregated."""
        found: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}
        groups = 0
        aggregated = True
        for path in ("/api", "/apis"):
            try:
                status, headers, body = self.session.get(path, accept=DISCOVERY_ACCEPT)
            except Failure as failed:
                raise Failure(f"failed to get server groups: {failed}") from None
            if status == 404 and path == "/api":
                aggregated = False
                continue
            if status != 200:
                _, message = api_error(status, headers, body, "")
                raise Failure(f"failed to get server groups: {message}")
            data = _json(body)
            if "apidiscovery.k8s.io" in headers.get("content-type", ""):
                for item in data.get("items") or []:
                    groups += 1
                    name = (item.get("metadata") or {}).get("name", "")
                    for entry in item.get("versions") or []:
                        found[(name, entry.get("version", ""))] = {
                            (r.get("responseKind") or {}).get("kind", ""): (
                                r.get("resource", ""),
                                r.get("scope") == "Namespaced",
                            )
                            for r in entry.get("resources") or []
                        }
            else:
                aggregated = False
                groups += len(data.get("groups") or []) or (1 if data.get("versions") else 0)
        if not groups:
            raise Failure("received an empty API groups list")
        return found if aggregated else None


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as err:
        raise Failure(f"invalid character in the server's answer: {err}") from None
    return data if isinstance(data, dict) else {}


def api_error(status: int, headers: dict[str, str], body: bytes, resource: str) -> tuple[int, str]:
    """(code, message) of a failed answer, as client-go's StatusError prints it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return int(data.get("code") or status), str(data.get("message", ""))
    text = body.decode(errors="replace").strip() if len(body) < 2048 else ""
    if status == 403 or status in (406, 415):
        message = text
    elif status in _GENERIC:
        message = _GENERIC[status]
    elif status >= 500:
        message = (
            f"an error on the server ({json.dumps(text)}) has prevented the request from succeeding"
        )
    else:
        message = (
            f"the server responded with the status code {status} but did not return more "
            "information"
        )
    return status, f"{message} (get {resource})" if resource else message


class _Dropped(Exception):
    """The connection ended before an answer: client-go retries such a GET."""


class Session:
    """One keep-alive connection to the endpoint, with client-go's retries."""

    def __init__(self, endpoint: Endpoint, timing: ForkliftTiming, agent: str) -> None:
        parts = urlsplit(endpoint.url)
        self.endpoint, self.timing, self.agent = endpoint, timing, agent
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.prefix = parts.path.rstrip("/")
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def get(self, path: str, accept: str = "application/json") -> tuple[int, dict[str, str], bytes]:
        url = self.base + path
        if self.scheme not in ("http", "https"):
            raise Failure(f'Get "{url}": unsupported protocol scheme "{self.scheme}"')
        attempts = 0
        while True:
            try:
                status, headers, body = self._round_trip(self.prefix + path, accept)
            except _Dropped as dropped:
                attempts += 1
                if attempts > MAX_RETRIES:
                    raise Failure(f'Get "{url}": {dropped}') from None
                time.sleep(self.timing.retry_after_unit)
                continue
            except Failure as failed:
                raise Failure(f'Get "{url}": {failed}') from None
            wait = headers.get("retry-after", "")
            if (status == 429 or status >= 500) and wait.isdigit() and attempts < MAX_RETRIES:
                attempts += 1
                time.sleep(int(wait) * self.timing.retry_after_unit)
                continue
            return status, headers, body

    def _round_trip(self, target: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        reused = self._connection is not None
        connection = self._connection or self._connect()
        self._connection = None
        headers = {"Accept": accept, "User-Agent": self.agent}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
            connection.close()
            if reused:  # the server closed an idle connection: Go's transport dials again
                return self._round_trip(target, accept)
            if isinstance(err, ConnectionResetError):
                raise _Dropped(self._reset_text()) from None
            raise _Dropped("EOF") from None
        except http.client.IncompleteRead:
            connection.close()
            raise _Dropped("unexpected EOF") from None
        except TimeoutError:
            connection.close()
            raise Failure(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ) from None
        except OSError as err:
            connection.close()
            raise Failure(f"read tcp {self._hostport()}: {err.strerror or err}") from None
        if not response.will_close:
            self._connection = connection
        else:
            connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def _hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _reset_text(self) -> str:
        return f"read tcp ->{self._hostport()}: read: connection reset by peer"

    def _connect(self) -> http.client.HTTPConnection:
        where = self._hostport()
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timing.dial_timeout)
        except socket.gaierror:
            raise Failure(f"dial tcp: lookup {self.host}: no such host") from None
        except ConnectionRefusedError:
            raise Failure(f"dial tcp {where}: connect: connection refused") from None
        except TimeoutError:
            raise Failure(f"dial tcp {where}: i/o timeout") from None
        except OSError as err:
            raise Failure(
                f"dial tcp {where}: connect: {(err.strerror or str(err)).lower()}"
            ) from None
        sock: socket.socket = raw
        context = self.endpoint.context
        if context is not None:
            raw.settimeout(self.timing.tls_handshake_timeout)
            try:
                sock = context.wrap_socket(raw, server_hostname=self.host)
            except ssl.SSLCertVerificationError as err:
                raw.close()
                cause = verify_failure(err, self.host, self.port, self.timing.dial_timeout)
                raise Failure(f"tls: failed to verify certificate: {cause}") from None
            except TimeoutError:
                raw.close()
                raise Failure("net/http: TLS handshake timeout") from None
            except (ssl.SSLEOFError, ConnectionResetError):
                raw.close()
                raise _Dropped("EOF") from None
            except ssl.SSLError as err:
                raw.close()
                if err.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
                    raise Failure("tls: first record does not look like a TLS handshake") from None
                raise Failure(f"remote error: tls: {(err.reason or str(err)).lower()}") from None
            except OSError as err:
                raw.close()
                raise Failure(f"read tcp {where}: {err.strerror or err}") from None
        sock.settimeout(self.timing.response_timeout)
        connection = http.client.HTTPConnection(self.host, self.port)
        connection.sock = sock
        return connection


def probe(
    params: ConnectionParams, host: Callable[[], Endpoint], timing: ForkliftTiming, agent: str
) -> ConnectionOutcome:
    """The whole test of `params`: the client built as RestCfg builds it (the controller's own
    credentials for the host provider), then `run`."""
    try:
        endpoint = host() if params.host else endpoint_for(params)
    except Failure as failed:
        return ConnectionOutcome(False, failed.code, failed.message)
    except (LookupError, OSError, ValueError) as err:
        return ConnectionOutcome(False, 0, str(err))
    return run(endpoint, timing, agent)
