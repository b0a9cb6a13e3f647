"""The daemon's client commands: `submit`, `status`, `watch`, `cancel`, `report`, `ping`
and `shutdown` talk to it through :class:`parallel_orch.client.DaemonClient`
(`daemon` itself, which serves, is in :mod:`~.serve`).

Exit codes follow DESIGN §8: an unreachable daemon is 3, a refused request 2
(bad plan, unknown session) or 3.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from parallel_orch.cli import options as opt
from parallel_orch.cli import status_text
from parallel_orch.cli.app import (
    EXIT_OK,
    JsonOpt,
    RefOpt,
    RepoOpt,
    SessionArg,
    StateDirOpt,
    app,
    console,
    exit_code_for,
    handle_errors,
    print_json,
    real_console,
    run_async,
)
from parallel_orch.daemon import paths, wire

# Imported where used: the client commands must start at once (see cli/local.py).
if TYPE_CHECKING:
    from parallel_orch.client import DaemonClient
    from parallel_orch.daemon import protocol as p
    from parallel_orch.report import ParallelTestReport

SocketOpt = Annotated[
    Path | None,
    typer.Option(
        "--socket", help="The daemon's socket (default: the one for the repo's state dir)."
    ),
]


def socket_for(socket: Path | None, repo: Path | None, state_dir: Path | None) -> Path:
    """``--socket``, else the configured or default socket of the repo's state dir."""
    return paths.socket_path_light(repo, state_dir, socket)


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
    """Submit plans to the daemon; print the session id on the first line.

    Any report file implies --wait. Gates given here judge the session instead of
    the daemon's configured ones.
    """
    given: tuple[object, ...] = (report_json, junit_xml, markdown, html, csv, csv_cases, trace)
    given += (min_pass_rate, gate, max_flaky, max_duration, min_coverage, compare_to, notify_url)
    where = socket_for(socket, repo, state_dir)
    params = _submit_params(plan_paths, ref, priority)
    if wait or follow or no_new_failures or any(x is not None for x in given):
        _submit_with_report(where, params, locals(), follow=follow)
    # No report asked for: no report options (pydantic models) to import, and the
    # submit starts at once.
    print(submit_once(where, params), flush=True)
    raise typer.Exit(EXIT_OK)


def _submit_with_report(
    where: Path, params: dict[str, Any], flags: dict[str, Any], *, follow: bool
) -> NoReturn:
    """``submit`` with report files, gates or ``--wait``: its exit code is the report's."""
    from parallel_orch.cli import outputs as o

    parsed = o.ReportFlags.parse(flags)
    outputs = parsed.outputs
    wait = flags["wait"] or follow or bool(outputs.files)
    if wait:
        outputs.check()
    if parsed.judged:
        params = {**params, "options": parsed.options().model_dump(mode="json")}
    session_id = submit_once(where, params)
    print(session_id, flush=True)
    if not wait:
        raise typer.Exit(EXIT_OK)
    report = run_async(_wait, where, session_id, follow)
    from parallel_orch.report.gates import exit_code
    from parallel_orch.report.renderers.text import print_report

    print_report(report, console)
    outputs.write(report)
    raise typer.Exit(exit_code(report))


async def _wait(socket: Path, session_id: str, follow: bool) -> ParallelTestReport:
    from parallel_orch.client import DaemonClient

    async with DaemonClient(socket) as client:
        if follow:
            await _follow(socket, client, session_id)
        else:
            await client.wait(session_id)
        return await client.report(session_id)


def _submit_params(plan_paths: list[str], ref: str | None, priority: int) -> dict[str, Any]:
    # Paths that exist from here are sent absolute; others are for the daemon to find in its repo.
    sent = [str(Path(x).absolute()) if Path(x).exists() else x for x in plan_paths]
    params: dict[str, Any] = {"paths": sent, "priority": priority}
    if ref is not None:
        params["ref"] = ref
    return params


