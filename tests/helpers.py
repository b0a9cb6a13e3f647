"""Helpers shared by the test suite: a real git repo, process checks, event recording."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
from anyio import wait_all_tasks_blocked

from parallel_orch import (
    Event,
    ParallelTestConfig,
    ParallelTestOrchestrator,
    RetryPolicy,
    TestRequest,
)
from parallel_orch.store import NewExecution, Store

#: How long a test waits for something a command or the engine signals, at most.
WAIT_SECONDS = 30.0

#: The report's JSON keys that DESIGN §6 and the issue fix (``tests_interrupted`` counts
#: the §4 status beside §6's list, so that every execution status has its count).
REPORT_KEYS = {
    "session_id",
    "status",
    "started_at",
    "completed_at",
    "duration_seconds",
    "total_tests",
    "tests_passed",
    "tests_failed",
    "tests_timed_out",
    "tests_errored",
    "tests_skipped",
    "tests_cancelled",
    "tests_interrupted",
    "tests_flaky",
    "tests_leaky",
    "success_rate",
    "num_workers",
    "categories",
    "duration_stats",
    "speedup",
    "worker_utilisation",
    "slowest_tests",
    "completed_tests",
    "failed_tests",
    "report_hash",
    "cases",
}


#: Files every test repo starts with; ``build/`` and ``*.log`` are ignored.
BASE_FILES: Mapping[str, str] = {
    "README.md": "# demo\n",
    "src/app.py": "print('hello')\n",
    ".gitignore": "build/\n*.log\n",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; its stdout, stripped. Raises on a non-zero exit."""
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


class GitRepo:
    """A real git repository in a temp dir."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def write(self, files: Mapping[str, str]) -> None:
        for rel, content in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)

    def commit(self, files: Mapping[str, str], message: str = "change") -> str:
        """Write ``files``, commit them on the current branch; the new commit's SHA."""
        self.write(files)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", f"{ref}^{{commit}}")

    def branch(self, name: str, files: Mapping[str, str], message: str = "branch") -> str:
        """Create branch ``name`` with one more commit, then return to the current branch."""
        current = self.git("rev-parse", "--abbrev-ref", "HEAD")
        self.git("switch", "--quiet", "-c", name)
        sha = self.commit(files, message)
        self.git("switch", "--quiet", current)
        return sha

    def worktree_list(self) -> list[dict[str, str]]:
        """``git worktree list --porcelain`` as one dict per entry."""
        entries: list[dict[str, str]] = []
        current: dict[str, str] = {}
        for line in [*self.git("worktree", "list", "--porcelain").splitlines(), ""]:
            if not line:
                if current:
                    entries.append(current)
                current = {}
                continue
            key, _, value = line.partition(" ")
            current[key] = value
        return entries


def make_git_repo(path: Path, files: Mapping[str, str] | None = None) -> GitRepo:
    """``git init`` at ``path`` with ``files`` (default :data:`BASE_FILES`) committed on main."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    repo = GitRepo(path)
    repo.commit(BASE_FILES if files is None else files, "initial")
    return repo


#: ``make_repo(name="repo", files=None)``, the fixture's factory.
MakeRepo = Callable[..., GitRepo]
#: ``make_config(**overrides)``, the fixture's factory.
MakeConfig = Callable[..., ParallelTestConfig]


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its new parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def orchestrator(
    config: ParallelTestConfig, policy: RetryPolicy | None = None
) -> ParallelTestOrchestrator:
    """An orchestrator that retries at once (use as ``async with``)."""
    return ParallelTestOrchestrator(config, retry_policy=policy or RetryPolicy.zero_wait())


async def wait_exited(pid: int) -> None:
    """Until ``pid`` (not necessarily our child) has exited: its pidfd turns readable then."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with anyio.fail_after(WAIT_SECONDS):
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def make_fifo(path: Path) -> Path:
    """A named pipe at ``path``: a command writes to it, the test waits for the write."""
    os.mkfifo(path)
    return path


async def read_fifo(fifo: Path) -> str:
    """What a command wrote to ``fifo``, waiting (off the event loop) until it has written."""
    with anyio.fail_after(WAIT_SECONDS):
        return await anyio.to_thread.run_sync(fifo.read_text, abandon_on_cancel=True)


class Recorder:
    """Events seen so far, and a way to wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = anyio.Event()

    def add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[Event], bool]) -> Event:
        """The first event (seen or to come) matching ``predicate``."""
        with anyio.fail_after(WAIT_SECONDS):
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                await self._changed.wait()


@asynccontextmanager
async def recording(orch: ParallelTestOrchestrator) -> AsyncIterator[Recorder]:
    """Collect every event ``orch`` publishes while the block runs.

    The subscription is in place when the block starts: the collector has
    reached its first wait on the stream.
    """
    recorder = Recorder()

    async def collect() -> None:
        async for event in orch.events():
            recorder.add(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await wait_all_tasks_blocked()
        yield recorder
        tg.cancel_scope.cancel()


def _is_stopped(pid: int) -> bool:
    """Whether ``pid`` is in the stopped state now (or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """``pid`` stopped for the block (as a busy machine delays it); continued after 5 s at the
    latest, a blocked loop's way out. The block starts once it has stopped: a signal takes
    effect when its process next runs, which a loaded machine can put off."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5.0
    while not _is_stopped(pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    rescue = threading.Timer(5.0, os.kill, (pid, signal.SIGCONT))
    rescue.start()
    try:
        yield
    finally:
        rescue.cancel()
        os.kill(pid, signal.SIGCONT)


async def one_test_session(
    store: Store,
    session_id: str,
    key: str | None = None,
    then: Callable[[list[int]], None] | None = None,
) -> list[int]:
    """Store session ``session_id`` with one request (``SESSION::t``); its execution ids."""
    request = TestRequest(id=f"{session_id}::t", command="true")
    return await store.create_session(
        session_id,
        num_workers=1,
        repo="/r",
        plan_paths=(),
        plan_key="k",
        owner="me",
        executions=[NewExecution(request=request, sha="a" * 40)],
        idempotency_key=key,
        then=then,
    )
