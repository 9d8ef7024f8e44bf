"""`python -m tests.realstack up --kubeconfig PATH [--audit-dir DIR]`: serve three real
clusters until SIGINT or SIGTERM; `build` only builds; `gomod VERSION` writes a wrapper module.

Exit codes: 0 stopped when told, 1 a cluster failed to start or died, 2 usage, 3 no Go here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.realstack import forklift
from tests.realstack.build import (
    DEFAULT_KUBERNETES,
    KUBERNETES_VERSIONS,
    GoMissing,
    build_control_plane,
    generate_module,
)
from tests.realstack.stack import Stack

READY = "real clusters ready: {}"


class Stopped(Exception):
    """SIGTERM or SIGINT: stop what was started."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.realstack")
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="start source, destination and mtv; serve until stopped")
    up.add_argument("--kubeconfig", required=True, type=Path, help="where to write it")
    up.add_argument("--audit-dir", type=Path, help="audit logs as DIR/<context>.log (kept)")
    build = verbs.add_parser("build", help="build the control plane's binaries")
    for command in (up, build):
        command.add_argument(
            "--kubernetes", choices=KUBERNETES_VERSIONS, default=DEFAULT_KUBERNETES
        )
    up.add_argument(
        "--forklift",
        choices=[*forklift.VERSIONS, forklift.NONE],
        default=forklift.DEFAULT,
        help="which Forklift runs on mtv (default: the latest)",
    )
    gomod = verbs.add_parser("gomod", help="write tests/controlplane/kubernetes-VERSION/go.mod")
    gomod.add_argument("version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        if args.verb == "gomod":
            print(generate_module(args.version))
            return 0
        if args.verb == "build":
            built = build_control_plane(args.kubernetes)
            print(built.folder)
            return 0
        return _up(args)
    except Stopped:
        return 0
    except GoMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 3


def _up(args: argparse.Namespace) -> int:
    if args.kubeconfig.exists():
        print(f"error: {args.kubeconfig} exists: give a path that does not", file=sys.stderr)
        return 2
    stack = Stack(args.kubeconfig, args.audit_dir, args.kubernetes, args.forklift)
    try:
        stack.up()
        print(READY.format(args.kubeconfig), flush=True)
        while not (why := stack.failed()):
            time.sleep(0.5)
        print(f"error: {why}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        # A second signal while stopping must not cut the clean-up short.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
