"""Plan files (.toml, or .md with TOML front matter) into TestRequests (DESIGN §3).

A bad plan raises :class:`PlanError` naming the file, the line where known,
and what is wrong, before anything is submitted.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from parallel_orch import plan_lines
from parallel_orch.exceptions import PlanError
from parallel_orch.limits import MAX_REPEAT
from parallel_orch.models import (
    ID_PATTERN,
    TestRequest,
    check_resources,
    check_setup_input,
    check_shards,
    count_up_to,
)

PLAN_SUFFIXES = (".toml", ".md")
DEFAULT_TIMEOUT_SECONDS = 600.0
_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)
_TOML_LINE = re.compile(r"at line (\d+)")
_FENCE = re.compile(r"^```(?:sh|bash|shell)\s*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string like ``"90s"``, ``"5m"``, ``"1h30m"``.

    :raises ValueError: if the value is not a positive duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match or not any(match.groups()):
            raise ValueError(f"not a duration: {value!r} (use seconds, or '90s', '5m', '1h')")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


class _Common(BaseModel):
    """Keys allowed both in ``[defaults]`` and in each ``[[test]]``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ref: str | None = None
    refs: list[str] | None = None
    timeout: float | int | str | None = None
    retries: int | None = Field(default=None, ge=0)
    category: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    setup: str | None = None
    setup_inputs: list[str] | None = None  # the setup's key: these files' content at the commit
    keep: list[str] | None = None
    priority: int | None = None
    junit: bool | None = None
    repeat: int | None = None
    shards: int | Literal["auto"] | None = None  # split one suite run into N parts
    leak: Literal["warn", "fail"] | None = None  # processes that outlive the attempt
    quarantine: str | None = Field(default=None, min_length=1)  # why: runs, gates nothing
    coverage: bool | list[str] | None = None  # COVERAGE_FILE per attempt, combined per commit
    resources: dict[str, float] | None = None  # kinds of machine: Dask worker resources

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return check_resources(value) if value is not None else None

    @field_validator("shards", mode="before")
    @classmethod
    def _shards(cls, value: object) -> int | str | None:
        return None if value is None else check_shards(value)

    @field_validator("repeat", mode="before")
    @classmethod
    def _repeat(cls, value: object) -> int | None:
        if value is None:
            return None
        number = count_up_to(value, MAX_REPEAT)
        if number is None:
            raise ValueError(f"repeat must be a whole number from 1 to {MAX_REPEAT}, not {value!r}")
        return number

    @field_validator("setup_inputs")
    @classmethod
    def _setup_inputs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_setup_input(path) for path in value]

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: float | int | str | None) -> float | int | str | None:
        if value is not None:
            parse_duration(value)
        return value