def submit_once(socket: Path, params: dict[str, Any], *, idempotency_key: str = "") -> str:
    """Submit; its session id. Sent once more with the same key (a new one by default)
    if the connection was lost before the answer: the daemon runs it once either way."""
    keyed = {**params, "idempotency_key": idempotency_key or uuid.uuid4().hex}
    for tries_left in (1, 0):
        try:
            submitted = _ask(socket, "submit", keyed)
        except wire.DaemonConnectionLost:
            if not tries_left:
                raise
            continue
        with status_text.reading("submit"):
            return str(submitted["session_id"])
    raise AssertionError("unreachable")


def _ask(socket: Path, method: str, params: dict[str, Any], *, to_end: bool = False) -> Any:
    """One request on a connection of its own (blocking: no event loop to start)."""
    result = wire.call(socket, method, params, read_to_end=to_end)
    if not isinstance(result, dict):
        raise wire.DaemonProtocolError(f"the daemon's reply to {method} is not an object")
    return result


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
    params = {"session_id": session} if session is not None else {}
    result = _ask(socket_for(socket, repo, state_dir), "status", params)
    if as_json:
        print_json(result)
        return
    with status_text.reading("status"):
        lines = (
            [status_text.summary_line(result)]
            if session is not None
            else status_text.daemon_lines(result)
        )
    _print(*lines)


def _print(*lines: str) -> None:
    for line in lines:
        typer.echo(line)  # plain: never markup, never cut (and no rich to import)


@app.command()
@handle_errors
def watch(
    session: SessionArg,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Stream a session's progress until it ends; exit with its result."""
    from parallel_orch.cli import status_text

    summary = run_async(_watch, socket_for(socket, repo, state_dir), session)
    _print(status_text.summary_line(summary.model_dump(mode="json")))
    raise typer.Exit(exit_code_for(summary.status))


async def _watch(socket: Path, session: str) -> p.SessionSummary:
    from parallel_orch.client import DaemonClient

    async with DaemonClient(socket) as client:
        await _follow(socket, client, session)
        return await client.session(session)


async def _follow(socket: Path, client: DaemonClient, session_id: str) -> None:
    """A session's live progress; its ETA is the daemon's, asked on a second connection."""
    from parallel_orch import progress
    from parallel_orch.client import DaemonClient

    num_workers = (await client.ping()).num_workers
    async with DaemonClient(socket) as side:

        async def eta(session: str) -> float | None:
            return (await side.session(session)).eta_seconds

        await progress.show(
            client.watch(session_id), real_console(console), num_workers, quiet=False, eta=eta
        )


@app.command()
@handle_errors
def cancel(
    session: SessionArg,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Cancel a running session: its queued tests are dropped, running attempts stopped."""
    cancelled = _ask(socket_for(socket, repo, state_dir), "cancel", {"session_id": session})
    with status_text.reading("cancel"):
        line = f"session {cancelled['session_id']}: {cancelled['status']}"
    typer.echo(line)


@app.command()
@handle_errors
def report(
    session: SessionArg,
    as_json: JsonOpt = False,
    socket: SocketOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
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
    """Print a session's report, from the daemon (a running session's so far)."""
    from parallel_orch.cli import outputs as o
    from parallel_orch.report import ParallelTestReport
    from parallel_orch.report.gates import exit_code
    from parallel_orch.report.renderers.text import print_report

    flags = o.ReportFlags.parse(locals())
    outputs = flags.outputs
    outputs.check()
    params: dict[str, Any] = {"session_id": session}
    if flags.judged:
        params["options"] = flags.options().model_dump(mode="json")
    result = _ask(socket_for(socket, repo, state_dir), "report", params)
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
    info = _ask(socket_for(socket, repo, state_dir), "ping", {})
    with status_text.reading("ping"):
        line = (
            f"daemon pid {info['pid']} serves {info['repo']} on {info['socket']} (protocol "
            f"{info['protocol']}, version {info['version']}, {info['num_workers']} workers, "
            f"up {info['uptime_seconds']:.0f}s)"
        )
    typer.echo(line)


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
    result = _ask(socket_for(socket, repo, state_dir), "shutdown", {"now": now}, to_end=not no_wait)
    with status_text.reading("shutdown"):
        done = "stopped" if not no_wait else f"stopping ({result['mode']})"
    typer.echo(f"daemon {done}")
