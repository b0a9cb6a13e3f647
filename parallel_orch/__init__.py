"""parallel-orch: run test plans in parallel, each attempt in its own git worktree.

The names below are imported when first used (see :mod:`parallel_orch.lazy`).
"""

from typing import TYPE_CHECKING

from parallel_orch.lazy import exports

if TYPE_CHECKING:
    from parallel_orch.config import ParallelTestConfig
    from parallel_orch.events import Event, EventType
    from parallel_orch.exceptions import OrchError, PlanError, QueueFullError, RepoError
    from parallel_orch.models import ExecutionStatus, SessionStatus, TestRequest
    from parallel_orch.orchestrator import ParallelTestOrchestrator
    from parallel_orch.plans import load_plans
    from parallel_orch.report import ParallelTestReport
    from parallel_orch.retry import RetryPolicy

__all__ = [
    "Event",
    "EventType",
    "ExecutionStatus",
    "OrchError",
    "ParallelTestConfig",
    "ParallelTestOrchestrator",
    "ParallelTestReport",
    "PlanError",
    "QueueFullError",
    "RepoError",
    "RetryPolicy",
    "SessionStatus",
    "TestRequest",
    "load_plans",
]

__getattr__ = exports(
    __name__,
    {
        "ParallelTestConfig": "parallel_orch.config",
        "Event": "parallel_orch.events",
        "EventType": "parallel_orch.events",
        "OrchError": "parallel_orch.exceptions",
        "PlanError": "parallel_orch.exceptions",
        "QueueFullError": "parallel_orch.exceptions",
        "RepoError": "parallel_orch.exceptions",
        "ExecutionStatus": "parallel_orch.models",
        "SessionStatus": "parallel_orch.models",
        "TestRequest": "parallel_orch.models",
        "ParallelTestOrchestrator": "parallel_orch.orchestrator",
        "load_plans": "parallel_orch.plans",
        "ParallelTestReport": "parallel_orch.report.model",
        "RetryPolicy": "parallel_orch.retry",
    },
)
