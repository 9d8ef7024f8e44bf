"""The docs check (`nox -s docs`): the command reference is current, and links resolve.

    python scripts/check_docs.py [--reference FRESH.md]

1. docs/reference.md must equal what scripts/gen_reference.py renders from the CLI today (the
   rendering in FRESH.md, or made here when not given).
2. Every relative link in README.md, docs/*.md and kind-config/*.md must name a file or folder
   that exists, and a `#anchor` must name a heading of the Markdown file it points into (the
   anchors GitHub makes). Links inside code are not links. Web links are not fetched.

Files that other tools write (the benchmark report, the reliability report) may not exist yet
in a fresh checkout: links to them are reported, not failed. Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
REGENERATE = "python scripts/gen_reference.py > docs/reference.md"
GENERATED_ELSEWHERE = {
    "docs/benchmarks.md": "nox -s bench",
    "docs/benchmarks.png": "nox -s bench",
    "docs/reliability.md": "nox -s reliability",
}

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def documents() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found += sorted((ROOT / "kind-config").glob("*.md"))
    return [path for path in found if path.is_file()]


def unfenced(text: str) -> str:
    """The text with fenced code blocks blanked out."""
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def prose(text: str) -> str:
    """The text with fenced code blocks and code spans blanked out."""
    return _CODE_SPAN.sub("", unfenced(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation but `-` and `_`
    dropped, spaces made `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for match in _HEADING.finditer(unfenced(path.read_text())):
        base = slug(match.group(2).replace("`", ""))
        seen = counts.get(base, 0)
        counts[base] = seen + 1
        found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def links(path: Path) -> list[str]:
    text = prose(path.read_text())
    return [m.group(1) for m in _INLINE_LINK.finditer(text)] + [
        m.group(1) for m in _REFERENCE_LINK.finditer(text)
    ]


def check_links() -> tuple[list[str], list[str]]:
    """(failures, notes)"""
    failures: list[str] = []
    notes: list[str] = []
    for document in documents():
        name = document.relative_to(ROOT)
        for target in links(document):
            if not target or _SCHEME.match(target) or target.startswith("//"):
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (document.parent / path_part).resolve() if path_part else document
            where = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else ""
            if not resolved.exists():
                if where in GENERATED_ELSEWHERE:
                    how = GENERATED_ELSEWHERE[where]
                    notes.append(f"{name}: links to {where}, not generated yet ({how})")
                    continue
                failures.append(f"{name}: link to {target}: no such file")
                continue
            if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                failures.append(f"{name}: link to {target}: no heading #{anchor} in {where}")
    return failures, notes


def check_reference(fresh: str) -> list[str]:
    committed = REFERENCE.read_text() if REFERENCE.is_file() else ""
    if committed == fresh:
        return []
    diff = list(
        difflib.unified_diff(
            committed.splitlines(),
            fresh.splitlines(),
            "docs/reference.md (committed)",
            "docs/reference.md (generated from the CLI now)",
            lineterm="",
        )
    )
    shown = "\n".join(diff[:80]) + ("\n..." if len(diff) > 80 else "")
    return [
        f"docs/reference.md is not what the CLI generates; regenerate it with:\n"
        f"    {REGENERATE}\n{shown}"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, help="the reference as just generated (default: generate it)"
    )
    args = parser.parse_args(argv)
    if args.reference is not None:
        fresh = args.reference.read_text()
    else:
        sys.path.insert(0, str(ROOT / "scripts"))
        from gen_reference import render

        fresh = render()
    failures = check_reference(fresh)
    link_failures, notes = check_links()
    failures += link_failures
    for note in notes:
        print(f"note: {note}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    checked = len(documents())
    if failures:
        print(f"docs check: {len(failures)} problem(s) in {checked} files", file=sys.stderr)
        return 1
    print(f"docs check: reference current; every relative link in {checked} files resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