class _PlanTest(_Common):
    id: str
    run: str | list[str]
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id_chars(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError(f"id {value!r} may only use letters, digits and . _ : / -")
        return value


class _PlanFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    defaults: _Common = Field(default_factory=_Common)
    test: list[_PlanTest] = Field(default_factory=list)


def discover(
    paths: Iterable[str | Path], *, root: str | Path | None = None
) -> list[tuple[Path, str]]:
    """Plan files under ``paths``, each with its name: what its test ids start with.

    A file under ``root`` (the plans root) is named by its path relative to
    ``root``, however it was reached; any other file by its path relative to
    the directory given (a file given itself: its stem). Names drop the suffix.
    A file reached twice (``plans`` and ``plans/unit``) is listed once.

    :raises PlanError: if a path does not exist or is not a plan file.
    """
    top = Path(root).resolve() if root is not None else None
    found: dict[Path, tuple[Path, str]] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            real = path.resolve()
            files = sorted(p for p in path.rglob("*") if p.suffix in PLAN_SUFFIXES and p.is_file())
            for file in files:
                if file.suffix == ".toml" or _has_front_matter(file):
                    below = file.relative_to(path)
                    found.setdefault(real / below, (file, _name(real / below, top, below)))
        elif path.is_file():
            if path.suffix not in PLAN_SUFFIXES:
                raise PlanError("not a plan file (expected .toml or .md)", path=str(path))
            real = path.resolve()
            found.setdefault(real, (path, _name(real, top, Path(path.name))))
        else:
            raise PlanError("no such plan file or directory", path=str(path))
    return list(found.values())


def _name(real: Path, root: Path | None, given: Path) -> str:
    """``real`` relative to ``root`` when under it, else ``given``; without the suffix."""
    relative = real.relative_to(root) if root is not None and real.is_relative_to(root) else given
    return relative.with_suffix("").as_posix()


def load_plans(
    paths: Sequence[str | Path] | str | Path,
    *,
    root: str | Path | None = None,
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[TestRequest]:
    """Load plan files and directories (recursively, sorted) into requests.

    :param root: the plans root: test ids of plans under it are relative to it
        whatever path reached them (see :func:`discover`); the orchestrator, the
        CLI and the daemon pass ``ParallelTestConfig.resolved_plans_root``.
    :raises PlanError: on the first invalid plan; nothing is returned then.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    requests: list[TestRequest] = []
    seen: dict[str, Path] = {}
    for file, prefix in discover(paths, root=root):
        for request in load_plan_file(file, prefix, default_timeout=default_timeout):
            if request.id in seen:
                raise PlanError(
                    f"duplicate test id {request.id!r} (also defined in {seen[request.id]})",
                    path=str(file),
                    line=plan_lines.line_of_id(file, request.id.split("::", 1)[-1]),
                )
            seen[request.id] = file
            requests.append(request)
    return requests


def load_plan_file(
    file: Path, prefix: str, *, default_timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> list[TestRequest]:
    """Requests defined by one plan file; ids are ``<prefix>::<id>``."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan: {exc}", path=str(file)) from exc
    data = _parse_markdown(file, text) if file.suffix == ".md" else _parse_toml(file, text)
    try:
        plan = _PlanFile.model_validate(data)
    except ValidationError as exc:
        raise plan_lines.validation_error(file, text, exc, _PlanTest.model_fields) from None
    if not plan.test:
        raise PlanError("plan defines no tests (add a [[test]] table)", path=str(file))
    out: list[TestRequest] = []
    ids: set[str] = set()
    for index, test in enumerate(plan.test):
        try:
            expanded = _expand(test, plan.defaults, prefix, file, default_timeout)
        except (ValidationError, ValueError) as exc:
            line = plan_lines.line_of_table(
                text, index, plan_lines.plan_key_of(exc, _PlanTest.model_fields)
            )
            raise PlanError(
                f"test {test.id!r}: {plan_lines.first_message(exc)}", path=str(file), line=line
            ) from None
        # Checked here, where the table is known, so the line is the duplicate's own.
        for request in expanded:
            if request.id in ids:
                raise PlanError(
                    f"duplicate test id {request.id!r} (defined earlier in this file)",
                    path=str(file),
                    line=plan_lines.line_of_table(text, index, "id"),
                )
            ids.add(request.id)
        out.extend(expanded)
    return out


def _expand(
    test: _PlanTest, defaults: _Common, prefix: str, file: Path, default_timeout: float
) -> list[TestRequest]:
    def pick(name: str) -> Any:
        value = getattr(test, name)
        return getattr(defaults, name) if value is None else value

    matrix, refs, repeat = _runs(test, defaults)
    setup_command = pick("setup")
    if test.setup_inputs and not setup_command:
        raise ValueError("setup_inputs key a setup, and there is none: add 'setup' or drop them")
    env = {**(defaults.env or {}), **(test.env or {})}
    command: str | tuple[str, ...] = test.run if isinstance(test.run, str) else tuple(test.run)
    timeout = pick("timeout")
    base = f"{prefix}::{test.id}"
    requests = []
    for ref in refs:
        for n in range(1, repeat + 1):
            test_id = base
            if matrix is not None:
                test_id += f"@{ref}"
            if repeat > 1:
                test_id += f"#{n}"
            requests.append(
                TestRequest(
                    id=test_id,
                    command=command,
                    ref=ref,
                    env=env,
                    cwd=pick("cwd") or ".",
                    timeout_seconds=parse_duration(timeout) if timeout else default_timeout,
                    retries=pick("retries") or 0,
                    category=pick("category") or prefix.split("/", 1)[0],
                    priority=pick("priority") or 0,
                    junit=bool(pick("junit")),
                    setup=setup_command,
                    # [defaults] may key setups some tests do not have
                    setup_inputs=tuple(pick("setup_inputs") or ()) if setup_command else (),
                    shards=pick("shards") or 1,
                    keep=tuple(pick("keep") or ()),
                    leak=pick("leak") or "warn",
                    quarantine=pick("quarantine"),
                    coverage=_coverage(pick("coverage")),
                    resources=pick("resources") or {},
                    plan_path=file.as_posix(),
                )
            )
    return requests


def _runs(test: _PlanTest, defaults: _Common) -> tuple[list[str] | None, list[str], int]:
    """A test's refs matrix (None: no matrix), the refs it runs at, and its repeat count."""
    if test.refs is not None and test.ref is not None:
        raise ValueError("use either 'ref' or 'refs', not both")
    # A matrix comes from the test's own refs, else from [defaults] unless the test names a ref.
    matrix = test.refs if test.refs is not None else (None if test.ref else defaults.refs)
    ref = test.ref if test.ref is not None else defaults.ref
    refs = matrix if matrix is not None else [ref or "HEAD"]
    if not refs:
        raise ValueError("'refs' is empty")
    repeat = (test.repeat if test.repeat is not None else defaults.repeat) or 1
    if len(refs) * repeat > MAX_REPEAT:
        raise ValueError(
            f"{len(refs)} refs x repeat {repeat} is {len(refs) * repeat} runs of one test;"
            f" at most {MAX_REPEAT}"
        )
    return matrix, refs, repeat


def _coverage(value: bool | list[str] | None) -> bool | tuple[str, ...]:
    return tuple(value) if isinstance(value, list) else bool(value)


def _parse_toml(file: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        raise PlanError(
            f"TOML syntax error: {exc}", path=str(file), line=int(match.group(1)) if match else None
        ) from None


def _has_front_matter(file: Path) -> bool:
    try:
        with file.open(encoding="utf-8") as fh:
            return fh.readline().rstrip() == "+++"
    except (OSError, UnicodeDecodeError):
        return False


def _parse_markdown(file: Path, text: str) -> dict[str, Any]:
    """A Markdown plan is one test: TOML front matter, then its sh/bash blocks as the command."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "+++":
        raise PlanError("Markdown plan must start with '+++' TOML front matter", path=str(file))
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() == "+++")
    except StopIteration:
        raise PlanError("front matter is not closed with '+++'", path=str(file)) from None
    front = _parse_toml(file, "".join(lines[1:end]))
    blocks = [b.strip("\n") for b in _FENCE.findall("".join(lines[end + 1 :]))]
    test = {k: v for k, v in front.items() if k != "defaults"}
    test.setdefault("id", file.stem)
    if "run" not in test:
        if not blocks:
            raise PlanError("Markdown plan has no ```sh or ```bash block to run", path=str(file))
        test["run"] = "set -e\n" + "\n".join(blocks)
    data: dict[str, Any] = {"test": [test]}
    if "defaults" in front:
        data["defaults"] = front["defaults"]
    return data


def quarantined(requests: Sequence[TestRequest], listed: dict[str, str]) -> list[TestRequest]:
    """Requests the config quarantines, marked so (a plan's own reason wins)."""
    return [
        r.model_copy(update={"quarantine": listed[r.id]})
        if r.id in listed and not r.quarantine
        else r
        for r in requests
    ]
