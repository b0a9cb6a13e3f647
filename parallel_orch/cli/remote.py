"""Daemon commands: `daemon` serves; `submit`, `status`, `watch`, `cancel`, `report`,
`ping` and `shutdown` talk to it through :class:`parallel_orch.client.DaemonClient`.

Exit codes follow DESIGN §8: an unreachable daemon is 3, a refused request 2
(bad plan, unknown session) or 3.
"""

from __future__ import annotations

import functools
import logging
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from parallel_orch import progress
from parallel_orch.cli import outputs as o
from parallel_orch.cli import status_text
from parallel_orch.cli.app import (
    EXIT_OK,
    JsonOpt,
    RefOpt,
    RepoOpt,
    SessionArg,
    StateDirOpt,
    WorkersOpt,
    app,
    console,
    exit_code_for,
    handle_errors,
    make_config,
    print_json,
    run_async,
    setup_logging,
)
from parallel_orch.client import DaemonClient, DaemonConnectionLost
from parallel_orch.daemon import paths
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.lifecycle import GRACE_SECONDS, DaemonOptions, run_daemon
from parallel_orch.daemon.server import IDLE_TIMEOUT_SECONDS
from parallel_orch.gitrepo import toplevel
from parallel_orch.report import ParallelTestReport
from parallel_orch.report.gates import exit_code
from parallel_orch.report.renderers.text import print_report

SocketOpt = Annotated[
    Path | None,
    typer.Option(
        "--socket", help="The daemon's socket (default: the one for the repo's state dir)."
    ),
]


def socket_for(socket: Path | None, repo: Path | None, state_dir: Path | None) -> Path:
    """``--socket``, else the configured or default socket of the repo's state dir."""
    if socket is not None:
        return socket
    return paths.socket_path_for(make_config(repo=repo, state_dir=state_dir, num_workers=1))


# -- the daemon -----------------------------------------------------------------------


@app.command()
@handle_errors
def daemon(
    socket: SocketOpt = None,
    workers: WorkersOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Re-run unfinished requests of sessions a dead daemon left."),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0, help="Seconds running attempts get to finish on a graceful stop."
        ),
    ] = GRACE_SECONDS,
    idle_timeout: Annotated[
        float,
        typer.Option("--idle-timeout", min=0.1, help="Close connections idle this many seconds."),
    ] = IDLE_TIMEOUT_SECONDS,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Serve the repo on a Unix socket in the foreground; print the socket path once listening."""
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    config = make_config(
        repo=toplevel(repo) if repo is not None else None,
        num_workers=workers,
        state_dir=state_dir,
        socket_path=socket.absolute() if socket is not None else None,
    )
    options = DaemonOptions(
        config=config,
        socket_path=paths.socket_path_for(config),
        resume=resume,
        grace_seconds=grace,
        idle_timeout=idle_timeout,
    )
    run_async(_serve, options)


async def _serve(options: DaemonOptions) -> None:
    async with anyio.create_task_group() as tg:
        path = await tg.start(functools.partial(run_daemon, options))
        print(path, flush=True)  # alone on its line: supervisors and tests wait for it


# -- clients ----------------------------------------------------------------------------


@app.command()
@handle_errors
def submit(
    plan_paths: Annotated[
        list[str], typer.Argument(metavar="PATHS...", help="Plan files or directories in the repo.")
    ],
    ref: RefOpt = None,
    priority: Annotated[
        int,
        typer.Option("--priority", help="Higher runs first; equal priorities share the workers."),
    ] = 0,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the session; exit with its result.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Show live progress (implies --wait).")
    ] = False,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    report_json: o.ReportJsonOpt = None,
    junit_xml: o.JUnitOpt = None,
    markdown: o.MarkdownOpt = None,
    html: o.HtmlOpt = None,
    csv: o.CsvOpt = None,
    csv_cases: o.CsvCasesOpt = None,
    trace: o.TraceOpt = None,
    no_step_summary: o.NoStepSummaryOpt = False,
    min_pass_rate: o.MinPassRateOpt = None,
    gate: o.GateOpt = None,
    max_flaky: o.MaxFlakyOpt = None,
    max_duration: o.MaxDurationOpt = None,
    min_coverage: o.MinCoverageOpt = None,
    no_new_failures: o.NoNewFailuresOpt = False,
    compare_to: o.CompareToOpt = None,
    notify_url: o.NotifyUrlOpt = None,
) -> None:
    """Submit plans to the daemon; print the session id on the first line.

    Any report file implies --wait. Gates given here judge the session instead of
    the daemon's configured ones.
    """
    flags = o.ReportFlags.parse(locals())
    outputs = flags.outputs
    waiting = wait or follow or bool(outputs.files)
    if waiting:
        outputs.check()
    options = flags.options() if flags.judged else None
    # Paths that exist from here are sent absolute; others are for the daemon to find in its repo.
    sent = [str(Path(x).absolute()) if Path(x).exists() else x for x in plan_paths]
    params = {"paths": sent, "ref": ref, "priority": priority, "options": options}
    report = run_async(_submit, socket_for(socket, repo, state_dir), params, waiting, follow)
    if report is None:
        raise typer.Exit(EXIT_OK)
    print_report(report, console)
    outputs.write(report)
    raise typer.Exit(exit_code(report))


async def _submit(
    socket: Path, params: dict[str, Any], wait: bool, follow: bool
) -> ParallelTestReport | None:
    submitted = await submit_once(socket, params, idempotency_key=uuid.uuid4().hex)
    print(submitted.session_id, flush=True)
    if not wait:
        return None
    async with DaemonClient(socket) as client:
        if follow:
            await _follow(socket, client, submitted.session_id)
        else:
            await client.wait(submitted.session_id)
        return await client.report(submitted.session_id)


async def submit_once(
    socket: Path, params: dict[str, Any], *, idempotency_key: str
) -> p.SubmitResult:
    """Submit, and once more with the same key if the connection was lost before the
    answer: the daemon runs it once either way."""
    for tries_left in (1, 0):
        try:
            async with DaemonClient(socket) as client:
                return await client.submit(**params, idempotency_key=idempotency_key)
        except DaemonConnectionLost:
            if not tries_left:
                raise
    raise AssertionError("unreachable")


@app.command()
@handle_errors
def status(
    session: Annotated[
        str | None, typer.Argument(help="A session id; without one, the daemon's status.")
    ] = None,
    as_json: JsonOpt = False,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """The daemon's workers, queue and running sessions, or one session's status and counts."""
    result = run_async(_status, socket_for(socket, repo, state_dir), session)
    if as_json:
        print_json(result.model_dump(mode="json"))
    elif isinstance(result, p.SessionSummary):
        _print(status_text.summary_line(result))
    else:
        _print(*status_text.daemon_lines(result))


async def _status(socket: Path, session: str | None) -> p.SessionSummary | p.DaemonStatus:
    async with DaemonClient(socket) as client:
        return await (client.session(session) if session is not None else client.status())


def _print(*lines: str) -> None:
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
@handle_errors
def watch(
    session: SessionArg,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Stream a session's progress until it ends; exit with its result."""
    summary = run_async(_watch, socket_for(socket, repo, state_dir), session)
    _print(status_text.summary_line(summary))
    raise typer.Exit(exit_code_for(summary.status))


