"""Where in a plan file something is wrong: errors as one line, at the line they are about."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from pydantic import ValidationError

from parallel_orch.exceptions import PlanError


def validation_error(
    file: Path, text: str, exc: ValidationError, allowed: Collection[str]
) -> PlanError:
    """A plan file's validation error as one line at the line it is about."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    line = None
    if len(loc) >= 2 and loc[0] == "test" and loc[1].isdigit():
        line = line_of_table(text, int(loc[1]), loc[2] if len(loc) > 2 else None)
        where = f"[[test]] #{int(loc[1]) + 1}" + (f" key {loc[2]!r}" if len(loc) > 2 else "")
    elif loc and loc[0] == "defaults":
        line = line_of_key(text.splitlines(), "[defaults]", loc[1] if len(loc) > 1 else None)
        where = "[defaults]" + (f" key {loc[1]!r}" if len(loc) > 1 else "")
    else:
        where = f"key {loc[0]!r}" if loc else "plan"
        line = find_line(text.splitlines(), loc[0]) if loc else None
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (allowed: " + ", ".join(sorted(allowed)) + ")"
    elif err["type"] == "missing":
        msg = "required key is missing"
    return PlanError(f"{where}: {msg}", path=str(file), line=line)


#: A request's fields that the plan spells another way.
PLAN_KEYS = {"command": "run", "timeout_seconds": "timeout"}


def plan_key_of(exc: ValidationError | ValueError, allowed: Collection[str]) -> str | None:
    """The plan key a request's validation error is about, if it names one."""
    if not isinstance(exc, ValidationError) or not exc.errors()[0]["loc"]:
        return None
    field = str(exc.errors()[0]["loc"][0])
    key = PLAN_KEYS.get(field, field)
    return key if key in allowed else None


def first_message(exc: ValidationError | ValueError) -> str:
    """The first thing wrong, without pydantic's prefix."""
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return str(err["msg"]).removeprefix("Value error, ")
    return str(exc)


def line_of_table(text: str, index: int, key: str | None = None) -> int | None:
    """The line of the ``index``-th ``[[test]]`` table, or of its ``key`` when it has one."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.strip().startswith("[[test]]")]
    if index >= len(headers):
        return None
    start = headers[index]
    if key is None:
        return start + 1
    end = headers[index + 1] if index + 1 < len(headers) else len(lines)
    found = find_line(lines[start:end], key)
    return start + found if found else start + 1


def line_of_key(lines: list[str], header: str, key: str | None) -> int | None:
    """The line of table ``header``, or of its ``key`` when it has one."""
    for i, line in enumerate(lines):
        if line.strip().startswith(header):
            if key is None:
                return i + 1
            found = find_line(lines[i:], key)
            return i + found if found else i + 1
    return None


def find_line(lines: list[str], key: str) -> int | None:
    """The first line (from 1) setting ``key``."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    return next((i + 1 for i, line in enumerate(lines) if pattern.match(line)), None)


def line_of_id(file: Path, test_id: str) -> int | None:
    """The line of the table whose id is ``test_id``'s (without ref or repeat)."""
    base = test_id.split("@", 1)[0].split("#", 1)[0]
    lines = file.read_text(encoding="utf-8").splitlines()
    pattern = re.compile(rf"^\s*id\s*=\s*[\"']{re.escape(base)}[\"']")
    return next((i + 1 for i, line in enumerate(lines) if pattern.match(line)), None)
