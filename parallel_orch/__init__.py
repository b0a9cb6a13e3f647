"""parallel-orch: run test plans in parallel, each attempt in its own git worktree."""

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
