"""How counts, durations and statuses read in the terminal: shared by the text report,
the live progress and the daemon commands."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

STATUS_STYLE = {
    "passed": "green",
    "failed": "red",
    "timed_out": "magenta",
    "error": "red",
    "skipped": "yellow",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "complete": "bold green",
    "partial_success": "bold yellow",
    "no_tests": "yellow",
}

#: Plurals that are not the word plus "s".
_IRREGULAR = {"process": "processes"}


def plural(count: int, word: str) -> str:
    """``1 test``, ``2 tests``, ``0 errors``, ``3 processes``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {_IRREGULAR.get(word, word + 's')}"


def seconds(value: float) -> str:
    """A duration as people read it: ``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``."""
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def eta(value: float) -> str:
    """Time left, in whole seconds: ``ETA 40s``, ``ETA 4m 05s``, ``ETA <1s``."""
    if value < 0.5:
        return "ETA <1s"
    return f"ETA {math.ceil(value)}s" if value < 60 else f"ETA {seconds(value)}"


def label(status: str) -> str:
    """A status as the progress lines print it: ``FAILED``, ``TIMED_OUT``."""
    return status.upper()


def columns(rows: Sequence[Sequence[str]], *, right: Collection[int] = ()) -> list[str]:
    """Rows of cells aligned in columns two spaces apart; ``right`` columns right-justified.

    No cell is ever cut, and no line ends in spaces.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def gate_value(name: str, value: float | bool | None) -> str:
    """A gate's target or actual value in its gate's unit: ``95.0%``, ``4m 05s``, ``80.0%``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name.startswith("min_pass_rate"):
        return f"{value:.1%}"
    if name == "min_coverage":
        return f"{value:.1f}%"
    if name == "max_duration":
        return seconds(value)
    return f"{value:g}"
