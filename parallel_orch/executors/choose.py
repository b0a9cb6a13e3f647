"""The executor a configuration names: this machine's worktree pool, or a Dask fleet."""

from __future__ import annotations

from parallel_orch.config import ParallelTestConfig
from parallel_orch.executors.local import LocalExecutor
from parallel_orch.executors.protocol import Executor


def executor_for(config: ParallelTestConfig) -> Executor:
    """``config.executor``'s executor; Dask is imported only when asked for."""
    if config.executor == "dask":
        from parallel_orch.executors.fleet import DaskExecutor

        return DaskExecutor(
            config,
            scheduler=config.dask_scheduler,
            repo_url=config.dask_repo_url,
            worker_dir=config.dask_worker_dir,
        )
    return LocalExecutor(config)
