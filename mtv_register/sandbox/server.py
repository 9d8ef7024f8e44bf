"""The HTTPS front of a simulated cluster: TLS, authentication, authorisation, faults, audit.

HTTP/1.1 with keep-alive and Content-Length on every answer; watches are streamed chunked.
Each connection's TLS handshake runs in its own thread, so a slow client never stalls others.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mtv_register.sandbox import api, apistatus
from mtv_register.sandbox.certs import CertificateAuthority, serving_context
from mtv_register.sandbox.cluster import Cluster
from mtv_register.sandbox.rbac import UserInfo, forbidden_message
from mtv_register.sandbox.request import Request, RequestInfo, Response, request_info

ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, cluster: Cluster, context: ssl.SSLContext) -> None:
        self.cluster = cluster
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer ~40 ms (Go's net/http sets it by default too).
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client refused our certificate, or went away
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are normal under fault injection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the audit log is the record; the request line is not repeated on stderr

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _body(self, headers: dict[str, str]) -> bytes:
        """The request body: by Content-Length, or chunked (`kubectl create --raw -f -`)."""
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            length = int(headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""
        body = b""
        while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers, up to the blank line
        return body

    def _serve(self) -> None:
        cluster = self.server.cluster
        received = time.time()
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._body(headers)
        req = Request(self.command, url.path, query, headers, body)
        info = request_info(self.command, url.path, query)
        user: UserInfo | None = None
        fault = None
        try:
            if cluster.faults.latency:
                time.sleep(cluster.faults.latency)
            fault = cluster.faults.take(info.verb, url.path, headers.get("user-agent", ""))
            if fault is not None and fault.drop and not fault.after:
                self._drop()
                self._audit(info, user, 0, received)
                return
            if fault is not None and not fault.after:
                raise _injected(fault.status, fault.retry_after, info)
            user = self._authenticate(headers)
            attrs = api.authorize(cluster, user, info)
            decision = cluster.authorizer.authorize(user, attrs)
            if not decision.allowed:
                raise apistatus.forbidden(
                    forbidden_message(user, attrs, decision.reason),
                    resource=info.resource,
                    group=info.api_group,
                    name=info.name,
                )
            if info.resource_request:
                response = api.resource(cluster, req, info, user)
            else:
                response = api.non_resource(cluster, req)
        except apistatus.ApiError as err:
            response = Response(err.code, err.status())
            if err.retry_after is not None:
                response.headers["Retry-After"] = str(err.retry_after)
        except Exception:
            traceback.print_exc()
            response = Response(
                500, apistatus.ApiError(500, "InternalError", "Internal error occurred").status()
            )
        if fault is not None and fault.after:
            # The work is done but the client never learns it: a lost answer.
            self._audit(info, user, response.code, received)
            if fault.drop:
                self._drop()
                return
            response = Response(
                fault.status, _injected(fault.status, fault.retry_after, info).status()
            )
            self._send(response)
            return
        self._audit(info, user, response.code, received)
        self._send(response)

    def _authenticate(self, headers: dict[str, str]) -> UserInfo:
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # kube-apiserver's default --anonymous-auth=true: no bearer token is the anonymous
            # user, whom RBAC then refuses (403); only a token that fails is a 401.
            return ANONYMOUS
        user = self.server.cluster.authenticate(token.strip())
        if user is None:
            raise apistatus.unauthorized()
        return user

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _audit(self, info: RequestInfo, user: UserInfo | None, code: int, received: float) -> None:
        object_ref = None
        if info.resource_request:
            object_ref = {
                k: v
                for k, v in {
                    "resource": info.resource,
                    "namespace": info.namespace,
                    "name": info.name,
                    "apiGroup": info.api_group,
                    "apiVersion": info.api_version,
                    "subresource": info.subresource,
                }.items()
                if v
            }
        self.server.cluster.audit.record(
            verb=info.verb,
            uri=self.path,
            username=user.username if user else "",
            groups=list(user.groups) if user else [],
            code=code,
            user_agent=self.headers.get("user-agent", ""),
            object_ref=object_ref,
            received=received,
        )

    def _send(self, response: Response) -> None:
        try:
            if response.stream is not None:
                self._send_stream(response)
                return
            body = response.body
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(response.code)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-cache, private")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _send_stream(self, response: Response) -> None:
        assert response.stream is not None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in response.stream:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _injected(code: int, retry_after: int | None, info: RequestInfo) -> apistatus.ApiError:
    if code == 409:
        return apistatus.conflict(info.resource, info.api_group, info.name)
    if code == 401:
        return apistatus.unauthorized()  # as a real server answers it: kubectl prints the reason
    if code == 403:
        return apistatus.forbidden("injected fault: forbidden")
    if code == 404:
        return apistatus.not_found(info.resource, info.api_group, info.name)
    return apistatus.server_error(code, retry_after)


class ApiServer:
    """Serves one cluster over HTTPS on 127.0.0.1, on a port the OS picks."""

    def __init__(self, cluster: Cluster, serving_ca: CertificateAuthority | None = None) -> None:
        self.cluster = cluster
        self.serving_ca = serving_ca or cluster.ca
        context = serving_context(self.serving_ca, f"{cluster.name}-apiserver")
        self._httpd = _TLSServer(cluster, context)
        host, port = self._httpd.server_address[:2]
        self.url = f"https://{host!s}:{port}"
        cluster.url = self.url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{cluster.name}-apiserver",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.cluster.stopping = True
        with self.cluster.store.lock:
            self.cluster.store.lock.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
