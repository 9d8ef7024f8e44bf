"""Keeping tokens out of everything the tool writes: output, logs, exceptions.

Every token the tool handles is remembered here the moment it is read; `scrub` replaces it (and
its base64 form, which is how a Secret carries it) wherever text leaves the process.
"""

from __future__ import annotations

import base64
import logging
import threading

REDACTED = "<redacted>"
_known: set[str] = set()
_lock = threading.Lock()


def remember(token: str) -> str:
    """Register a token so it is scrubbed from output; returns it unchanged."""
    if token:
        with _lock:
            _known.add(token)
            _known.add(base64.b64encode(token.encode()).decode())
    return token


def scrub(text: str) -> str:
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class ScrubFilter(logging.Filter):
    """Installed on the root handlers: a log record never carries a known token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _Handler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """The CLI's own stderr handler: replaced, never stacked, when installed again."""


def install_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler()
    handler.addFilter(ScrubFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # The kubernetes client logs whole response bodies at DEBUG, Secrets included: never that.
    logging.getLogger("kubernetes.client.rest").setLevel(max(level, logging.INFO))
