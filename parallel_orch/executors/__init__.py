"""Executors: where and how attempts run, behind :class:`~.protocol.Executor`.

:mod:`~.local` runs them in this machine's worktree pool.
"""

from parallel_orch.executors.protocol import (
    AttemptHooks,
    AttemptResult,
    AttemptSpec,
    Executor,
    Placement,
)

__all__ = ["AttemptHooks", "AttemptResult", "AttemptSpec", "Executor", "Placement"]
