"""`parallel-orch daemon`: serve the repo on a Unix socket in the foreground."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from parallel_orch.cli.app import (
    ExecutorOpt,
    RepoOpt,
    SchedulerOpt,
    StateDirOpt,
    WorkersOpt,
    app,
    handle_errors,
    make_config,
    run_async,
    setup_logging,
)
from parallel_orch.cli.remote import SocketOpt
from parallel_orch.daemon import paths
from parallel_orch.daemon.paths import GRACE_SECONDS, IDLE_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from parallel_orch.daemon.lifecycle import DaemonOptions


@app.command()
@handle_errors
def daemon(
    socket: SocketOpt = None,
    workers: WorkersOpt = None,
    repo: RepoOpt = None,
    state_dir: StateDirOpt = None,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
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
    from parallel_orch.daemon.lifecycle import DaemonOptions
    from parallel_orch.gitrepo import toplevel

    setup_logging(logging.DEBUG if verbose else logging.INFO)
    config = make_config(
        repo=toplevel(repo) if repo is not None else None,
        num_workers=workers,
        state_dir=state_dir,
        executor=executor,
        dask_scheduler=scheduler,
        socket_path=socket.absolute() if socket is not None else None,
    )
    options = DaemonOptions(
        config=config,
        socket_path=paths.socket_path_for(config),
        resume=resume,
        grace_seconds=grace,
        idle_timeout=idle_timeout,
        own_collector=True,  # this process is the daemon's own
    )
    run_async(_serve, options)


async def _serve(options: DaemonOptions) -> None:
    import functools

    import anyio

    from parallel_orch.cli import heap
    from parallel_orch.daemon.lifecycle import run_daemon

    async with anyio.create_task_group() as tg:
        path = await tg.start(functools.partial(run_daemon, options))
        heap.settled()
        print(path, flush=True)  # alone on its line: supervisors and tests wait for it
