"""The control plane's binaries, built from Go modules into a cache outside the repository.

Each Kubernetes version has a wrapper module in tests/controlplane/kubernetes-<version>/: a
go.mod that requires `k8s.io/kubernetes` at that version, repeats its staging `replace`s
(generated from its own go.mod by `python -m tests.realstack gomod VERSION`) and names three
`tool`s: kube-apiserver, kube-controller-manager, and etcd at the version Kubernetes requires.
The binaries land in `<cache>/bin/<key>/`, the key naming the versions and a hash of the
module's go.mod and go.sum; a complete folder is never built again, and Go is not even run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.realstack import procs

MODULES = Path(__file__).resolve().parent.parent / "controlplane"
KUBERNETES_VERSIONS = ("v1.37.2", "v1.34.4")
DEFAULT_KUBERNETES = KUBERNETES_VERSIONS[0]
CACHE_VARIABLE = "MTV_REGISTER_REALSTACK_CACHE"
BINARIES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "etcd": "go.etcd.io/etcd/server/v3",
}
# Where client-go and component-base keep the version `/version` reports.
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
COMPLETE = ".complete"


class GoMissing(RuntimeError):
    """No `go` command: the real clusters cannot be built here."""


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mtv-register-realstack"


def go_environment(root: Path) -> dict[str, str]:
    """Go's module and build caches beside the binaries; the machine's own Go, statically."""
    return {
        **os.environ,
        "GOMODCACHE": str(root / "gomod"),
        "GOCACHE": str(root / "gocache"),
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
    }


def go_binary() -> str:
    found = shutil.which("go")
    if found is None:
        raise GoMissing(
            "the `go` command is not on PATH: real clusters are built from Go modules "
            "(Go 1.26 or later and the Go module proxy)"
        )
    return found


@dataclass(frozen=True)
class ControlPlaneModule:
    """The wrapper module of one Kubernetes version."""

    kubernetes: str

    @property
    def folder(self) -> Path:
        return MODULES / f"kubernetes-{self.kubernetes}"

    @property
    def etcd(self) -> str:
        """The etcd server version this Kubernetes requires, as the module's go.mod pins it."""
        found = re.search(
            r"go\.etcd\.io/etcd/server/v3 (v\S+)", (self.folder / "go.mod").read_text()
        )
        if found is None:
            raise RuntimeError(f"{self.folder}/go.mod pins no go.etcd.io/etcd/server/v3")
        return found.group(1)

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((self.folder / name).read_bytes())
        digest.update(self.ldflags().encode())
        return f"kubernetes-{self.kubernetes}_etcd-{self.etcd}_{digest.hexdigest()[:10]}"

    def ldflags(self) -> str:
        major, minor = self.kubernetes.removeprefix("v").split(".")[:2]
        flags = ["-s", "-w"]
        for package in VERSION_PACKAGES:
            flags += [
                f"-X {package}.gitVersion={self.kubernetes}",
                f"-X {package}.gitMajor={major}",
                f"-X {package}.gitMinor={minor}",
                f"-X {package}.gitTreeState=clean",
                f"-X {package}.buildDate=1970-01-01T00:00:00Z",
            ]
        return " ".join(flags)


@dataclass(frozen=True)
class Built:
    folder: Path
    seconds: float  # 0 when the cache had them

    def __getitem__(self, binary: str) -> Path:
        return self.folder / binary


def build_control_plane(kubernetes: str = DEFAULT_KUBERNETES, *, root: Path | None = None) -> Built:
    """The three binaries of `kubernetes`, from the cache or built now (then cached)."""
    if kubernetes not in KUBERNETES_VERSIONS:
        raise ValueError(f"Kubernetes {kubernetes} is not one of {', '.join(KUBERNETES_VERSIONS)}")
    module = ControlPlaneModule(kubernetes)
    root = root or cache_root()
    final = root / "bin" / module.key
    if (final / COMPLETE).is_file() and all((final / name).is_file() for name in BINARIES):
        return Built(final, 0.0)
    go = go_binary()
    (root / "bin").mkdir(parents=True, exist_ok=True)
    say(
        f"building kube-apiserver, kube-controller-manager and etcd {module.etcd} for Kubernetes "
        f"{kubernetes} into {final} (a cold build takes about 25 minutes on 2 cores)"
    )
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f".{module.key}-", dir=root / "bin"))
    try:
        procs.run(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                module.ldflags(),
                "-o",
                f"{scratch}/",
                *BINARIES.values(),
            ],
            env=go_environment(root),
            cwd=module.folder,
        )
        (scratch / "server").rename(scratch / "etcd")  # the etcd module's main package
        seconds = time.monotonic() - started
        version = procs.run([go, "env", "GOVERSION"]).strip()
        (scratch / COMPLETE).write_text(f"{module.key} {version} built in {seconds:.0f}s\n")
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    say(f"built Kubernetes {kubernetes} in {seconds:.0f}s")
    return Built(final, seconds)


def generate_module(kubernetes: str) -> Path:
    """Write tests/controlplane/kubernetes-<version>/go.mod from that release's own go.mod (its
    staging `replace`s, at the matching v0.N.M) and tidy it, which writes go.sum."""
    go = go_binary()
    root = cache_root()
    env = {**go_environment(root), "GOFLAGS": "-mod=mod -buildvcs=false"}
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "go.mod").write_text("module scratch\n\ngo 1.26\n")
        listing = procs.run(
            [go, "mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes}"],
            env=env,
            cwd=Path(scratch),
        )
    upstream = Path(re.search(r'"GoMod": "([^"]+)"', listing).group(1)).read_text()  # type: ignore[union-attr]
    staging_version = "v0." + kubernetes.removeprefix("v1.")
    replaces = sorted(re.findall(r"^\s*(k8s\.io/\S+) => \./staging/", upstream, flags=re.M))
    go_line = re.search(r"^go (\S+)", upstream, flags=re.M).group(1)  # type: ignore[union-attr]
    folder = ControlPlaneModule(kubernetes).folder
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "// Generated by `python -m tests.realstack gomod "
        f"{kubernetes}` from k8s.io/kubernetes@{kubernetes}'s go.mod; do not edit by hand.",
        "module mtv-register.test/controlplane",
        "",
        f"go {go_line}",
        "",
        f"require k8s.io/kubernetes {kubernetes}",
        "",
        "tool (",
        *(f"\t{package}" for package in sorted(BINARIES.values())),
        ")",
        "",
        "replace (",
        *(f"\t{name} => {name} {staging_version}" for name in replaces),
        ")",
        "",
    ]
    (folder / "go.mod").write_text("\n".join(lines))
    (folder / "go.sum").unlink(missing_ok=True)
    try:
        procs.run([go, "mod", "tidy"], env=env, cwd=folder)
    except RuntimeError as error:
        # A staging module the proxy does not serve: drop its replace if nothing needs it.
        refused = re.findall(r"(k8s\.io/[\w.-]+)@" + re.escape(staging_version), str(error))
        if not refused:
            raise
        kept = [line for line in lines if not any(f"\t{name} =>" in line for name in refused)]
        (folder / "go.mod").write_text("\n".join(kept))
        say(f"not served by the proxy, left out: {', '.join(sorted(set(refused)))}")
        procs.run([go, "mod", "tidy"], env=env, cwd=folder)
    return folder


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = [
    "DEFAULT_KUBERNETES",
    "KUBERNETES_VERSIONS",
    "Built",
    "GoMissing",
    "build_control_plane",
    "cache_root",
    "generate_module",
]
