"""The vocabulary shared by every layer: statuses and the TestRequest."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from parallel_orch.limits import MAX_SHARDS

#: Characters allowed in test ids written in plans (DESIGN §2).
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/-]+$")
#: Derived ids add ``@<ref>`` for a refs matrix, ``#<n>`` for ``repeat`` and
#: ``[<i>/<n>]`` for shard i of n.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/@#~^+-]+(\[[0-9]+/[0-9]+\])?$")
SHARD_SUFFIX = re.compile(r"\[([0-9]+)/([0-9]+)\]$")


class ExecutionStatus(StrEnum):
    """Status of an execution or of one attempt (DESIGN §4)."""

    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ERROR = "error"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)

    @property
    def is_failure(self) -> bool:
        """Counts towards ``max_failures`` and makes a retry worthwhile."""
        return self in FAILURE_STATUSES


#: The statuses that count as a failed test: in reports, retries and ``max_failures``.
FAILURE_STATUSES: frozenset[ExecutionStatus] = frozenset(
    {ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ERROR}
)


class SessionStatus(StrEnum):
    """Status of a session (DESIGN §4)."""

    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL_SUCCESS = "partial_success"
    FAILED = "failed"
    NO_TESTS = "no_tests"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self is not SessionStatus.RUNNING


def session_status_for(counts: Mapping[str, int]) -> SessionStatus:
    """A finished session's status from how many of its executions ended in each status."""
    total = sum(counts.values())
    if not total:
        return SessionStatus.NO_TESTS
    if counts.get(ExecutionStatus.INTERRUPTED, 0):
        return SessionStatus.INTERRUPTED
    if counts.get(ExecutionStatus.CANCELLED, 0):
        return SessionStatus.CANCELLED
    passed = counts.get(ExecutionStatus.PASSED, 0) + counts.get(ExecutionStatus.SKIPPED, 0)
    if passed == total:
        return SessionStatus.COMPLETE
    return SessionStatus.PARTIAL_SUCCESS if passed else SessionStatus.FAILED


@dataclass(frozen=True, slots=True)
class JUnitCounts:
    """Cases in an attempt's JUnit file, by outcome."""

    passed: int
    failed: int
    errors: int
    skipped: int


RESOURCE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


#: The validation context of a request read back from the store (see :func:`_stored`).
STORED = "stored"


def count_up_to(value: object, most: int | None) -> int | None:
    """``value`` as a count from 1 to ``most`` (no bound when None), however a whole number
    is written (``2``, ``2.0``, ``"2"``); None when it is not one."""
    if isinstance(value, str):
        value = int(value) if value.strip().isdigit() else None
    elif isinstance(value, float):
        value = int(value) if value.is_integer() else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value >= 1 and (most is None or value <= most) else None


def check_shards(value: object, *, bound: bool = True) -> int | Literal["auto"]:
    """``shards`` as given: a whole number from 1 to :data:`MAX_SHARDS` (without ``bound``,
    from 1: a stored request, admitted before the bound was), or ``"auto"``."""
    if value == "auto":
        return "auto"
    number = count_up_to(value, MAX_SHARDS if bound else None)
    if number is None:
        raise ValueError(
            f"shards must be a whole number from 1 to {MAX_SHARDS} or 'auto', not {value!r}"
        )
    return number


def check_setup_input(path: str, *, new: bool = True) -> str:
    """A ``setup_inputs`` path as git names it (``./a//b/`` is ``a/b``): a file or folder
    inside the repo, named (``new``: not a ``*`` or ``?`` pattern, which would key on a
    path that is never there; ``[`` is a real name's, as in ``app/[slug]``)."""
    normal = posixpath.normpath(path)  # "" and "./" are "."
    if normal == "." or normal.startswith("/") or ".." in normal.split("/"):
        raise ValueError(f"setup_inputs path {path!r} must name a file or folder inside the repo")
    if new and ("*" in normal or "?" in normal):
        raise ValueError(
            f"setup_inputs path {path!r} is a pattern: name the files or folders themselves"
        )
    return normal


def _stored(info: ValidationInfo) -> bool:
    """Validating a request read back from the store: rules added since it was admitted
    (bounds, refusals) do not apply to it, or a resume after an upgrade would fail."""
    return isinstance(info.context, dict) and bool(info.context.get(STORED))


def check_resources(value: dict[str, float]) -> dict[str, float]:
    """Resource names are plain words and amounts positive: ``{"gpu": 1}``."""
    for name, amount in value.items():
        if not RESOURCE_PATTERN.match(name):
            raise ValueError(f"resource name {name!r} must be a word (letters, digits, _ . -)")
        if isinstance(amount, bool) or not amount > 0:
            raise ValueError(f"resource {name!r} needs a positive amount, not {amount!r}")
    return value


