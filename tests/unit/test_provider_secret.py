"""The provider Secret's one model: what is written is what is read back, and an older or
hand-edited Secret reads without a crash."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from mtv_register import naming
from mtv_register.provider_secret import ProviderSecret, switched

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
# Tokens are remembered by the redaction for the whole process: each must be unmistakable.
OLD = "a-token-of-an-older-registration"
BOUND = ProviderSecret(
    url="https://api.source.example:6443",
    token="header.payload.signature",
    ca_pem=CA,
    insecure=False,
    token_secret_ref="",
    token_created="2026-12-01T10:00:00Z",
    token_type="bound",
    service_account_ref="mtv-register/mtv-provider",
    token_expires="2026-12-02T10:00:00Z",
    cluster_role="existing:my-role",
    token_ttl=86400,
)
LONG_LIVED = ProviderSecret(
    url="https://api.source.example:6443",
    token="a-long-lived-token",
    ca_pem=None,
    insecure=True,
    token_secret_ref="mtv-register/mtv-provider-token",
    token_created="2026-12-01T10:00:00Z",
    service_account_ref="mtv-register/mtv-provider",
    cluster_role="live-migration-role",
)


@pytest.mark.parametrize("written", [BOUND, LONG_LIVED], ids=["bound", "long-lived"])
def test_what_is_written_is_read_back(written: ProviderSecret) -> None:
    secret = written.to_secret("source-credentials", "openshift-mtv", legacy_cacert=True)
    assert ProviderSecret.from_secret(secret) == written


def test_the_readings_of_a_bound_token() -> None:
    read = ProviderSecret.from_secret(BOUND.to_secret("s", "ns", legacy_cacert=False))
    assert read.bound
    assert read.service_account == ("mtv-register", "mtv-provider")
    assert read.token_secret == ("", "")
    assert read.expires_at == dt.datetime(2026, 12, 2, 10, tzinfo=dt.UTC)
    assert read.created_at == dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    assert not read.ca_only_under_cacert


def test_a_long_lived_token_records_no_ttl_and_names_its_token_secret() -> None:
    secret = LONG_LIVED.to_secret("s", "ns", legacy_cacert=True)
    annotations = secret["metadata"]["annotations"]
    assert naming.TOKEN_TTL_ANNOTATION not in annotations
    assert naming.TOKEN_EXPIRES_ANNOTATION not in annotations
    assert annotations[naming.TOKEN_SECRET_ANNOTATION] == "mtv-register/mtv-provider-token"
    assert ProviderSecret.from_secret(secret).token_secret == ("mtv-register", "mtv-provider-token")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_secret_from_before_the_annotations_reads_as_empty_fields() -> None:
    """An older registration (or one made by hand): the CA only under `cacert`, no annotations."""
    read = ProviderSecret.from_secret(
        {
            "metadata": {"name": "s", "namespace": "ns"},
            "data": {"token": _b64(OLD), "url": _b64("https://x"), "cacert": _b64(CA)},
        }
    )
    assert (read.token, read.url, read.ca_pem) == (OLD, "https://x", CA)
    assert read.ca_only_under_cacert
    assert read.token_type == ""
    assert not read.bound
    assert read.token_secret == ("", "")
    assert read.created_at is None and read.expires_at is None
    assert read.token_ttl == 0


def test_malformed_values_read_as_absent_not_as_a_crash() -> None:
    read = ProviderSecret.from_secret(
        {
            "metadata": {
                "annotations": {
                    naming.TOKEN_TTL_ANNOTATION: "a day",
                    naming.TOKEN_EXPIRES_ANNOTATION: "tomorrow",
                }
            },
            "data": {"token": "not base64!", "url": _b64("https://x")},
        }
    )
    assert read.token == ""
    assert read.token_ttl == 0
    assert read.expires_at is None


def test_a_switch_changes_the_token_and_its_annotations_and_keeps_the_rest() -> None:
    secret = LONG_LIVED.to_secret("s", "ns", legacy_cacert=True)
    secret["metadata"]["resourceVersion"] = "42"
    moment = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)
    updated = switched(
        secret,
        "the-new-token",
        created="2026-12-03T09:29:59Z",
        rotated_at=moment,
        token_secret_ref="mtv-register/mtv-provider-token-abcde",
    )
    read = ProviderSecret.from_secret(updated)
    assert read.token == "the-new-token"
    assert read.token_secret_ref == "mtv-register/mtv-provider-token-abcde"
    assert read.rotated_at == naming.stamp(moment) == "2026-12-03T09:30:00Z"
    assert (read.url, read.insecure, read.cluster_role) == (
        LONG_LIVED.url,
        LONG_LIVED.insecure,
        LONG_LIVED.cluster_role,
    )
    assert updated["metadata"]["resourceVersion"] == "42"  # the write stays guarded
    assert ProviderSecret.from_secret(secret).token == LONG_LIVED.token  # the input is untouched
