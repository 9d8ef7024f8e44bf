"""The `oc` backend: `Kube`'s verbs run as `oc` (or `kubectl`) commands through openshift-client.

Selected with `--client oc`; imported only then, so the default backend never loads
openshift-client (and this one never loads the `kubernetes` package). Every command:

- names its kubeconfig and context (`--kubeconfig=F --context=C`): the user's current context is
  never read or switched;
- uses only verbs `oc` shares with the real `kubectl`: `get -o json`, `get --raw`, `create -f -`,
  `create --raw`, `replace -f -`, `patch --type`, `delete --wait=false`;
- never carries a token: a client holding a service account's token (`from_token`) gets a
  temporary kubeconfig (mode 0600, in a 0700 folder, deleted on `close`); objects go on stdin;
- counts as one request to its server's `throttle` bucket (`--qps`, `--burst`), shared with
  every other client of the run;
- is recorded (openshift-client's `tracking`) in `oc_trail.TRAIL`, which `--explain` prints as
  a runbook.

Failures become the same `errors` as the default backend's: `oc_errors` turns kubectl's
`Error from server (Reason): message` back into its HTTP status and hands it to `kube.translate`.
Waits poll (`get` every `Timing.poll_interval`) instead of watching: openshift-client returns a
command's output when it ends, so a stream of watch events cannot be read as it comes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import openshift_client as oc

from mtv_register import deadline as run_deadline
from mtv_register import errors, oc_errors, throttle
from mtv_register.kube import JSON_PATCH, MERGE_PATCH, Kind, NotFound
from mtv_register.oc_trail import TOKEN_KUBECONFIG_PREFIX, TRAIL
from mtv_register.redaction import scrub
from mtv_register.timing import Timing, Transient, retrying

if TYPE_CHECKING:
    from mtv_register.clusters import Connector

Obj = dict[str, Any]
COMMAND_TIMEOUT = 60.0  # a command still running after this is killed, and retried
REQUEST_SECONDS = 30  # kubectl's own limit per request (--request-timeout), as the default's
PATCH_TYPES = {MERGE_PATCH: "merge", JSON_PATCH: "json"}

# openshift-client settings that would add flags to every command behind our back.
FOREIGN_SETTINGS = (
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_API_SERVER",
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_CONFIG_PATH",
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_CA_CERT_PATH",
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_PROJECT",
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_SKIP_TLS_VERIFY",
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_OC_LOGLEVEL",
    "OPENSHIFT_CLIENT_PYTHON_DEFAULT_SSH_HOSTNAME",
)


# -- the binary -------------------------------------------------------------------------------


def resolve_binary(oc_path: str | None) -> str:
    """The binary to run: `oc_path` (a name on PATH or a path), else `oc`, else `kubectl`."""
    for setting in FOREIGN_SETTINGS:
        if os.environ.get(setting):
            raise errors.UsageError(
                f"{setting} is set: it would change every command of --client oc",
                fix=f"unset {setting}; mtv-register passes the kubeconfig and context itself",
            )
    if oc_path:
        found = shutil.which(os.path.expanduser(oc_path))
        if found is None:
            raise errors.UsageError(
                f"--oc-path {oc_path} is not an executable file",
                fix="pass the path of oc or kubectl",
            )
        return found
    found = shutil.which("oc") or shutil.which("kubectl")
    if found is None:
        raise errors.UsageError(
            "--client oc needs the oc or kubectl binary, and neither is on PATH",
            fix="install one, pass --oc-path PATH, or use --client kubernetes",
        )
    return found


# -- the client -------------------------------------------------------------------------------


class OcKube:
    """`Kube`'s verbs as commands of the binary `oc_path`, for one kubeconfig context."""

    tls_fix = "check the CA (--ca-source) or the server address"

    def __init__(
        self,
        kubeconfig: str,
        *,
        context: str,
        url: str,
        oc_path: str,
        timing: Timing | None = None,
        kube_context: str | None = None,
        temporary: str | None = None,
    ) -> None:
        self.oc_path = oc_path
        self.kubeconfig = kubeconfig
        self.context = context  # as messages name it
        self.kube_context = kube_context or context  # as the kubeconfig names it
        self.url = url
        self.timing = timing or Timing()
        self._temporary = temporary  # a folder this client made, removed on close
        # Per collection, name -> resourceVersion as last reported to the caller: where a
        # polled watch of it starts (see `watch`).
        self._seen: dict[tuple[str, str | None], dict[str, str]] = {}

    @classmethod
    def from_token(
        cls,
        url: str,
        token: str,
        *,
        ca_pem: str | None,
        insecure: bool = False,
        context: str,
        oc_path: str,
        timing: Timing | None = None,
    ) -> OcKube:
        """A client holding a service account's token, kept in a kubeconfig only this user can
        read, so the token is never on a command line."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", context).strip("-") or "token"
        cluster: Obj = {"server": url}
        if insecure:
            cluster["insecure-skip-tls-verify"] = True
        elif ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
        folder = _write_kubeconfig(cluster, {"token": token}, name)
        return cls(
            os.path.join(folder, "kubeconfig"),
            context=context,
            url=url,
            oc_path=oc_path,
            timing=timing,
            kube_context=name,
            temporary=folder,
        )

    @classmethod
    def from_service_account(
        cls, url: str, folder: str, *, oc_path: str, timing: Timing | None = None
    ) -> OcKube:
        """A pod's own service account: a kubeconfig naming the mounted token and CA files."""
        cluster = {"server": url, "certificate-authority": os.path.join(folder, "ca.crt")}
        made = _write_kubeconfig(
            cluster, {"tokenFile": os.path.join(folder, "token")}, "in-cluster"
        )
        return cls(
            os.path.join(made, "kubeconfig"),
            context="in-cluster",
            url=url,
            oc_path=oc_path,
            timing=timing,
            temporary=made,
        )

    @property
    def connector(self) -> Connector:
        from mtv_register.clusters import Connector

        return Connector(backend="oc", oc_path=self.oc_path, timing=self.timing)

    def close(self) -> None:
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    # -- the verbs -------------------------------------------------------------------------

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self._json("get", _resource(kind), name, *_scope(kind, namespace), "-o", "json")
        except NotFound:
            return None

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
    ) -> Obj:
        if limit:
            # One page, exactly the request Forklift's connection test makes (`get` would page
            # through the whole collection).
            query = {"labelSelector": label_selector, "fieldSelector": field_selector}
            params = urlencode({**{k: v for k, v in query.items() if v}, "limit": str(limit)})
            return self._json("get", "--raw", f"{kind.path(namespace)}?{params}")
        listing = self._json(
            "get",
            _resource(kind),
            *(
                _scope(kind, namespace)
                if namespace or not kind.namespaced
                else ["--all-namespaces"]
            ),
            *([f"--selector={label_selector}"] if label_selector else []),
            *([f"--field-selector={field_selector}"] if field_selector else []),
            "-o",
            "json",
        )
        if not label_selector and not field_selector:
            self._seen[(kind.plural, namespace)] = _versions(listing.get("items", []))
        return listing

    def create(self, kind: Kind, obj: Obj, *, dry_run: bool = False) -> Obj:
        extra = ["--dry-run=server"] if dry_run else []
        return self._json("create", "-f", "-", *extra, "-o", "json", stdin=json.dumps(obj))

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        return self._json("replace", "-f", "-", "-o", "json", stdin=json.dumps(obj))

    def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        content_type: str = MERGE_PATCH,
    ) -> Obj:
        kind_args = [_resource(kind), name, *_scope(kind, namespace)]
        patch_type = f"--type={PATCH_TYPES.get(content_type, 'strategic')}"
        text = json.dumps(patch)
        if scrub(text) == text:
            return self._json("patch", *kind_args, patch_type, "-p", text, "-o", "json")
        with _private_file(text) as path:  # a patch holding a token stays off the command line
            return self._json("patch", *kind_args, patch_type, f"--patch-file={path}", "-o", "json")

    def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """True when deleted, False when it was already gone. kubectl has no flag for delete
        preconditions, so `uid` and `resource_version` are not sent (docs/oc-backend.md)."""
        try:
            self._run("delete", _resource(kind), name, *_scope(kind, namespace), "--wait=false")
        except NotFound:
            return False
        return True

    def post(self, path: str, body: Obj) -> Obj:
        return self._json("create", "--raw", path, "-f", "-", stdin=json.dumps(body))

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        name: str | None,
        resource_version: str,
        timeout: float,
    ) -> Iterator[Obj]:
        """Events as a watch would give them, found by polling until `timeout`. One object:
        its changes after `resource_version`. A collection: its changes since this client last
        listed it or reported an event of it (that listing stands for `resource_version`); one
        it never listed gives each object as ADDED, and the caller skips what it holds."""
        deadline = time.monotonic() + timeout
        known = resource_version
        while True:
            if name is not None:
                obj = self.get(kind, name, namespace)
                if obj is None:
                    gone = {"metadata": {"name": name, "namespace": namespace or ""}}
                    yield {"type": "DELETED", "object": gone}
                    return
                version = str(obj["metadata"].get("resourceVersion", ""))
                if version != known:
                    known = version
                    yield {"type": "MODIFIED", "object": obj}
            else:
                yield from self._collection_changes(kind, namespace)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            run_deadline.sleep(min(self.timing.poll_interval, left))

    def _collection_changes(self, kind: Kind, namespace: str | None) -> Iterator[Obj]:
        key = (kind.plural, namespace)
        listing = self._json("get", _resource(kind), *_scope(kind, namespace), "-o", "json")
        items = {item["metadata"]["name"]: item for item in listing.get("items", [])}
        seen = self._seen.setdefault(key, {})  # never listed: every object is news
        for name, obj in items.items():
            version = str(obj["metadata"].get("resourceVersion", ""))
            if seen.get(name) != version:
                event = "MODIFIED" if name in seen else "ADDED"
                seen[name] = version  # only once reported: a caller that stops early sees the rest
                yield {"type": event, "object": obj}
        for name in [n for n in seen if n not in items]:
            del seen[name]
            gone = {"metadata": {"name": name, "namespace": namespace or ""}}
            yield {"type": "DELETED", "object": gone}

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """Any other request, as kubectl's raw verbs send it (there is no raw PATCH)."""
        verbs = {"GET": "get", "POST": "create", "PUT": "replace", "DELETE": "delete"}
        if method not in verbs:
            raise errors.UsageError(f"--client oc cannot send {method} {path}", fix="use the verbs")
        params = urlencode({k: v for k, v in (query or {}).items() if v})
        target = f"{path}?{params}" if params else path
        stdin = json.dumps(body) if body is not None else None
        return self._json(
            verbs[method], "--raw", target, *(["-f", "-"] if stdin else []), stdin=stdin
        )

    # -- the one command path ------------------------------------------------------------------

    def _json(self, verb: str, *args: str, stdin: str | None = None) -> Obj:
        out = self._run(verb, *args, stdin=stdin)
        return json.loads(out) if out.strip() else {}

    def _run(self, verb: str, *args: str, stdin: str | None = None) -> str:
        """One command, retried like the default backend's requests; its stdout."""
        what = " ".join(args[:2]) if args and args[0] != "-f" else verb
        return retrying(
            self.timing,
            lambda: self._once(verb, args, stdin, what),
            what=f"{verb} {what}",
            context=self.context,
        )

    def _once(self, verb: str, args: tuple[str, ...], stdin: str | None, what: str) -> str:
        step = f"{verb} {what} on context {self.context}"
        run_deadline.check(step)
        throttle.take(self.url, self.timing.qps, self.timing.burst, step=step)
        limit = run_deadline.cap(COMMAND_TIMEOUT) or COMMAND_TIMEOUT
        request_timeout = f"{max(1, int(min(limit, REQUEST_SECONDS)))}s"
        command = [f"--context={self.kube_context}", f"--request-timeout={request_timeout}", *args]
        try:
            with (
                oc.client_path(self.oc_path),
                oc.api_server(kubeconfig_path=self.kubeconfig),
                oc.timeout(limit),
                oc.tracking(TRAIL.record),
            ):
                result = oc.invoke(
                    verb, command, stdin_str=stdin, no_namespace=True, auto_raise=False
                )
        except OSError as err:
            raise errors.UsageError(
                f"cannot run {self.oc_path}: {err.strerror or err}",
                fix="install oc or kubectl, or pass --oc-path PATH",
            ) from None
        action = result.actions()[-1]
        if action.status == 0:
            return str(action.out)
        if action.timeout:
            if run_deadline.passed():
                raise errors.UnreachableError(
                    f"no answer from {self.url} (context {self.context}) to {verb} {what} "
                    "before the --timeout ran out",
                    fix="check that API server's health (it accepts connections but does not "
                    "answer), or raise --timeout",
                )
            raise Transient(f"{verb} {what}: no answer within {limit:g}s")
        raise oc_errors.failure(
            str(action.err),
            verb,
            what,
            context=self.context,
            url=self.url,
            kubeconfig=self.kubeconfig,
            oc_path=self.oc_path,
            tls_fix=self.tls_fix,
        )


