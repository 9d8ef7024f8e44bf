"""Every name, label, annotation and timestamp format mtv-register writes on a cluster, in one
block, so that what the tool leaves behind is read in one place (as Argo CD keeps its own)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Final

# --- Timestamps ------------------------------------------------------------------------------

# RFC 3339 in UTC to the second, as Kubernetes writes creationTimestamp.
STAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
# To the microsecond: a request for Forklift to test again must change the value each time.
PRECISE_STAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str | None) -> dt.datetime | None:
    """The moment `text` names, or None when it is empty or not a stamp."""
    try:
        return dt.datetime.strptime(text or "", STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


# --- Names, labels and annotations -------------------------------------------------------------

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "mtv-register"

DEFAULT_ROLE_NAME: Final = "live-migration-role"
DEFAULT_SERVICE_ACCOUNT: Final = "mtv-provider"
DEFAULT_SERVICE_ACCOUNT_NAMESPACE: Final = "mtv-register"
# The token Secret is "<sa>-token"; rotation creates "<sa>-token-<suffix>" from generateName.
TOKEN_SECRET_SUFFIX: Final = "-token"

ROOT_CA_CONFIGMAP: Final = "kube-root-ca.crt"
ROOT_CA_KEY: Final = "ca.crt"

SERVICE_ACCOUNT_TOKEN_TYPE: Final = "kubernetes.io/service-account-token"
SERVICE_ACCOUNT_NAME_ANNOTATION: Final = "kubernetes.io/service-account.name"

MTV_NAMESPACES: Final = ("openshift-mtv", "konveyor-forklift")
HOST_PROVIDER_NAME: Final = "host"
FORKLIFT_GROUP: Final = "forklift.konveyor.io"
FORKLIFT_VERSION: Final = "v1beta1"
FORKLIFT_API_VERSION: Final = f"{FORKLIFT_GROUP}/{FORKLIFT_VERSION}"
PROVIDER_KIND: Final = "Provider"
PROVIDER_PLURAL: Final = "providers"
PROVIDER_TYPE: Final = "openshift"

# The labels of a provider Secret. forklift-api's webhooks select the Secrets that carry the
# second one (objectSelector: Exists), and then test the connection inside the write.
PROVIDER_SECRET_WEBHOOK_LABEL: Final = "createdForResourceType"
PROVIDER_SECRET_LABELS: Final[Mapping[str, str]] = {
    "createdForProviderType": PROVIDER_TYPE,
    PROVIDER_SECRET_WEBHOOK_LABEL: PROVIDER_PLURAL,
}
PROVIDER_SECRET_TOKEN_KEY: Final = "token"
PROVIDER_SECRET_URL_KEY: Final = "url"
PROVIDER_SECRET_CA_KEY: Final = "ca.crt"
PROVIDER_SECRET_LEGACY_CA_KEY: Final = "cacert"
PROVIDER_SECRET_INSECURE_KEY: Final = "insecureSkipVerify"

PAIR_LABEL: Final = "mtv-register.konveyor.io/pair"
# "<namespace>/<name>" of the token Secret on the registered cluster, so rotation can find it.
TOKEN_SECRET_ANNOTATION: Final = "mtv-register.konveyor.io/token-secret"
ROTATED_AT_ANNOTATION: Final = "mtv-register.konveyor.io/rotated-at"
TOKEN_CREATED_ANNOTATION: Final = "mtv-register.konveyor.io/token-created"
# On a token Secret made by rotation: the name of the token Secret it replaces (its lineage).
TOKEN_REPLACES_ANNOTATION: Final = "mtv-register.konveyor.io/replaces"

TOKEN_TYPE_ANNOTATION: Final = "mtv-register.konveyor.io/token-type"  # "secret" or "bound"
TOKEN_EXPIRES_ANNOTATION: Final = "mtv-register.konveyor.io/token-expires"
SERVICE_ACCOUNT_ANNOTATION: Final = "mtv-register.konveyor.io/service-account"  # "<ns>/<name>"
# How the registration was made, so that recovery rebuilds it as it was: the ClusterRole bound
# ("<name>", with "existing:" first for a --cluster-role the tool did not create) and the
# lifetime of bound tokens in seconds.
CLUSTER_ROLE_ANNOTATION: Final = "mtv-register.konveyor.io/cluster-role"
TOKEN_TTL_ANNOTATION: Final = "mtv-register.konveyor.io/token-ttl"

# On the Provider: the URL it was registered with, and the pairs it serves.
URL_ANNOTATION: Final = "mtv-register.konveyor.io/url"
# The pairs a Provider serves, "<source provider>/<destination provider>" comma-separated: a
# Provider (and its cluster's credentials) goes only with the last of them.
PAIRS_ANNOTATION: Final = "mtv-register.konveyor.io/pairs"
# On the provider Secret: when the tool last asked Forklift to test it again.
RETEST_ANNOTATION: Final = "mtv-register.konveyor.io/retest-requested-at"

# The extra ClusterRole (and binding) of --submariner: "<role>-submariner".
SUBMARINER_SUFFIX: Final = "-submariner"
# The scheduled rotation on the MTV host: its ServiceAccount, Role and binding, and CronJob.
ROTATOR_NAME: Final = "mtv-register-rotator"
ROTATION_CRONJOB: Final = "mtv-register-rotate"
# The `reportingController` of the Events the tool records on Providers (a qualified name).
EVENT_CONTROLLER: Final = "mtv-register.konveyor.io/mtv-register"


# --- Object names ------------------------------------------------------------------------------

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_DNS1123_LABEL_MAX: Final = 63
_DNS1123_SUBDOMAIN_MAX: Final = 253
_NAME_HASH_LENGTH: Final = 8


def is_dns1123_label(s: str) -> bool:
    """Whether `s` is a valid DNS-1123 label (Namespace names; the form of Provider names)."""
    return len(s) <= _DNS1123_LABEL_MAX and _DNS1123_LABEL.fullmatch(s) is not None


def is_dns1123_subdomain(s: str) -> bool:
    """Whether `s` is a valid DNS-1123 subdomain (the names of most objects)."""
    return len(s) <= _DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.fullmatch(s) is not None


def provider_name(context: str) -> str:
    """A Provider name derived from a kubeconfig context name: a DNS-1123 label.

    Lowercased, accents dropped, every run of other characters turned into one ``-``, ends
    trimmed: ``Source_Cluster`` becomes ``source-cluster``. A name longer than 63 characters is
    cut and given a short hash of `context`, and a context with no usable character becomes
    ``provider-<hash>``, so that different contexts still get different names.
    """
    ascii_name = unicodedata.normalize("NFKD", context).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    digest = hashlib.sha256(context.encode()).hexdigest()[:_NAME_HASH_LENGTH]
    if not name:
        return f"provider-{digest}"
    if len(name) > _DNS1123_LABEL_MAX:
        keep = _DNS1123_LABEL_MAX - _NAME_HASH_LENGTH - 1
        return f"{name[:keep].rstrip('-')}-{digest}"
    return name


def token_secret_name(service_account: str) -> str:
    """The name of the first token Secret of `service_account`."""
    return f"{service_account}{TOKEN_SECRET_SUFFIX}"


def token_secret_generate_name(service_account: str) -> str:
    """The generateName prefix of the token Secrets rotation creates for `service_account`."""
    return f"{service_account}{TOKEN_SECRET_SUFFIX}-"


def token_requester_name(service_account: str) -> str:
    return f"{service_account}-token-requester"
