"""The `parallel-orch` app: its shared options, exit codes and error handling.

Exit codes (DESIGN §8): 0 all passed, 1 tests failed, 2 usage or plan error,
3 infrastructure error, 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer

from parallel_orch.exceptions import ConfigError, OrchError, sole_orch_error

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.console import Console

    from parallel_orch.config import ParallelTestConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

app = typer.Typer(
    name="parallel-orch",
    help="Run test plans in parallel, each attempt in its own git worktree, recorded in SQLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich's would cost --help a tenth of a second
)


class _LazyConsole:
    """A rich Console made when first used: commands that print nothing never import rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> Console:
        """The console itself, for what hands it to rich (a live display)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def real_console(console: Console) -> Console:
    """``console`` itself, unwrapped when it is made lazily (as :data:`console` is)."""
    return console.real() if isinstance(console, _LazyConsole) else console


# On a terminal: colour and live progress. In a pipe or file: plain lines, never padded.
console = cast("Console", _LazyConsole())
err_console = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))

RepoOpt = Annotated[
    Path | None,
    typer.Option("--repo", help="Git repository (default: the one around the current directory)."),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Where the store and logs live (default <repo>/.parallel-orch)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WorkersOpt = Annotated[int | None, typer.Option("-j", "--workers", min=1, help="Parallel workers.")]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor", help="Where attempts run: local (this machine) or dask (a Dask cluster)."
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="The Dask scheduler, tcp://HOST:PORT (implies --executor dask; "
        "without it, --executor dask starts a local cluster).",
    ),
]
RefOpt = Annotated[str | None, typer.Option("--ref", help="Ref for tests whose plan names none.")]
SessionArg = Annotated[str, typer.Argument(help="Session id (a unique prefix will do).")]


def exit_code_for(status: str) -> int:
    """A session's status as an exit code: 0 all passed, 130 stopped, else 1."""
    from parallel_orch.models import SessionStatus

    session = SessionStatus(status)
    if session in (SessionStatus.CANCELLED, SessionStatus.INTERRUPTED):
        return EXIT_INTERRUPTED
    return EXIT_OK if session in (SessionStatus.COMPLETE, SessionStatus.NO_TESTS) else EXIT_FAILED


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our exceptions into a one-line message and the DESIGN §8 exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OrchError as exc:
            from rich.text import Text

            # the message is user text (paths, plan tables like [[test]]): never markup
            err_console.print(Text.assemble(("error:", "bold red"), " ", exc.message))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run``, raising our own error rather than the task group around it.
    The command's start-up is over by then: the collector runs again (:mod:`~.heap`)."""
    import anyio

    from parallel_orch.cli import heap

    heap.release()

    try:
        return anyio.run(fn, *args)
    except BaseExceptionGroup as group:
        found = sole_orch_error(group)
        if found is None:
            raise
        raise found from None


def make_config(**overrides: Any) -> ParallelTestConfig:
    """Config from flags (those not None), then environment, pyproject and defaults."""
    from pydantic import ValidationError

    from parallel_orch.config import ParallelTestConfig

    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("dask_scheduler") and "executor" not in given:
        given["executor"] = "dask"  # a scheduler given means the fleet
    try:
        return ParallelTestConfig(**given)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {validation_problems(exc)}") from None


def validation_problems(exc: ValidationError) -> str:
    """Each problem on one line: ``where: what is wrong`` (where there is a where)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def setup_logging(level: int) -> None:
    """Log records of ``level`` and above to stderr."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def print_json(value: Any) -> None:
    """``value`` as indented JSON; times in ISO 8601, UTC, with ``Z`` (as in the protocol)."""
    typer.echo(json.dumps(value, indent=2, default=_jsonable))


def iso_utc(value: datetime) -> str:
    """``2026-01-02T03:04:05.123456Z``; a time without a zone is taken as UTC (the store's)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: object) -> Any:
    from pydantic_core import to_jsonable_python

    if isinstance(value, datetime):
        return iso_utc(value)
    return to_jsonable_python(value)
