"""Local commands: `run` plans here, and read the store (`sessions`, `show`)."""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from parallel_orch.cli import options as opt
from parallel_orch.cli.app import (
    ExecutorOpt,
    JsonOpt,
    RefOpt,
    RepoOpt,
    SchedulerOpt,
    SessionArg,
    StateDirOpt,
    WorkersOpt,
    app,
    console,
    err_console,
    handle_errors,
    make_config,
    print_json,
    real_console,
    run_async,
    setup_logging,
)
from parallel_orch.exceptions import PlanError, StoreError

# Imported where used: `parallel-orch --help` and the daemon's client commands must
# start at once, without the engine (SQLAlchemy, SQLModel, pydantic-settings).
if TYPE_CHECKING:
    import anyio

    from parallel_orch.cli.outputs import Outputs
    from parallel_orch.config import ParallelTestConfig
    from parallel_orch.events import EventBus
    from parallel_orch.models import TestRequest
    from parallel_orch.orchestrator import ParallelTestOrchestrator
    from parallel_orch.report import ParallelTestReport
    from parallel_orch.report.options import ReportOptions


@app.command()
@handle_errors
def run(
    paths: Annotated[list[Path] | None, typer.Argument(help="Plan files or directories.")] = None,
    workers: WorkersOpt = None,
    ref: RefOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
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
    report_json: opt.ReportJsonOpt = None,
    junit_xml: opt.JUnitOpt = None,
    markdown: opt.MarkdownOpt = None,
    html: opt.HtmlOpt = None,
    csv: opt.CsvOpt = None,
    csv_cases: opt.CsvCasesOpt = None,
    trace: opt.TraceOpt = None,
    no_step_summary: opt.NoStepSummaryOpt = False,
    min_pass_rate: opt.MinPassRateOpt = None,
    gate: opt.GateOpt = None,
    max_flaky: opt.MaxFlakyOpt = None,
    max_duration: opt.MaxDurationOpt = None,
    min_coverage: opt.MinCoverageOpt = None,
    no_new_failures: opt.NoNewFailuresOpt = False,
    compare_to: opt.CompareToOpt = None,
    notify_url: opt.NotifyUrlOpt = None,
) -> None:
    """Run plans (default: ./plans) in parallel worktrees and print the report."""
    setup_logging(logging.INFO if verbose else logging.WARNING)
    config = make_config(
        repo=repo,
        num_workers=workers,
        state_dir=state_dir,
        executor=executor,
        dask_scheduler=scheduler,
        max_failures=max_failures,
        preserve_failed_worktrees=True if keep_worktrees else None,
    )
    from parallel_orch.cli import outputs as o

    flags = o.ReportFlags.parse(locals(), base=config.gates)
    options = config.report_options(flags.options())
    _run_plans(config, list(paths or [Path("plans")]), ref, quiet, flags.outputs, options)


def _run_plans(
    config: ParallelTestConfig,
    plan_paths: list[Path],
    ref: str | None,
    quiet: bool,
    outputs: Outputs,
    options: ReportOptions,
) -> None:
    """Load, check, run, report: the body of ``run``."""
    from parallel_orch.cli.outputs import warn_unknown_categories
    from parallel_orch.models import with_default_ref
    from parallel_orch.plans import load_plans
    from parallel_orch.report.gates import exit_code

    loaded = load_plans(
        plan_paths, root=config.resolved_plans_root, default_timeout=config.default_timeout
    )
    requests = with_default_ref(loaded, ref)
    if not requests:
        raise PlanError("no tests found", path=", ".join(str(p) for p in plan_paths))
    warn_unknown_categories(options.gates, {r.category for r in requests})
    outputs.check()

    def show(report: ParallelTestReport) -> None:
        from parallel_orch.report.renderers.text import print_report  # loaded meanwhile

        print_report(report, console)
        outputs.write(report)

    report = run_async(_run, config, requests, [str(p) for p in plan_paths], quiet, options, show)
    raise typer.Exit(exit_code(report))


async def _run(
    config: ParallelTestConfig,
    requests: list[TestRequest],
    plan_paths: list[str],
    quiet: bool,
    options: ReportOptions,
    show: Callable[[ParallelTestReport], None],
) -> ParallelTestReport:
    """Run the session, ``show`` its report, then close: a webhook delivery under way
    is waited for (within its own time limit) after the report is out.

    Quiet, nothing follows the events (no progress to draw, no ETA) but the
    wait for the first attempt's end (:func:`_load_renderer_meanwhile`).
    """
    import anyio

    from parallel_orch.orchestrator import ParallelTestOrchestrator

    async with ParallelTestOrchestrator(config) as orch:
        async with anyio.create_task_group() as tg:
            await tg.start(_load_renderer_meanwhile, orch.bus)
            if not quiet:
                from parallel_orch import progress
                from parallel_orch.eta import SessionEta

                follow = functools.partial(
                    progress.show, quiet=False, eta=SessionEta(orch.store).seconds_left
                )
                tg.start_soon(follow, orch.events(), real_console(console), config.num_workers)
            tg.start_soon(_stop_on_signals, orch, tg.cancel_scope)
            session_id = await orch.create_session(requests, plan_paths=plan_paths, options=options)
            report = await orch.wait_for_session(session_id)
            tg.cancel_scope.cancel()
        show(report)
        if orch.executor_lost is not None:
            from parallel_orch.exceptions import FleetError

            raise FleetError(f"{orch.executor_lost}; the session ended interrupted")
    return report


