"""Markdown's building blocks for user text: escaped text, code spans, bounded lists.

Test ids, messages and paths come from plans, test output and JUnit files that
anyone can write. Here each becomes one line of inline Markdown that reads as
itself: it can neither end a table cell, open a link, nor inject HTML. Lists are
bounded in rows and in bytes, and say how many they left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

ID_CHARS = 300  # a test or case id, at most (ids in plans are far shorter)
MESSAGE_CHARS = 300  # a first error line, a reason
PATH_CHARS = 1000  # a log path: long enough to stay whole, so it can be copied

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Inline syntax GitHub gives a meaning: emphasis, code, links, tables, strikethrough,
# mentions, issue references, math; and the three characters of HTML.
_SPECIAL = re.compile(r"[\\`*_\[\]|~!#@$<>&]")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_BACKTICKS = re.compile(r"`+")


def one_line(value: str, limit: int) -> str:
    """``value`` on one line (controls and runs of whitespace become a space), cut to
    ``limit`` characters with an ellipsis."""
    head = value[: limit * 4]  # bounded work for a megabyte of message
    line = " ".join(_CONTROL.sub(" ", head).split())
    if len(line) > limit or len(head) < len(value):
        return line[: limit - 1] + "…"
    return line


def text(value: str, limit: int = MESSAGE_CHARS) -> str:
    """User text as inline Markdown that renders as itself, on one line."""
    return _SPECIAL.sub(_escape_one, one_line(value, limit)) or "-"


def _escape_one(match: re.Match[str]) -> str:
    char = match[0]
    return _ENTITIES.get(char) or "\\" + char


def code(value: str, limit: int = ID_CHARS, *, cell: bool = True) -> str:
    """User text as a code span: copied as it is, never markup, never HTML.

    :param cell: it goes in a table cell, where a pipe must be escaped even in code.
    """
    line = one_line(value, limit)
    if not line:
        return "-"
    if cell:
        line = line.replace("|", "\\|")
    longest = max((len(run) for run in _BACKTICKS.findall(line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""  # one each side is dropped
    return f"{fence}{pad}{line}{pad}{fence}"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 test``, ``2 tests``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def table_head(*columns: str, right: Sequence[int] = ()) -> list[str]:
    """A table's header and alignment rows; ``right``: the columns aligned right."""
    align = ["---:" if i in right else "---" for i in range(len(columns))]
    return [row(*columns), row(*align)]


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def bounded(
    head: Sequence[str],
    lines: Iterable[str],
    total: int,
    what: str,
    *,
    max_lines: int,
    max_bytes: int,
) -> list[str]:
    """``head`` and as many of ``lines`` (``total`` of them, made lazily) as fit in
    ``max_lines`` and ``max_bytes``; then "and N more ``what``" for the rest."""
    kept = list(head)
    used = sum(len(line.encode()) + 1 for line in kept) + len(what) + 40  # the "more" line
    shown = 0
    for line in lines:
        size = len(line.encode()) + 1
        if shown == max_lines or used + size > max_bytes:
            break
        kept.append(line)
        used += size
        shown += 1
    if shown < total:
        kept += ["", f"and {total - shown} more {what}"]
    return kept


def inline_list(
    label: str,
    items: Sequence[str],
    what: str,
    *,
    max_items: int,
    max_bytes: int,
    total: int | None = None,
    rendered: bool = False,
) -> str:
    """``**label** (N): `a`, `b`, and N more what``: one paragraph of code spans.

    :param total: how many there are, when ``items`` are only the first of them.
    :param rendered: ``items`` are Markdown already, not user text to show as code.
    """
    total = len(items) if total is None else total
    parts: list[str] = []
    used = len(label) + len(what) + 60
    for item in items[:max_items]:
        span = item if rendered else code(item, cell=False)
        size = len(span.encode()) + 2
        if used + size > max_bytes:
            break
        parts.append(span)
        used += size
    more = total - len(parts)
    tail = f"{', ' if parts else ''}and {more} more {what}".rstrip() if more else ""
    return f"**{label}** ({total}): {', '.join(parts)}{tail}"
