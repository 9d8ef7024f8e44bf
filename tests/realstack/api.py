"""A minimal admin client for the launcher: JSON over HTTPS with the admin's client certificate.
(The tests reach the clusters with the `kubernetes` client; this keeps the launcher's start-up
and its failure messages plain.)"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.realstack.pki import Pki

Obj = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Admin:
    def __init__(self, url: str, pki: Pki) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.context = ssl.create_default_context(cafile=str(pki.ca))
        self.context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))

    def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Obj:
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(
                method,
                path,
                body=payload,
                headers={"Content-Type": content_type, "Accept": "application/json"},
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")[:300]
            raise ApiError(response.status, message)
        if not data:
            return {}
        try:
            return dict(json.loads(data))
        except ValueError:  # /readyz and friends answer in plain text
            return {"text": data.decode(errors="replace")}

    def get(self, path: str) -> Obj | None:
        try:
            return self.request("GET", path)
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    def apply(self, collection: str, obj: Obj) -> Obj:
        """Create `obj` in `collection`, or leave it as it is when it exists."""
        try:
            return self.request("POST", collection, obj)
        except ApiError as error:
            if error.code != 409:
                raise
            return self.request("GET", f"{collection}/{obj['metadata']['name']}")


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, detail: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, ApiError, http.client.HTTPException, ValueError):
            pass  # not up yet
        if time.monotonic() > deadline:
            extra = detail()
            raise TimeoutError(
                f"{what} did not happen within {timeout:g}s" + (f": {extra}" if extra else "")
            )
        time.sleep(0.1)
