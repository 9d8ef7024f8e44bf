"""Registrations that share clusters (issue 14, part 1): a Provider, and a cluster's credentials,
go only with the last registration that uses them; names that match nothing touch nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtv_register import forklift
from tests.integration.conftest import CliRun, one_error_line, snapshot_difference
from tests.target import Target

MTV_NS = "openshift-mtv"
HOST = ("--host", "mtv")

pytestmark = pytest.mark.needs_forklift


def _register(cli: CliRun, kubeconfig: Path, source: str, destination: str, *names: str) -> str:
    result = cli(
        "register",
        "--kubeconfig",
        str(kubeconfig),
        "--source",
        source,
        "--destination",
        destination,
        *HOST,
        *names,
    )
    assert result.exit_code == 0, result.output
    return result.stderr


def _unregister(cli: CliRun, kubeconfig: Path, *args: str) -> tuple[int, str]:
    result = cli("unregister", "--kubeconfig", str(kubeconfig), *HOST, "--yes", *args)
    return result.exit_code, result.stdout + result.stderr


def _pairs(target: Target, name: str) -> list[str]:
    return forklift.pairs_of(target.find("mtv", "providers", name, MTV_NS))


def test_pairs_sharing_both_clusters_keep_them_until_the_last_goes(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    before = target.snapshot()
    _register(cli, kubeconfig, "source", "destination")
    _register(cli, kubeconfig, "destination", "source")  # the way back, the same Providers
    assert _pairs(target, "source") == ["destination/source", "source/destination"]

    code, output = _unregister(
        cli, kubeconfig, "--source", "source", "--destination", "destination"
    )
    assert code == 0, output
    assert "kept (still used by destination/source)" in output
    assert target.provider_phase("source") == "Ready"
    assert target.provider_phase("destination") == "Ready"
    assert _pairs(target, "destination") == ["destination/source"]
    assert target.find("source", "serviceaccounts", "mtv-provider", "mtv-register") is not None

    code, output = _unregister(
        cli, kubeconfig, "--source", "destination", "--destination", "source"
    )
    assert code == 0, output
    assert snapshot_difference(before, target.snapshot()) == {}


def test_a_cluster_under_two_names_keeps_its_credentials_while_one_provider_is_left(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    before = target.snapshot()
    _register(cli, kubeconfig, "source", "destination")
    warned = _register(cli, kubeconfig, "source", "destination", "--source-name", "source-b")
    assert (
        f"warning: {target.url('source')} (source) already has Provider source on mtv; a "
        'second one, "source-b", is created (pass --source-name source to use it)'
    ) in warned
    assert _pairs(target, "destination") == ["source-b/destination", "source/destination"]

    code, output = _unregister(
        cli, kubeconfig, "--source", "source", "--destination", "destination",
        "--source-name", "source-b",
    )  # fmt: skip
    assert code == 0, output
    assert target.find("mtv", "providers", "source-b", MTV_NS) is None
    assert "kept (Provider source on mtv still uses them)" in output
    assert "kept (still used by source/destination)" in output
    assert target.provider_phase("source") == "Ready"
    token = target.find("source", "secrets", "mtv-provider-token", "mtv-register")
    assert token is not None

    code, output = _unregister(
        cli, kubeconfig, "--source", "source", "--destination", "destination"
    )
    assert code == 0, output
    assert snapshot_difference(before, target.snapshot()) == {}


def test_names_that_match_no_provider_are_refused_and_touch_nothing(
    target: Target, kubeconfig: Path, cli: CliRun
) -> None:
    _register(cli, kubeconfig, "source", "destination")
    registered = target.snapshot()

    result = cli(
        "unregister", "--kubeconfig", str(kubeconfig), *HOST, "--yes",
        "--source", "source", "--destination", "destination",
        "--source-name", "typo-a", "--destination-name", "typo-b",
    )  # fmt: skip

    assert result.exit_code == 6
    line = one_error_line(result)
    assert 'no Provider named "typo-a" (source) or "typo-b" (destination) on mtv' in line
    assert "nothing was changed" in line
    assert "Providers there: destination, host, source" in line or (
        "Providers there: destination, source" in line
    )
    assert snapshot_difference(registered, target.snapshot()) == {}


def test_unregister_pairs_removes_a_fleet_in_parallel(
    target: Target, kubeconfig: Path, cli: CliRun, tmp_path: Path
) -> None:
    before = target.snapshot()
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "pairs:\n"
        "  - {source: source, destination: destination, host: mtv}\n"
        "  - {source: destination, destination: source, host: mtv}\n"
        "  - {source: source, destination: destination, host: mtv, sourceName: source-b}\n"
    )
    result = cli("register", "--kubeconfig", str(kubeconfig), "--pairs", str(fleet))
    assert result.exit_code == 0, result.output
    assert _pairs(target, "destination") == [
        "destination/source",
        "source-b/destination",
        "source/destination",
    ]

    result = cli(
        "unregister", "--kubeconfig", str(kubeconfig), "--pairs", str(fleet),
        "--parallel", "3", "--yes",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert snapshot_difference(before, target.snapshot()) == {}
