"""The `parallel-orch` command line (also `python -m parallel_orch`).

:mod:`~.app` holds the app, its shared options and exit codes;
:mod:`~.local` the commands that run here (`run`, `sessions`, `show`);
:mod:`~.history` a test across sessions (`history`, `flaky`);
:mod:`~.remote` the commands that talk to the daemon; :mod:`~.serve` the daemon itself.
"""

from parallel_orch.cli import heap, history, local, remote, serve
from parallel_orch.cli.app import app, exit_code_for

__all__ = ["app", "exit_code_for", "history", "local", "main", "remote", "serve"]


def main() -> None:
    """The console script (and ``python -m parallel_orch``): the app, with the garbage
    collector kept out of the command's start-up and exit (see :mod:`~.heap`)."""
    heap.hold()
    try:
        app()
    finally:
        heap.freeze_for_exit()