#: The report's renderer, and rich with it: ~25 ms to import, needed only at the end.
RENDERER = "parallel_orch.report.renderers.text"


async def _load_renderer_meanwhile(
    bus: EventBus, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """Import :data:`RENDERER` in a thread once the first attempt has finished, while the
    others run: neither on the way to the first attempt nor after the last one (a session
    of one attempt imports it while its end is recorded)."""
    import importlib

    import anyio

    from parallel_orch.events import EventType

    async with bus.subscribe() as subscription:
        task_status.started()
        async for event in subscription.receive:
            if event.type is EventType.ATTEMPT_FINISHED:
                break
        else:
            return
    await anyio.to_thread.run_sync(importlib.import_module, RENDERER)


async def _stop_on_signals(orch: ParallelTestOrchestrator, scope: anyio.CancelScope) -> None:
    """First Ctrl-C: kill running attempts and record the session cancelled. Second: force."""
    import anyio

    from parallel_orch.models import ExecutionStatus

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


def store_dir(repo: Path | None, state_dir: Path | None) -> Path:
    from parallel_orch.store import DB_FILENAME

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
    from parallel_orch.cli.status_text import reading
    from parallel_orch.report.renderers.words import columns, seconds

    if socket is not None:
        rows = _daemon_sessions(socket, limit)
    else:
        rows = run_async(_sessions, store_dir(repo, state_dir), limit)
    if as_json:
        print_json(rows)
        return
    header = ["session", "status", "created (UTC)", "tests", "passed", "failed", "wall"]
    with reading("sessions"):  # a daemon's reply of another version: one clear line
        cells = [
            [
                row["session_id"],
                row["status"],
                _short_time(row["created_at"]),
                str(row["total"]),
                str(row["passed"]),
                str(row["failed"]),
                seconds(row["duration_seconds"]) if row["duration_seconds"] is not None else "-",
            ]
            for row in rows
        ]
    for line in columns([header, *cells], right=range(3, 7)):
        typer.echo(line)  # plain: never markup, never cut (and no rich to import)


def _short_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _sessions(state_dir: Path, limit: int) -> list[dict[str, Any]]:
    from parallel_orch import listing
    from parallel_orch.eta import SessionEta
    from parallel_orch.store import open_store

    async with open_store(state_dir) as store:
        summaries = await listing.recent_summaries(store, limit, SessionEta(store))
        return [s.model_dump() for s in summaries]


def _daemon_sessions(socket: Path, limit: int) -> list[dict[str, Any]]:
    """``sessions --socket``: the daemon's list, shaped like the store's (its times read
    back into datetimes); no event loop or pydantic to start."""
    from parallel_orch.cli.status_text import reading
    from parallel_orch.daemon import wire

    rows = wire.call(socket, "sessions", {"limit": limit})
    with reading("sessions"):
        for row in rows:
            for key in ("created_at", "completed_at"):
                row[key] = None if row[key] is None else datetime.fromisoformat(row[key])
        return list(rows)


@app.command()
@handle_errors
def show(
    session: SessionArg,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    report_json: opt.ReportJsonOpt = None,
    junit_xml: opt.JUnitOpt = None,
    markdown: opt.MarkdownOpt = None,
    html: opt.HtmlOpt = None,
    csv: opt.CsvOpt = None,
    csv_cases: opt.CsvCasesOpt = None,
    trace: opt.TraceOpt = None,
    no_step_summary: opt.NoStepSummaryOpt = False,
    min_pass_rate: opt.MinPassRateOpt = None,
    gate: opt.GateOpt = None,
    max_flaky: opt.MaxFlakyOpt = None,
    max_duration: opt.MaxDurationOpt = None,
    min_coverage: opt.MinCoverageOpt = None,
    no_new_failures: opt.NoNewFailuresOpt = False,
    compare_to: opt.CompareToOpt = None,
) -> None:
    """Print a stored session's report (judged again when gates or --compare-to are given)."""
    from parallel_orch.cli import outputs as o
    from parallel_orch.report.gates import exit_code
    from parallel_orch.report.renderers.text import print_report

    flags = o.ReportFlags.parse(locals())
    outputs = flags.outputs
    outputs.check()
    options = flags.options() if flags.judged else None
    report = run_async(_load_report, store_dir(repo, state_dir), session, options)
    if as_json:
        typer.echo(report.render("json"), nl=False)
    else:
        print_report(report, console)
    outputs.write(report)
    if options is not None:  # judged here: the verdict is the exit code
        raise typer.Exit(exit_code(report))


async def _load_report(
    state_dir: Path, session_id: str, options: ReportOptions | None
) -> ParallelTestReport:
    from parallel_orch.report import load_report
    from parallel_orch.report.finish import rejudged
    from parallel_orch.store import open_store

    async with open_store(state_dir) as store:
        if options is not None:
            return await rejudged(store, session_id, options)
        return await load_report(store, session_id)
