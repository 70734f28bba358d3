"""BENCHMARKS.md upkeep shared by the benchmark scripts: each owns one section between its own
HTML-comment markers, and rewriting it leaves every other section as it was."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_TITLE = "# SmolDrive benchmarks\n\n"


def section_markers(owner: str) -> tuple[str, str]:
    """The start and end markers of ``owner``'s section (``owner``: the module name, e.g. benchmarks.gpu)."""
    return f"<!-- {owner}:start -->", f"<!-- {owner}:end -->"


def read_section(path: Path, start: str, end: str) -> str | None:
    """The section between the markers (markers included), or None when the file or section is missing."""
    if not path.exists():
        return None
    match = re.search(re.escape(start) + ".*?" + re.escape(end), path.read_text(), re.DOTALL)
    return match.group(0) if match else None


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the section between ``start`` and ``end`` in ``path`` (append it when absent).

    ``section`` must begin with ``start`` and end with ``end`` (plus an optional newline).
    """
    if not (section.startswith(start) and section.rstrip("\n").endswith(end)):
        raise ValueError(f"a section must start with {start!r} and end with {end!r}")
    text = path.read_text() if path.exists() else DEFAULT_TITLE
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section if section.endswith("\n") else section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text if text.endswith("\n") else text + "\n")
