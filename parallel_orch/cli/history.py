"""`history TEST_ID` and `flaky`: a test across sessions, from the store or a daemon."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from parallel_orch import limits
from parallel_orch.cli.app import (
    JsonOpt,
    RepoOpt,
    StateDirOpt,
    app,
    err_console,
    handle_errors,
    print_json,
    run_async,
)
from parallel_orch.cli.local import store_dir
from parallel_orch.report.renderers.words import columns, seconds

if TYPE_CHECKING:  # imported where used: --help must not build their models
    from parallel_orch.history import FlakyTests, HistoryEntry

SHORT_SHA = 10  # characters of a commit SHA in tables
HISTORY_COLUMNS = (
    "session",
    "when (UTC)",
    "test",
    "status",
    "duration",
    "ref",
    "sha",
    "flaky",
    "attempts",
)
FLAKY_COLUMNS = ("test", "flake rate", "flakes", "retried to pass", "mixed at a commit", "last")

DaemonSocketOpt = Annotated[
    Path | None, typer.Option("--socket", help="Ask this daemon instead of reading the store.")
]


@app.command("history")
@handle_errors
def history_command(
    test_id: Annotated[
        str,
        typer.Argument(
            metavar="TEST_ID", help="A test id as reports print it (e.g. unit/core::fast)."
        ),
    ],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = limits.HISTORY_LIMIT,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    socket: DaemonSocketOpt = None,
) -> None:
    """A test's recent executions across sessions, newest first (its @ref and #n variants too)."""
    if socket is not None:
        entries = run_async(_daemon_history, socket, test_id, limit)
    else:
        entries = run_async(_history, store_dir(repo, state_dir), test_id, limit)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    if not entries:
        err_console.print(
            f"no executions of {test_id} recorded; ids are as reports print them, "
            "e.g. unit/core::fast",
            markup=False,
            highlight=False,
        )
        return
    _print_columns(
        HISTORY_COLUMNS,
        [
            [
                e.session_id,
                _when(e.started_at or e.created_at),
                e.test_id,
                e.status,
                seconds(e.duration_seconds) if e.duration_seconds is not None else "-",
                e.ref,
                (e.sha or "-")[:SHORT_SHA],
                "flaky" if e.flaky else "",
                str(e.attempts),
            ]
            for e in entries
        ],
        right=(4, 8),  # duration, attempts
    )


async def _history(state_dir: Path, test_id: str, limit: int) -> list[HistoryEntry]:
    from parallel_orch import history
    from parallel_orch.store import open_store

    async with open_store(state_dir) as store:
        return await history.executions(store, test_id, limit)


async def _daemon_history(socket: Path, test_id: str, limit: int) -> list[HistoryEntry]:
    from parallel_orch.client import DaemonClient

    async with DaemonClient(socket) as client:
        return await client.history(test_id, limit)


@app.command("flaky")
@handle_errors
def flaky_command(
    sessions: Annotated[
        int,
        typer.Option("--sessions", min=1, max=1000, help="How many of the newest sessions."),
    ] = limits.FLAKY_SESSIONS,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    socket: DaemonSocketOpt = None,
) -> None:
    """Tests ranked by flake rate over recent sessions (retried to pass, or mixed at a commit)."""
    if socket is not None:
        found = run_async(_daemon_flaky, socket, sessions)
    else:
        found = run_async(_flaky, store_dir(repo, state_dir), sessions)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    window = f"the last {found.sessions} session{'s' if found.sessions != 1 else ''}"
    if not found.tests:
        typer.echo(f"no flaky tests in {window}")
        return
    typer.echo(f"flaky tests in {window}")
    _print_columns(
        FLAKY_COLUMNS,
        [
            [
                t.test_id,
                f"{t.flake_rate:.0%}",
                f"{t.flakes}/{t.runs}",
                str(t.flagged),
                str(t.mixed_failures),
                t.last_flake_session,
            ]
            for t in found.tests
        ],
        right=range(1, 5),
    )


async def _flaky(state_dir: Path, sessions: int) -> FlakyTests:
    from parallel_orch import history
    from parallel_orch.store import open_store

    async with open_store(state_dir) as store:
        return await history.flaky(store, sessions)


async def _daemon_flaky(socket: Path, sessions: int) -> FlakyTests:
    from parallel_orch.client import DaemonClient

    async with DaemonClient(socket) as client:
        return await client.flaky(sessions)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_columns(
    header: Sequence[str], rows: list[list[str]], right: Collection[int] = ()
) -> None:
    """Aligned plain columns, as `sessions` prints them: never cut, never padded."""
    for line in columns([list(header), *rows], right=right):
        typer.echo(line)  # plain: never markup, never cut (and no rich to import)
