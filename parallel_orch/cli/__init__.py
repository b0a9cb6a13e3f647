"""The `parallel-orch` command line (also `python -m parallel_orch`).

:mod:`~.app` holds the app, its shared options and exit codes;
:mod:`~.local` the commands that run here (`run`, `sessions`, `show`);
:mod:`~.history` a test across sessions (`history`, `flaky`);
:mod:`~.remote` the commands that talk to the daemon; :mod:`~.serve` the daemon itself.
"""

from parallel_orch.cli import history, local, remote, serve
from parallel_orch.cli.app import app, exit_code_for

__all__ = ["app", "exit_code_for", "history", "local", "main", "remote", "serve"]


def main() -> None:
    app()
