"""Helpers the sandbox tests share: polling with a deadline, and refused calls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from kubernetes.client import ApiException

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float = 5.0, what: str = "it") -> T:
    """Poll every 10 ms until `predicate` returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting {timeout} s for {what}")
        time.sleep(0.01)


def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """The HTTP code and the Status body of a call the server must refuse."""
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body or "{}")
