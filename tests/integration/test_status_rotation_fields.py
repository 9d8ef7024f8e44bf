"""`status` after rotation: the last rotation time, and token Secrets left behind."""

from __future__ import annotations

import json

from mtv_register import manifests
from mtv_register.orchestrator import register_pair
from tests.integration.conftest import pair_options


def test_status_names_a_token_secret_left_behind_and_the_last_rotation(sandbox, kubeconfig, cli):
    register_pair(pair_options(kubeconfig))
    rotated = cli(
        "rotate",
        "--host",
        "mtv",
        "--kubeconfig",
        str(kubeconfig),
        "--provider",
        "source",
        "--max-age",
        "0s",
    )
    assert rotated.exit_code == 0, rotated.stderr
    # An interrupted rotation's Secret: a second token Secret of the same account.
    source = sandbox["source"].cluster
    source.store.create(
        source.rtype("", "v1", "secrets"),
        manifests.token_secret("mtv-provider", "mtv-register", name="mtv-provider-token-stray"),
    )
    result = cli(
        "status",
        "--host",
        "mtv",
        "--kubeconfig",
        str(kubeconfig),
        "--remote",
        "source=source",
        "--output",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    row = next(r for r in report["providers"] if r["name"] == "source")
    assert row["rotatedAt"]
    untouched = next(r for r in report["providers"] if r["name"] == "destination")
    assert not untouched.get("rotatedAt")
    (remote,) = report["remotes"]
    assert remote["leftoverTokenSecrets"] == ["mtv-provider-token-stray"]
    text = cli(
        "status", "--host", "mtv", "--kubeconfig", str(kubeconfig), "--remote", "source=source"
    )
    assert "LEFT BEHIND" in text.stdout and "mtv-provider-token-stray" in text.stdout
