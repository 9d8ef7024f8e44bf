"""Render docs/reference.md from the Typer app itself, so the reference never drifts from the CLI.

    python scripts/gen_reference.py > docs/reference.md
    python scripts/gen_reference.py --output PATH

Walks `typer.main.get_command(app)` and its groups, and writes for every command its usage, its
help and a table of its options (type, default, help). Works with Typer on Click and with Typer's
own vendored Click: only attributes both have are read, plus Typer's type descriptor when there.
"""

from __future__ import annotations

import argparse
import enum
import sys
from pathlib import Path
from typing import Any

import typer.main

from mtv_register.cli import app

PROGRAM = "mtv-register"
REGENERATE = "python scripts/gen_reference.py > docs/reference.md"
_TYPE_NAMES = {
    "str": "text",
    "Path": "path",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
}


def walk(command: Any, parent: Any = None, name: str = PROGRAM) -> list[tuple[Any, Any]]:
    """(command, context) for `command` and every command under it, depth first, in the order
    the app lists them; hidden commands are left out."""
    context = command.context_class(command, info_name=name, parent=parent)
    found = [(command, context)]
    if hasattr(command, "list_commands"):
        for child_name in command.list_commands(context):
            child = command.get_command(context, child_name)
            if child is not None and not getattr(child, "hidden", False):
                found += walk(child, context, child_name)
    return found


def render() -> str:
    root = typer.main.get_command(app)
    commands = walk(root)
    lines = [
        "# Command reference",
        "",
        "<!-- Generated from the Typer app in mtv_register/cli/ by scripts/gen_reference.py;",
        f"     do not edit by hand. Regenerate with: {REGENERATE} -->",
        "",
        "Every option of every `mtv-register` command, generated from the code. Every command",
        "also takes `--help`. For what the commands are for and how they fit together, read the",
        "[user guide](user-guide.md); for what each failure means, [troubleshooting]"
        "(troubleshooting.md).",
        "",
    ]
    lines += [f"- [`{ctx.command_path}`](#{_slug(ctx.command_path)})" for _, ctx in commands]
    lines += ["- [Events](#events)", ""]
    for command, context in commands:
        lines += _command_section(command, context)
    lines += _events_section()
    return "\n".join(lines).rstrip() + "\n"


def _events_section() -> list[str]:
    """The Events the tool records on Providers, from `mtv_register.events`."""
    from mtv_register import events, naming

    lines = [
        "## Events",
        "",
        "`register`, `rotate` (by hand, or by the CronJob of `schedule`) and recovery record an "
        "`events.k8s.io/v1` Event on each Provider they change, in the Provider's namespace on "
        "the MTV host, so `kubectl describe provider NAME -n openshift-mtv` shows its history. "
        "A run that changes nothing records none. Recording is best effort: an Event the server "
        "refuses (no `create` on `events.k8s.io` `events`, a webhook) is said in one progress "
        "line, and never changes the run's result or exit code; none is recorded once the run "
        "was interrupted or ran out of `--timeout`.",
        "",
        "| reason | type | action | recorded when |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{reason}` | {kind} | {action} | {_cell(when)} |"
        for reason, (kind, action, when) in events.REASONS.items()
    ]
    lines += [
        "",
        "| field | value |",
        "| --- | --- |",
        "| `metadata.name` | `<provider>.<the time in nanoseconds, hex>`, as client-go names "
        "Events: a create retried after a lost answer meets the first one (409), not a twin |",
        "| `eventTime` | when, to the microsecond (RFC 3339, UTC) |",
        f"| `reportingController` | `{naming.EVENT_CONTROLLER}` |",
        "| `reportingInstance` | the host name of the machine the tool ran on (in the CronJob, "
        "its pod) |",
        "| `action`, `reason`, `type` | as above |",
        f"| `note` | what the run did, or the failure's line; at most {events.NOTE_LIMIT} bytes, "
        "and never a token (scrubbed like every output) |",
        "| `regarding` | the Provider: `apiVersion`, `kind`, `name`, `namespace`, `uid`, "
        "`resourceVersion` |",
        "",
    ]
    return lines


