"""`register --insecure-skip-tls-verify`, run as its own process (as a user runs it, with
Python's default warning filters): one warning line of the tool's own, not urllib3's multi-line
InsecureRequestWarning, and Providers registered without a CA."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from mtv_register import forklift
from mtv_register.sandbox import MTV_NAMESPACE
from tests.integration.conftest import Backend, assert_none_of, register_args
from tests.target import Target

pytestmark = pytest.mark.both_backends  # see tests/integration/conftest.py: backends_of


@pytest.mark.needs_forklift
def test_insecure_registration_warns_once_and_stores_no_ca(
    target: Target, backend: Backend
) -> None:
    args = register_args(target.kubeconfig, "--insecure-skip-tls-verify", "--yes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    result = subprocess.run(
        [sys.executable, "-m", "mtv_register", args[0], *backend.flags, *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )

    assert_none_of(target.tokens(), result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr
    assert "InsecureRequestWarning" not in result.stderr
    warning_lines = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert warning_lines == [
        "warning: TLS verification is OFF for both providers (insecureSkipVerify: true)"
    ]
    for provider in ("source", "destination"):
        assert target.provider_phase(provider) == "Ready"
        secret = target.find("mtv", "secrets", forklift.secret_name_for(provider), MTV_NAMESPACE)
        assert secret is not None
        data = secret["data"]
        assert base64.b64decode(data["insecureSkipVerify"]).decode() == "true"
        assert "cacert" not in data and "ca.crt" not in data
