"""forklift-api's provider-Secret webhooks served over HTTPS on 127.0.0.1, with a CA made here,
for a real API server to call (`/secret-validate`, `/secret-mutate`; AdmissionReview v1).

As forklift-api: a body that is not `Content-Type: application/json` or not JSON gets a bare
400; a mutation that panics in Go (a Secret with no `data`) ends the connection unanswered.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mtv_register.sandbox.certs import new_ca, serving_context
from mtv_register.sandbox.mtv import admission
from mtv_register.sandbox.mtv.reconcile import ForkliftVersion, Tester

Obj = dict[str, Any]
Log = Callable[[str], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, context: ssl.SSLContext, webhooks: WebhookServer) -> None:
        self.context = context
        self.webhooks = webhooks
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a caller that went away


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path not in (admission.VALIDATE_PATH, admission.MUTATE_PATH):
            self._answer(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        try:
            if self.headers.get("Content-Type") != "application/json":
                raise ValueError("not application/json")
            review = json.loads(body)
            if not isinstance(review, dict):
                raise ValueError("not an object")
        except ValueError:
            self._answer(400, b"", "text/plain; charset=utf-8")
            return
        answer = self.server.webhooks.answer(path, review)
        if answer is None:
            self.close_connection = True  # no answer at all: the caller sees EOF
            return
        self._answer(200, json.dumps(answer).encode(), "application/json")

    def _answer(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class WebhookServer:
    """The two webhooks on 127.0.0.1:`port` (0: the OS picks), with their own CA."""

    def __init__(
        self, release: ForkliftVersion, test: Tester, *, port: int = 0, log: Log | None = None
    ) -> None:
        self.release = release
        self._test = test
        self._log = log or (lambda message: None)
        self.ca = new_ca("forklift-api-ca")
        self._httpd = _Server(port, serving_context(self.ca, "forklift-api"), self)
        host, bound = self._httpd.server_address[:2]
        self.url = f"https://{host!s}:{bound}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="forklift-api",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def configurations(self, timeout: int = 30) -> tuple[Obj, Obj]:
        """(Validating, Mutating)WebhookConfiguration pointing at this server."""
        return admission.configurations(self.url, self.ca.pem, timeout)

    def answer(self, path: str, review: Obj) -> Obj | None:
        """The AdmissionReview answer to `review`, None where forklift-api gives none."""
        request = review.get("request") or {}
        meta = (request.get("object") or {}).get("metadata") or {}
        where = f"secret {meta.get('namespace', '')}/{meta.get('name', '')}"
        if path == admission.MUTATE_PATH:
            mutated = admission.mutate(request)
            if mutated is None:
                self._log(f"webhook {admission.MUTATING_WEBHOOK}: {where}: no data, no answer")
                return None
            return admission.review(review, mutated)
        response, logged = admission.validate(request, self.release, self._test)
        self._log(f"webhook {admission.VALIDATING_WEBHOOK}: {where}: {logged}")
        return admission.review(review, response)
