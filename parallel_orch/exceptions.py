"""One exception root; each exception's docstring is its default message."""

from __future__ import annotations


class OrchError(Exception):
    """parallel-orch failed."""

    #: CLI exit code for this kind of error (DESIGN §8).
    exit_code: int = 3

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class PlanError(OrchError):
    """The plan is invalid; fix it and run again. Nothing was run."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class UsageError(OrchError):
    """The command line is invalid; see --help."""

    exit_code = 2


class ConfigError(OrchError):
    """The configuration is invalid; check flags, PARALLEL_ORCH_* and [tool.parallel-orch]."""

    exit_code = 2


class RepoError(OrchError):
    """The repository cannot be used; run inside a git repository with at least one commit."""


class RefError(OrchError):
    """The git ref does not resolve to a commit."""


class WorktreeError(OrchError):
    """A worktree could not be prepared; it will be replaced."""


class FleetError(OrchError):
    """The Dask cluster cannot be used; check --scheduler and that the scheduler is up."""


class StoreError(OrchError):
    """The SQLite store cannot be opened or written; check that the state dir is writable."""


class StateDirError(StoreError):
    """A file under the state dir (a log, a JUnit folder) cannot be written; check permissions."""


class DuplicateSubmitError(OrchError):
    """A submit with this idempotency key was already committed."""

    def __init__(self, key: str, session_id: str) -> None:
        super().__init__(f"idempotency key {key!r} already made session {session_id}")
        self.session_id = session_id


class QueueFullError(OrchError):
    """The queue is full; wait with submit_test() or raise max_queue_size."""


class OrchestratorClosedError(OrchError):
    """The orchestrator is not running; use `async with ParallelTestOrchestrator(...)`."""


class SessionNotFoundError(OrchError):
    """No such session; `parallel-orch sessions` lists the known ones."""

    exit_code = 2


class AmbiguousSessionError(SessionNotFoundError):
    """That prefix names several sessions; give more of the id."""


def sole_orch_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first of our errors (or a Ctrl-C) in a task group's exception group, if any:
    what a user is to be told, rather than the group around it."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = sole_orch_error(exc)
            if found is not None:
                return found
        elif isinstance(exc, OrchError | KeyboardInterrupt):
            return exc
    return None