class TestRequest(BaseModel):
    """One test to run: what, where (ref), how long, how often."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str = Field(description="Unique within a session, e.g. 'unit/core::fast'.")
    command: str | tuple[str, ...] = Field(
        description="A string runs through bash; a list runs without a shell."
    )
    ref: str = "HEAD"
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = "."
    timeout_seconds: float = 600.0
    retries: int = Field(default=0, ge=0)
    category: str = "default"
    priority: int = 0
    junit: bool = False
    setup: str | None = None
    setup_inputs: tuple[str, ...] = Field(
        default=(), description="Files whose content at the commit keys the setup, not the commit."
    )
    keep: tuple[str, ...] = ()
    shards: int | Literal["auto"] = Field(
        default=1, description="Split one suite run into N requests (Bazel's sharding protocol)."
    )
    shard: tuple[int, int] | None = Field(
        default=None, description="This request's part: (index from 1, total); set when split."
    )
    leak: Literal["warn", "fail"] = Field(
        default="warn",
        description="Processes the attempt leaves running are killed; 'fail' fails the test.",
    )
    quarantine: str | None = Field(
        default=None, description="Why it is quarantined: it runs and is reported, gates nothing."
    )
    coverage: bool | tuple[str, ...] = Field(
        default=False,
        description="Collect coverage (COVERAGE_FILE per attempt); a list names the sources.",
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Kinds of machine it needs, e.g. {'gpu': 1}: Dask worker resources on a fleet.",
    )
    plan_path: str | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not REQUEST_ID_PATTERN.match(value):
            raise ValueError(f"test id {value!r} may only use letters, digits and . _ : / -")
        if ".." in value.split("/") or value.startswith("/"):
            raise ValueError(f"test id {value!r} must not contain '..' or start with '/'")
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("'run' is empty")
        if isinstance(value, tuple) and (not value or not value[0]):
            raise ValueError("'run' is empty")
        return value

    @field_validator("timeout_seconds")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("timeout must be positive")
        return value

    @field_validator("shards", mode="before")
    @classmethod
    def _check_shards(cls, value: object, info: ValidationInfo) -> int | str:
        return check_shards(value, bound=not _stored(info))

    @field_validator("resources")
    @classmethod
    def _check_resources(cls, value: dict[str, float]) -> dict[str, float]:
        return check_resources(value)

    @property
    def base_id(self) -> str:
        """The id of the test this request is a shard of (its own id when not a shard)."""
        return SHARD_SUFFIX.sub("", self.id) if self.shard else self.id

    def shard_count(self, workers: int) -> int:
        """How many shards this request is split into (``"auto"``: one per worker)."""
        return max(1, workers if self.shards == "auto" else int(self.shards))

    def split(self, workers: int) -> list[TestRequest]:
        """This request as its shards (``shards = "auto"``: one per worker); itself if one."""
        total = self.shard_count(workers)
        if self.shard is not None or total <= 1:
            return [self]
        return [
            self.model_copy(update={"id": f"{self.id}[{i}/{total}]", "shard": (i, total)})
            for i in range(1, total + 1)
        ]

    @model_validator(mode="after")
    def _shard_suffix(self) -> TestRequest:
        """``[i/n]`` ends the id of shard i of n, and only of one: the report merges them."""
        match = SHARD_SUFFIX.search(self.id)
        if self.shard is None and match is not None:
            raise ValueError(f"test id {self.id!r}: an id ending in [i/n] is a shard's")
        if self.shard is not None:
            index, total = self.shard
            if (
                not 1 <= index <= total
                or match is None
                or match.groups()
                != (
                    str(index),
                    str(total),
                )
            ):
                raise ValueError(f"test id {self.id!r} does not name its shard {index}/{total}")
        return self

    @field_validator("setup_inputs")
    @classmethod
    def _check_inputs(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return tuple(check_setup_input(path, new=not _stored(info)) for path in value)

    @field_validator("cwd")
    @classmethod
    def _check_cwd(cls, value: str) -> str:
        if value == ".":  # the default, checked for every request of a plan
            return value
        path = PurePosixPath(value)
        if path.is_absolute():
            raise ValueError(f"cwd {value!r} must be relative to the worktree")
        depth = 0
        for part in path.parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                raise ValueError(f"cwd {value!r} leaves the worktree")
        return value


def with_default_ref(requests: Sequence[TestRequest], ref: str | None) -> list[TestRequest]:
    """``--ref``: requests whose plan names no ref (``HEAD``) run at ``ref`` instead."""
    if ref is None:
        return list(requests)
    return [r if r.ref != "HEAD" else r.model_copy(update={"ref": ref}) for r in requests]