async def _watch(socket: Path, session: str) -> p.SessionSummary:
    async with DaemonClient(socket) as client:
        await _follow(socket, client, session)
        return await client.session(session)


async def _follow(socket: Path, client: DaemonClient, session_id: str) -> None:
    """A session's live progress; its ETA is the daemon's, asked on a second connection."""
    num_workers = (await client.ping()).num_workers
    async with DaemonClient(socket) as side:

        async def eta(session: str) -> float | None:
            return (await side.session(session)).eta_seconds

        await progress.show(client.watch(session_id), console, num_workers, quiet=False, eta=eta)


@app.command()
@handle_errors
def cancel(
    session: SessionArg,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Cancel a running session: its queued tests are dropped, running attempts stopped."""
    result = run_async(
        _call, socket_for(socket, repo, state_dir), "cancel", {"session_id": session}
    )
    cancelled = p.CancelResult.model_validate(result)
    console.print(
        f"session {cancelled.session_id}: {cancelled.status}", highlight=False, markup=False
    )


@app.command()
@handle_errors
def report(
    session: SessionArg,
    as_json: JsonOpt = False,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    report_json: o.ReportJsonOpt = None,
    junit_xml: o.JUnitOpt = None,
    markdown: o.MarkdownOpt = None,
    html: o.HtmlOpt = None,
    csv: o.CsvOpt = None,
    csv_cases: o.CsvCasesOpt = None,
    trace: o.TraceOpt = None,
    no_step_summary: o.NoStepSummaryOpt = False,
    min_pass_rate: o.MinPassRateOpt = None,
    gate: o.GateOpt = None,
    max_flaky: o.MaxFlakyOpt = None,
    max_duration: o.MaxDurationOpt = None,
    min_coverage: o.MinCoverageOpt = None,
    no_new_failures: o.NoNewFailuresOpt = False,
    compare_to: o.CompareToOpt = None,
) -> None:
    """Print a session's report, from the daemon (a running session's so far)."""
    flags = o.ReportFlags.parse(locals())
    outputs = flags.outputs
    outputs.check()
    params: dict[str, Any] = {"session_id": session}
    if flags.judged:
        params["options"] = flags.options().model_dump(mode="json")
    result = run_async(_call, socket_for(socket, repo, state_dir), "report", params)
    parsed = ParallelTestReport.model_validate(result)
    if as_json:
        typer.echo(parsed.render("json"), nl=False)
    else:
        print_report(parsed, console)
    outputs.write(parsed)
    if "options" in params:  # judged here: the verdict is the exit code
        raise typer.Exit(exit_code(parsed))


@app.command()
@handle_errors
def ping(socket: SocketOpt = None, repo: RepoOpt = None, state_dir: StateDirOpt = None) -> None:
    """Check that the daemon answers; print what it serves."""
    info = p.PingResult.model_validate(
        run_async(_call, socket_for(socket, repo, state_dir), "ping", {})
    )
    console.print(
        f"daemon pid {info.pid} serves {info.repo} on {info.socket} (protocol {info.protocol}, "
        f"version {info.version}, {info.num_workers} workers, up {info.uptime_seconds:.0f}s)",
        highlight=False,
        markup=False,
    )


@app.command()
@handle_errors
def shutdown(
    now: Annotated[
        bool, typer.Option("--now", help="Cancel running attempts at once (no grace).")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the daemon has agreed to stop.")
    ] = False,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Stop the daemon: no new sessions, running attempts get its grace, then it exits."""
    result = run_async(_shutdown, socket_for(socket, repo, state_dir), now, not no_wait)
    done = "stopped" if not no_wait else f"stopping ({result.mode})"
    console.print(f"daemon {done}", highlight=False, markup=False)


async def _shutdown(socket: Path, now: bool, wait: bool) -> p.ShutdownResult:
    async with DaemonClient(socket) as client:
        return await client.shutdown(now=now, wait=wait)


async def _call(socket: Path, method: str, params: dict[str, Any]) -> Any:
    async with DaemonClient(socket) as client:
        return await client.call(method, params)
