"""Refs are values, never git options: a hostile ref is an error for its request alone."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from parallel_orch import ExecutionStatus, ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.exceptions import RefError
from parallel_orch.gitrepo import RefResolver
from tests.e2e.cli import run_cli
from tests.e2e.conftest import write_plan
from tests.helpers import GitRepo, orchestrator, stopped

HOSTILE = ("--all", "-h", "--git-dir=/", "--output={out}")


async def test_refs_that_look_like_options_are_errors_and_cost_the_pool_nothing(
    config: ParallelTestConfig, repo: GitRepo, tmp_path: Path
) -> None:
    """--all, -h, --output=FILE as refs: each request ends error; the pool keeps its worktrees."""
    out = tmp_path / "written-by-git"
    refs = [ref.format(out=out) for ref in HOSTILE]
    requests = [TestRequest(id=f"t{i}", command="true", ref=ref) for i, ref in enumerate(refs)]
    requests.append(TestRequest(id="fine", command="true"))
    async with orchestrator(config) as orch:
        for _ in range(2):
            report = await orch.run_tests(requests)
            registered = len(repo.worktree_list())
            assert report.status == SessionStatus.PARTIAL_SUCCESS
            results = {r.test_id: r for r in report.completed_tests}
            assert results.pop("fine").status == ExecutionStatus.PASSED
            for result, ref in zip(results.values(), refs, strict=True):
                assert result.status == ExecutionStatus.ERROR
                assert result.error == (
                    f"ref {ref!r} does not resolve to a commit: a ref never starts with '-'"
                )
                assert result.attempts == ()  # never queued, never given a worktree
    assert not out.exists()
    assert registered == len(repo.worktree_list()) >= 2  # the main one and the pool's


def test_run_with_an_option_as_ref_says_so_in_one_line(repo: GitRepo) -> None:
    """`run --ref=--all` fails its test with a clear error and no traceback."""
    write_plan(repo.path, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    result = run_cli(["run", "plans", "--ref=--all"], cwd=repo.path)
    assert result.returncode == 1, result.stderr
    assert "ref '--all' does not resolve to a commit: a ref never starts with '-'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


async def test_a_long_running_orchestrator_resolves_refs_as_they_are_now(
    config: ParallelTestConfig, repo: GitRepo
) -> None:
    """Commits, branches and tags made after the orchestrator started are what refs name."""
    async with orchestrator(config) as orch:
        first = await orch.run_tests([TestRequest(id="t", command="true", ref="main")])
        moved = repo.commit({"later.txt": "later\n"})
        repo.git("tag", "v-later")
        branched = repo.branch("side", {"side.txt": "side\n"})
        second = await orch.run_tests(
            [
                TestRequest(id="main", command="true", ref="main"),
                TestRequest(id="tag", command="true", ref="v-later"),
                TestRequest(id="side", command="true", ref="side"),
                TestRequest(id="short", command="true", ref=moved[:12]),
            ]
        )
    assert first.completed_tests[0].sha != moved
    shas = {r.test_id: r.sha for r in second.completed_tests}
    assert shas == {"main": moved, "tag": moved, "side": branched, "short": moved}


async def test_a_ref_that_names_no_commit_gets_gits_reason_even_after_its_resolver_died(
    config: ParallelTestConfig, repo: GitRepo
) -> None:
    """A missing ref, a tree, and a ref after the lookup process was killed: as rev-parse says."""
    async with orchestrator(config) as orch:
        requests = [
            TestRequest(id="gone", command="true", ref="no-such-branch"),
            TestRequest(id="tree", command="true", ref="HEAD^{tree}"),
            TestRequest(id="fine", command="true"),
        ]
        before = await orch.run_tests(requests)
        lookups = _children_running("cat-file")
        assert len(lookups) == 1  # one long-running lookup process, not one per session
        os.kill(lookups[0], signal.SIGKILL)  # as a Ctrl-C to the process group would
        after = await orch.run_tests(requests)
    for report in (before, after):
        results = {r.test_id: r for r in report.completed_tests}
        assert results["fine"].sha == repo.head()
        assert results["gone"].status == ExecutionStatus.ERROR
        assert results["gone"].error is not None
        assert results["gone"].error.startswith("ref 'no-such-branch' does not resolve to a commit")
        assert results["tree"].status == ExecutionStatus.ERROR


def _children_running(word: str) -> list[int]:
    """Pids of this process's children whose command line has ``word``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and word.encode() in argv:
            found.append(int(entry.name))
    return found


