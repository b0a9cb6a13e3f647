"""The `parallel-orch` command line (also `python -m parallel_orch`).

Exit codes (DESIGN §8): 0 all passed, 1 tests failed, 2 usage or plan error,
3 infrastructure error, 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from parallel_orch import progress
from parallel_orch.config import ParallelTestConfig
from parallel_orch.daemon.service import recent_summaries
from parallel_orch.exceptions import ConfigError, OrchError, PlanError, StoreError
from parallel_orch.models import ExecutionStatus, SessionStatus, TestRequest
from parallel_orch.orchestrator import ParallelTestOrchestrator
from parallel_orch.plans import load_plans
from parallel_orch.report import ParallelTestReport
from parallel_orch.report import json as json_report
from parallel_orch.report.text import print_report
from parallel_orch.store import DB_FILENAME, open_store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="parallel-orch",
    help="Run test plans in parallel, each attempt in its own git worktree, recorded in SQLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
PIPE_WIDTH = 160  # columns for tables when stdout is a file or pipe (logs, CI)
console = Console()
if not console.is_terminal:
    console = Console(width=PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True)

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


def exit_code_for(report: ParallelTestReport) -> int:
    """0 when every test passed, 130 when the session was stopped, else 1."""
    status = SessionStatus(report.status)
    if status in (SessionStatus.CANCELLED, SessionStatus.INTERRUPTED):
        return EXIT_INTERRUPTED
    return EXIT_OK if status in (SessionStatus.COMPLETE, SessionStatus.NO_TESTS) else EXIT_FAILED


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our exceptions into a one-line message and the DESIGN §8 exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OrchError as exc:
            err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def make_config(**overrides: Any) -> ParallelTestConfig:
    """Config from flags (those not None), then environment, pyproject and defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ParallelTestConfig(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@handle_errors
def run(
    paths: Annotated[list[Path] | None, typer.Argument(help="Plan files or directories.")] = None,
    workers: Annotated[
        int | None, typer.Option("-j", "--workers", min=1, help="Parallel workers.")
    ] = None,
    ref: Annotated[
        str | None, typer.Option("--ref", help="Ref for tests whose plan names none.")
    ] = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", help="Write the report as JSON here.")
    ] = None,
    max_failures: Annotated[
        int | None, typer.Option("--max-failures", min=1, help="Stop after N failed tests.")
    ] = None,
    keep_worktrees: Annotated[
        bool,
        typer.Option(
            "--keep-worktrees", help="Keep failed attempts' worktrees, locked, for inspection."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the final summary.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what the engine does.")
    ] = False,
) -> None:
    """Run plans (default: ./plans) in parallel worktrees and print the report."""
    setup_logging(verbose)
    config = make_config(
        repo=repo,
        num_workers=workers,
        state_dir=state_dir,
        max_failures=max_failures,
        preserve_failed_worktrees=True if keep_worktrees else None,
    )
    plan_paths = list(paths or [Path("plans")])
    requests = load_plans(plan_paths, default_timeout=config.default_timeout)
    if ref is not None:
        requests = [r if r.ref != "HEAD" else r.model_copy(update={"ref": ref}) for r in requests]
    if not requests:
        raise PlanError("no tests found", path=", ".join(str(p) for p in plan_paths))
    report = anyio.run(_run, config, requests, [str(p) for p in plan_paths], quiet)
    print_report(report, console)
    if report_json is not None:
        report_json.write_text(json_report.render(report))
    raise typer.Exit(exit_code_for(report))


async def _run(
    config: ParallelTestConfig, requests: list[TestRequest], plan_paths: list[str], quiet: bool
) -> ParallelTestReport:
    async with ParallelTestOrchestrator(config) as orch, anyio.create_task_group() as tg:
        stream = orch.events()
        tg.start_soon(
            functools.partial(progress.show, quiet=quiet), stream, console, config.num_workers
        )
        tg.start_soon(_stop_on_signals, orch, tg.cancel_scope)
        session_id = await orch.create_session(requests, plan_paths=plan_paths)
        report = await orch.wait_for_session(session_id)
        tg.cancel_scope.cancel()
    return report


async def _stop_on_signals(orch: ParallelTestOrchestrator, scope: anyio.CancelScope) -> None:
    """First Ctrl-C: kill running attempts and record the session cancelled. Second: force."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if orch.queue.closed:
                err_console.print("forced stop")
                scope.cancel()
                return
            err_console.print(f"{signal.Signals(signum).name}: stopping (again to force)")
            async with anyio.create_task_group() as tg:
                tg.start_soon(orch.cancel_all, ExecutionStatus.CANCELLED)
                async for _ in signals:
                    err_console.print("forced stop")
                    scope.cancel()
                    return


def _store_dir(repo: Path | None, state_dir: Path | None) -> Path:
    config = make_config(repo=repo, state_dir=state_dir, num_workers=1)
    path = config.resolved_state_dir
    if not (path / DB_FILENAME).exists():
        raise StoreError(f"no sessions recorded in {path}; run `parallel-orch run` first")
    return path


@app.command()
@handle_errors
def sessions(
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    socket: Annotated[
        Path | None, typer.Option("--socket", help="Ask this daemon instead of reading the store.")
    ] = None,
) -> None:
    """List recent sessions (from the store, or from a daemon with --socket)."""
    if socket is not None:
        from parallel_orch.daemon.commands import daemon_sessions

        rows = daemon_sessions(socket, limit)
    else:
        rows = anyio.run(_sessions, _store_dir(repo, state_dir), limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table()
    for column in ("session", "status", "created", "tests", "passed", "failed", "wall"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["session_id"],
            row["status"],
            _short_time(row["created_at"]),
            str(row["total"]),
            str(row["passed"]),
            str(row["failed"]),
            f"{row['duration_seconds']:.1f}s" if row["duration_seconds"] is not None else "-",
        )
    console.print(table)


def _short_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


async def _sessions(state_dir: Path, limit: int) -> list[dict[str, Any]]:
    async with open_store(state_dir) as store:
        return [s.model_dump() for s in await recent_summaries(store, limit)]


@app.command()
@handle_errors
def show(
    session: Annotated[str, typer.Argument(help="Session id (a unique prefix will do).")],
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a stored session's report."""
    report = anyio.run(_load_report, _store_dir(repo, state_dir), session)
    if as_json:
        typer.echo(json_report.render(report), nl=False)
    else:
        print_report(report, console)


async def _load_report(state_dir: Path, session_id: str) -> ParallelTestReport:
    from parallel_orch.report import build_report

    async with open_store(state_dir) as store:
        row = await store.get_session(session_id)
        if row.report_json:
            return ParallelTestReport.model_validate_json(row.report_json)
        return await build_report(store, row.id)


def main() -> None:
    app()


from parallel_orch.daemon import commands as _daemon_commands  # noqa: E402,F401