def _resource(kind: Kind) -> str:
    """`secrets`, `providers.v1beta1.forklift.konveyor.io`: the version pinned, as `Kind` does."""
    if "/" not in kind.api_version:
        return kind.plural
    group, version = kind.api_version.split("/", 1)
    return f"{kind.plural}.{version}.{group}"


def _scope(kind: Kind, namespace: str | None) -> list[str]:
    return [f"--namespace={namespace}"] if kind.namespaced and namespace else []


def _versions(items: list[Obj]) -> dict[str, str]:
    return {
        item["metadata"]["name"]: str(item["metadata"].get("resourceVersion", "")) for item in items
    }


def _write_kubeconfig(cluster: Obj, user: Obj, name: str) -> str:
    """A folder only this user can enter, holding a kubeconfig only this user can read."""
    folder = tempfile.mkdtemp(prefix=TOKEN_KUBECONFIG_PREFIX)  # mode 0700
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    handle = os.open(
        os.path.join(folder, "kubeconfig"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
    )
    with os.fdopen(handle, "w") as stream:
        json.dump(config, stream)  # JSON is YAML: kubectl reads it as a kubeconfig
    return folder


@contextlib.contextmanager
def _private_file(text: str) -> Iterator[str]:
    """A 0600 file in a 0700 folder holding `text`, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="mtv-register-patch-")
    try:
        path = os.path.join(folder, "patch.json")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as stream:
            stream.write(text)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