async def test_plain_names_are_answered_at_once_and_anything_git_must_work_out_is_not(
    repo: GitRepo,
) -> None:
    """The daemon's quick lookup answers names and ids from the running ``cat-file``, sees a
    branch made since, and leaves walks, searches, unknown names and a lookup already in
    progress to the full one (in a thread), which says why a ref is bad."""
    resolver = RefResolver(repo.path)
    try:
        assert await resolver.resolve_soon(["HEAD"]) is None  # no cat-file running yet
        head = repo.head()
        assert resolver.resolve(["HEAD"]) == {"HEAD": head}
        feature = repo.branch("feature", {"f.txt": "f\n"})  # made after cat-file started
        assert await resolver.resolve_soon(["HEAD", "main", "feature", head]) == {
            "HEAD": head,
            "main": head,
            "feature": feature,
            head: head,
        }
        for slow in (["HEAD~0"], [":/initial"], ["main@{0}"], ["HEAD", "feature^"]):
            assert await resolver.resolve_soon(slow) is None
        assert await resolver.resolve_soon(["no-such-branch"]) is None
        (error,) = resolver.resolve(["no-such-branch"]).values()
        assert isinstance(error, RefError) and "no-such-branch" in str(error)
        with resolver._lock:  # a thread's lookup in progress: no waiting for it on the loop
            assert await resolver.resolve_soon(["HEAD"]) is None
        assert await resolver.resolve_soon(["feature"]) == {"feature": feature}
    finally:
        resolver.close()


def _cat_file_pid(resolver: RefResolver) -> int:
    """Start the resolver's ``cat-file`` (one lookup); its pid."""
    resolver.resolve(["HEAD"])
    assert resolver._proc is not None
    return resolver._proc.pid


def _state(pid: int) -> str:
    """A process's state letter from ``/proc`` (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def test_a_lookup_waits_for_cat_file_without_holding_up_the_loop(repo: GitRepo) -> None:
    """While ``cat-file`` cannot answer (stopped here, as a busy machine delays it), the event
    loop keeps serving its other tasks; the answer comes once it runs again."""
    resolver = RefResolver(repo.path)
    try:
        head = repo.head()
        pid = _cat_file_pid(resolver)
        found = {}
        async with anyio.create_task_group() as tg:

            async def look_up() -> None:
                found.update(await resolver.resolve_soon(["HEAD"]) or {})

            with stopped(pid):
                tg.start_soon(look_up)
                for _ in range(10):  # the loop turns while the lookup waits
                    await anyio.sleep(0.01)
                still_stopped = _state(pid) == "T"
        assert still_stopped, "the loop was held up until cat-file ran again"
        assert found == {"HEAD": head}
    finally:
        resolver.close()


async def test_a_lookup_cancelled_mid_answer_leaves_no_answer_for_the_next(repo: GitRepo) -> None:
    """A submit cancelled while ``cat-file`` is answering does not leave that answer to be read
    as the next lookup's: the next lookup starts it afresh and names the right commit."""
    resolver = RefResolver(repo.path)
    try:
        head = repo.head()
        feature = repo.branch("feature", {"f.txt": "f\n"})
        with stopped(_cat_file_pid(resolver)), anyio.move_on_after(0.05):
            await resolver.resolve_soon(["HEAD"])
        assert await resolver.resolve_soon(["feature"]) is None  # out of step: not asked
        assert resolver.resolve(["feature"]) == {"feature": feature}
        assert await resolver.resolve_soon(["HEAD", "feature"]) == {
            "HEAD": head,
            "feature": feature,
        }
    finally:
        resolver.close()


async def test_work_given_to_do_meanwhile_runs_while_cat_file_thinks(repo: GitRepo) -> None:
    """A lookup's other work (the history read) runs while ``cat-file`` has not answered yet
    (stopped here); when that work fails, its caller gets its error and the unread answer
    is never taken for the next lookup's; a lookup of no refs asks and waits for nothing."""
    resolver = RefResolver(repo.path)
    try:
        head = repo.head()
        feature = repo.branch("feature", {"f.txt": "f\n"})
        pid = _cat_file_pid(resolver)
        ran = anyio.Event()

        async def meanwhile() -> None:
            ran.set()

        found: dict[str, object] = {}
        async with anyio.create_task_group() as tg:

            async def look_up() -> None:
                found.update(await resolver.resolve_soon(["HEAD"], meanwhile=meanwhile) or {})

            with stopped(pid):
                tg.start_soon(look_up)
                with anyio.fail_after(2):
                    await ran.wait()
                still_stopped = _state(pid) == "T"
        assert still_stopped and found == {"HEAD": head}

        async def fails() -> None:
            raise OSError("the disk said no")  # as cat-file's own failures are, but its own

        with pytest.raises(OSError, match="the disk said no"):
            await resolver.resolve_soon(["HEAD"], meanwhile=fails)
        assert resolver.resolve(["feature"]) == {"feature": feature}  # not HEAD's answer
        with anyio.fail_after(2):  # nothing to ask: no wait for an answer that never comes
            assert await resolver.resolve_soon([], meanwhile=meanwhile) == {}
    finally:
        resolver.close()