def _command_section(command: Any, context: Any) -> list[str]:
    path = context.command_path
    usage = " ".join([path, *command.collect_usage_pieces(context)])
    lines = [f"## `{path}`", "", "```text", usage, "```", ""]
    help_text = _clean(command.help or "")
    if help_text:
        lines += [help_text, ""]
    options = [p for p in command.params if not getattr(p, "hidden", False)]
    arguments = [p for p in options if not getattr(p, "opts", [""])[0].startswith("-")]
    options = [p for p in options if p not in arguments]
    if arguments:
        lines += ["| argument | type | description |", "| --- | --- | --- |"]
        lines += [
            f"| `{p.name.upper()}` | {_cell(_type(p))} | {_cell(_clean(_help(p)))} |"
            for p in arguments
        ]
        lines.append("")
    if options:
        lines += ["| option | type | default | description |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {_cell(_names(p))} | {_cell(_type(p))} | {_cell(_default(p))} | "
            f"{_cell(_clean(_help(p)))} |"
            for p in options
        ]
        lines.append("")
    subcommands = _subcommands(command, context)
    if subcommands:
        lines += ["| command | what it does |", "| --- | --- |"]
        lines += [
            f"| [`{sub}`](#{_slug(f'{path} {sub}')}) | {_cell(summary)} |"
            for sub, summary in subcommands
        ]
        lines.append("")
    return lines


def _subcommands(command: Any, context: Any) -> list[tuple[str, str]]:
    if not hasattr(command, "list_commands"):
        return []
    rows = []
    for name in command.list_commands(context):
        child = command.get_command(context, name)
        if child is not None and not getattr(child, "hidden", False):
            rows.append((name, _first_sentence(_clean(child.help or ""))))
    return rows


def _names(param: Any) -> str:
    primary = ", ".join(f"`{o}`" for o in param.opts)
    secondary = ", ".join(f"`{o}`" for o in getattr(param, "secondary_opts", []) or [])
    return f"{primary} / {secondary}" if secondary else primary


def _type(param: Any) -> str:
    if getattr(param, "count", False):
        return "count (repeat it)"
    if getattr(param, "is_flag", False):
        return "flag"
    choices = _choices(param)
    label = "one of " + ", ".join(f"`{c}`" for c in choices) if choices else _type_name(param)
    extras = []
    if getattr(param, "multiple", False) or _is_list(param):
        extras.append("repeatable")
    low, high = _bounds(param)
    if low is not None:
        extras.append(f"at least {low}")
    if high is not None:
        extras.append(f"at most {high}")
    return ", ".join([label, *extras])


def _choices(param: Any) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:  # Typer with its own Click
        raw = list(descriptor.choices or ()) if getattr(descriptor, "is_choice", False) else []
    else:
        raw = list(getattr(getattr(param, "type", None), "choices", None) or ())
    return [str(c.value) if isinstance(c, enum.Enum) else str(c) for c in raw]


def _type_name(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        if _is_list(param):
            annotation = (getattr(annotation, "__args__", None) or (str,))[0]
        name = getattr(annotation, "__name__", str(annotation))
        return _TYPE_NAMES.get(name, name.lower())
    click_type = getattr(param, "type", None)
    name = str(getattr(click_type, "name", "text")).lower()
    return {"float": "number", "integer range": "integer", "float range": "number"}.get(name, name)


def _is_list(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    return bool(getattr(descriptor, "is_list", False))


def _bounds(param: Any) -> tuple[Any, Any]:
    if getattr(param, "type_descriptor", None) is not None:
        return getattr(param, "min", None), getattr(param, "max", None)
    click_type = getattr(param, "type", None)
    return getattr(click_type, "min", None), getattr(click_type, "max", None)


def _default(param: Any) -> str:
    if getattr(param, "required", False):
        return "required"
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):
        return shown
    value = param.default
    if callable(value):
        return "computed"
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        secondary = getattr(param, "secondary_opts", []) or []
        if value is None:
            return "—"
        if secondary:
            return f"`{param.opts[0] if value else secondary[0]}`"
        return "on" if value else "off"
    if value is None or value == [] or value == ():
        return "—"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value}`"


def _help(param: Any) -> str:
    return str(getattr(param, "help", "") or "")


def _clean(text: str) -> str:
    """One paragraph per blank-line-separated block, wrapped lines joined, and `<`, `>` outside
    code spans escaped (Markdown would take `<context>` for an HTML tag and drop it)."""
    blocks = [" ".join(block.split()) for block in text.strip().split("\n\n")]
    return "\n\n".join(_escape_html(b) for b in blocks if b)


def _escape_html(text: str) -> str:
    parts = text.split("`")
    for index in range(0, len(parts), 2):  # even parts are outside code spans
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _first_sentence(text: str) -> str:
    return text.split("\n\n", 1)[0]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading made of this text."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in "-_ ")
    return kept.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    text = render()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
