"""WorktreePool: repair, preservation and cleanup, checked against `git worktree list`."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
from anyio import wait_all_tasks_blocked

from parallel_orch import ExecutionStatus, ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.executors.local import LocalExecutor
from parallel_orch.worktrees import WorktreePool
from tests.helpers import WAIT_SECONDS, GitRepo, MakeConfig, git, orchestrator


def pool_dirs(config: ParallelTestConfig) -> list[Path]:
    return sorted(p for p in config.resolved_worktree_dir.glob("wt-*") if p.is_dir())


def assert_worktree_list_clean(repo: GitRepo) -> None:
    """Every registered worktree exists, is a working checkout and nothing is prunable."""
    for entry in repo.worktree_list():
        assert "prunable" not in entry, entry
        path = Path(entry["worktree"])
        assert path.is_dir(), entry
        assert (path / ".git").exists(), entry


async def run_ok(config: ParallelTestConfig, count: int = 2) -> list[str]:
    """Run ``count`` passing tests; the worktrees they ran in."""
    requests = [TestRequest(id=f"t{n}", command="test -f README.md") for n in range(count)]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.status == SessionStatus.COMPLETE, [t.error for t in report.completed_tests]
    return [t.attempts[-1].worktree for t in report.completed_tests]


async def fill_pool(config: ParallelTestConfig, barrier: Path) -> list[Path]:
    """Run one test per worker, all at once, so the pool holds num_workers worktrees."""
    await anyio.Path(barrier).mkdir()
    wait = (
        f'touch {barrier}/"$PARALLEL_ORCH_WORKER"; '
        f"while [ $(ls {barrier} | wc -l) -lt {config.num_workers} ]; do sleep 0.01; done"
    )
    requests = [TestRequest(id=f"t{n}", command=wait) for n in range(config.num_workers)]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.status == SessionStatus.COMPLETE, [t.error for t in report.completed_tests]
    used = sorted(Path(t.attempts[0].worktree) for t in report.completed_tests)
    assert pool_dirs(config) == used
    return used


async def test_worktrees_live_outside_the_repo_and_are_reused(
    repo: GitRepo, config: ParallelTestConfig, outside: Path
) -> None:
    """Pooled worktrees sit in the configured dir, registered in git; a second run reuses them."""
    first = await fill_pool(config, outside / "barrier")
    assert len(first) == config.num_workers
    registered = {Path(e["worktree"]) for e in repo.worktree_list()}
    assert set(first) <= registered
    assert all(p.parent == config.resolved_worktree_dir for p in first)
    assert all(not p.is_relative_to(repo.path) for p in first)
    used = {Path(p) for p in await run_ok(config, count=4)}
    assert used & set(first)  # reused, not made afresh
    assert set(first) <= set(pool_dirs(config))
    assert used <= set(pool_dirs(config))
    assert len(pool_dirs(config)) <= config.num_workers + config.spare_worktrees
    assert_worktree_list_clean(repo)


async def test_next_run_repairs_a_deleted_worktree_and_a_stale_lock(
    repo: GitRepo, config: ParallelTestConfig, outside: Path
) -> None:
    """A worktree dir deleted behind the pool's back and a killed git's index.lock are repaired."""
    deleted, locked = await fill_pool(config, outside / "barrier")
    shutil.rmtree(deleted)  # still registered in .git/worktrees
    gitdir = Path(repo.git("-C", str(locked), "rev-parse", "--absolute-git-dir"))
    (gitdir / "index.lock").write_text("")  # as a git killed mid-checkout leaves it
    (locked / "README.md").unlink()  # so the next checkout has to write the index
    assert any(Path(e["worktree"]) == deleted for e in repo.worktree_list())

    await run_ok(config, count=4)

    assert_worktree_list_clean(repo)
    assert not (gitdir / "index.lock").exists()
    assert deleted not in {Path(e["worktree"]) for e in repo.worktree_list()}
    assert (locked / "README.md").is_file()


async def test_worktree_deleted_during_a_run_is_replaced(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """A test that deletes its own worktree does not break the next attempt there."""
    requests = [
        TestRequest(id="vandal", command='rm -rf "$PARALLEL_ORCH_WORKTREE"', priority=1),
        TestRequest(id="after", command="test -f README.md && git status --short"),
    ]
    async with orchestrator(make_config(num_workers=1)) as orch:
        report = await orch.run_tests(requests)
    results = {t.test_id: t for t in report.completed_tests}
    assert results["after"].status == ExecutionStatus.PASSED, results["after"]
    assert results["after"].attempts[0].worktree == results["vandal"].attempts[0].worktree
    assert_worktree_list_clean(repo)


async def test_orphan_directories_in_the_pool_dir_are_removed(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """A wt-* dir git does not know about (a crashed creation) is removed at start."""
    config.resolved_worktree_dir.mkdir(parents=True)
    orphan = config.resolved_worktree_dir / "wt-deadbeef"
    (orphan / "half").mkdir(parents=True)
    unrelated = config.resolved_worktree_dir / "notes"
    unrelated.mkdir()
    await run_ok(config)
    assert not orphan.exists()
    assert unrelated.is_dir()  # only the pool's own names are touched
    assert_worktree_list_clean(repo)


async def test_preserve_failed_worktrees_keeps_the_failure_locked_on_disk(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """preserve_failed_worktrees: a failed attempt's worktree stays on disk, locked in git."""
    config = make_config(num_workers=1, preserve_failed_worktrees=True)
    requests = [
        TestRequest(id="fails", command="echo evidence > evidence.txt; exit 1", priority=1),
        TestRequest(id="passes", command="test ! -e evidence.txt"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    results = {t.test_id: t for t in report.completed_tests}
    failed_at = Path(results["fails"].attempts[0].worktree)
    assert results["passes"].status == ExecutionStatus.PASSED
    assert Path(results["passes"].attempts[0].worktree) != failed_at
    assert (failed_at / "evidence.txt").read_text() == "evidence\n"
    entry = next(e for e in repo.worktree_list() if Path(e["worktree"]) == failed_at)
    assert "fails" in entry.get("locked", "")
    assert report.session_id in entry.get("locked", "")

    # A later orchestrator leaves the preserved worktree alone.
    await run_ok(config)
    assert (failed_at / "evidence.txt").is_file()
    locked = [e for e in repo.worktree_list() if "locked" in e]
    assert [Path(e["worktree"]) for e in locked] == [failed_at]


async def test_cleanup_on_completion_removes_the_worktrees(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """With cleanup_on_completion the pool's worktrees are gone from disk and git at exit."""
    config = make_config(cleanup_on_completion=True)
    used = await run_ok(config, count=3)
    assert used
    assert pool_dirs(config) == []
    assert [Path(e["worktree"]) for e in repo.worktree_list()] == [repo.path]


async def test_without_cleanup_worktrees_stay_for_the_next_run(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """By default worktrees survive the orchestrator, warm for the next run."""
    used = {Path(p) for p in await run_ok(config)}
    assert used <= set(pool_dirs(config))
    assert_worktree_list_clean(repo)


async def test_two_orchestrators_never_share_a_worktree(
    repo: GitRepo, config: ParallelTestConfig, tmp_path: Path, make_config: MakeConfig
) -> None:
    """Two live orchestrators on one repo and pool dir lease disjoint worktrees."""
    other_config = make_config(state_dir=tmp_path / "state2")
    request = [TestRequest(id="t", command="true")]
    async with orchestrator(config) as first, orchestrator(other_config) as second:
        one = await first.run_tests(request)
        two = await second.run_tests(request)
        assert isinstance(first.executor, LocalExecutor)
        assert isinstance(second.executor, LocalExecutor)
        assert {w.path for w in first.executor.pool.worktrees}.isdisjoint(
            w.path for w in second.executor.pool.worktrees
        )
    assert (
        one.completed_tests[0].attempts[0].worktree != two.completed_tests[0].attempts[0].worktree
    )
    assert_worktree_list_clean(repo)


async def test_a_lease_prefers_a_worktree_already_at_the_wanted_commit(
    repo: GitRepo, config: ParallelTestConfig, outside: Path
) -> None:
    """With worktrees at two commits, a request gets the one already checked out at its commit."""
    old = repo.head()
    new = repo.commit({"v2.txt": "2\n"})
    barrier = (
        f"touch {outside}/$PARALLEL_ORCH_SHA; "
        f"while [ $(ls {outside} | wc -l) -lt 2 ]; do sleep 0.02; done"
    )
    async with orchestrator(config) as orch:
        both = await orch.run_tests(
            [
                TestRequest(id="old", command=barrier, ref=old),
                TestRequest(id="new", command=barrier, ref=new),
            ]
        )
        where = {t.sha: t.attempts[0].worktree for t in both.completed_tests}
        assert len(set(where.values())) == 2  # both ran at once, in two worktrees
        for sha in (new, old, new):
            report = await orch.run_tests([TestRequest(id="t", command="true", ref=sha)])
            assert report.completed_tests[0].attempts[0].worktree == where[sha]


async def test_a_retry_goes_to_another_worktree_when_one_can_be_had(
    config: ParallelTestConfig, outside: Path
) -> None:
    """A failed attempt's retry runs in a different worktree when the pool has room for one."""
    counter = outside / "n"
    flaky = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]"
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="flaky", command=flaky, retries=1)])
    first, second = report.completed_tests[0].attempts
    assert (first.status, second.status) == ("failed", "passed")
    assert first.worktree != second.worktree


async def test_no_worktree_is_ever_leased_twice_at_once(
    repo: GitRepo, make_config: MakeConfig, outside: Path
) -> None:
    """Under load (many short tests, retries, 4 workers) a worktree runs one attempt at a time."""
    config = make_config(num_workers=4)
    # mkdir is atomic: it fails if another attempt holds the same worktree right now.
    hold = (
        f'd={outside}/$(basename "$PARALLEL_ORCH_WORKTREE"); mkdir "$d" || exit 99; '
        'sleep 0.01; rmdir "$d"; [ $((RANDOM % 4)) -ne 0 ]'
    )
    requests = [TestRequest(id=f"t{n}", command=hold, retries=3) for n in range(40)]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    exit_codes = {a.exit_code for t in report.completed_tests for a in t.attempts}
    assert 99 not in exit_codes
    assert report.total_tests == 40
    used = {a.worktree for t in report.completed_tests for a in t.attempts}
    assert len(used) <= config.num_workers + config.spare_worktrees
    assert_worktree_list_clean(repo)


async def test_a_deleted_preserved_worktree_leaves_no_registration_behind(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """A preserved (locked) worktree deleted after inspection is pruned by the next run."""
    config = make_config(num_workers=1, preserve_failed_worktrees=True)
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="fails", command="false")])
    preserved = Path(report.completed_tests[0].attempts[0].worktree)
    assert any("locked" in e for e in repo.worktree_list())
    shutil.rmtree(preserved)  # the user is done inspecting it

    await run_ok(config)

    assert preserved not in {Path(e["worktree"]) for e in repo.worktree_list()}
    assert_worktree_list_clean(repo)


async def test_a_pooled_worktree_deleted_by_hand_is_pruned_by_the_next_run(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """A pooled worktree's folder removed by hand: the next run drops its registration
    (a run prunes only when the listing shows something to prune) and runs as usual."""
    config = make_config(num_workers=1)
    await run_ok(config)
    pooled = [Path(e["worktree"]) for e in repo.worktree_list() if "wt-" in e["worktree"]]
    assert pooled
    shutil.rmtree(pooled[0])

    await run_ok(config)

    assert pooled[0] not in {Path(e["worktree"]) for e in repo.worktree_list()}
    assert_worktree_list_clean(repo)


async def test_a_worktree_without_its_git_link_is_replaced_not_resolved_upwards(
    repo: GitRepo, make_config: MakeConfig, tmp_path: Path
) -> None:
    """A test deleting its worktree's `.git` never makes git act on a checkout around the pool."""
    outer = GitRepo(tmp_path / "outer")
    repo.git("clone", "--quiet", str(repo.path), str(outer.path))
    outer.write({"README.md": "precious local edit\n"})
    outer_head = outer.head()
    config = make_config(num_workers=1, worktree_base_dir=outer.path / "pool")
    requests = [
        TestRequest(id="unlink", command="rm .git", priority=1),
        TestRequest(id="after", command="test -f .git && test -f README.md"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.status == SessionStatus.COMPLETE, [t.error for t in report.completed_tests]
    assert (outer.path / "README.md").read_text() == "precious local edit\n"
    assert outer.head() == outer_head
    assert_worktree_list_clean(repo)


async def test_a_released_worktree_is_scrubbed_at_once_not_at_its_next_lease(
    repo: GitRepo, tmp_path: Path
) -> None:
    """Given a task group, the pool cleans a released worktree right away, sparing its `keep`."""
    pool = WorktreePool(repo.path, tmp_path / "pool", capacity=1)
    await pool.open()
    async with anyio.create_task_group() as tg:
        pool.work_in(tg)
        wt = await pool.lease(repo.head(), keep=("cache/",))
        (wt.path / "README.md").unlink()
        (wt.path / "junk.txt").write_text("junk\n")
        (wt.path / "cache").mkdir()
        (wt.path / "cache" / "data").write_text("warm\n")
        await pool.release(wt)
        assert wt.scrubbing is not None
        await wt.scrubbing.wait()

        assert git(wt.path, "status", "--porcelain", "--ignored") == "?? cache/"
        assert (wt.path / "README.md").read_text() == "# demo\n"
        assert wt.ready_for(repo.head(), ("cache/",))
        assert await pool.lease(repo.head(), keep=("cache/",)) is wt
        await pool.release(wt)
    pool.work_in(None)
    await pool.close(remove=True)
    assert [Path(e["worktree"]) for e in repo.worktree_list()] == [repo.path]


async def test_a_lease_that_finds_no_ready_worktree_adds_a_spare(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """One worker alternating two commits grows the pool by `spare_worktrees`, and no further."""
    old = repo.head()
    new = repo.commit({"v2.txt": "2\n"})
    requests = [
        TestRequest(id=f"t{n}", command="true", ref=(old, new)[n % 2], priority=-n)
        for n in range(6)
    ]
    for spares in (1, 0):
        config = make_config(
            num_workers=1, spare_worktrees=spares, worktree_base_dir=repo.path.parent / f"s{spares}"
        )
        async with orchestrator(config) as orch:
            report = await orch.run_tests(requests)
        assert report.status == SessionStatus.COMPLETE
        assert len(pool_dirs(config)) == 1 + spares
    assert_worktree_list_clean(repo)


async def test_a_path_survives_between_attempts_only_when_both_keep_it(
    make_config: MakeConfig, outside: Path
) -> None:
    """What an attempt leaves outside its own `keep` is gone before the next, whatever it keeps."""
    requests = [
        TestRequest(id="a", command="mkdir -p cache && touch cache/a", priority=3),
        TestRequest(
            id="b",
            command="test ! -e cache/a && mkdir -p cache && touch cache/b",
            keep=("cache/",),
            priority=2,
        ),
        TestRequest(id="c", command="test -e cache/b", keep=("cache/",), priority=1),
    ]
    config = make_config(num_workers=1, spare_worktrees=0)
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert {t.test_id: t.status for t in report.completed_tests} == dict.fromkeys("abc", "passed")


async def test_a_lease_cancelled_while_repairing_its_worktree_gives_it_back(
    repo: GitRepo, tmp_path: Path
) -> None:
    """A lease cancelled while it waits to replace a broken worktree leaves it in the pool."""
    pool = WorktreePool(repo.path, tmp_path / "pool", capacity=1)
    await pool.open()
    try:
        wt = await pool.lease(repo.head())
        (wt.path / ".git").unlink()  # what a test may do: git cannot clean this one
        await pool.release(wt)
        # pool._admin held: as if another worktree were being added meanwhile
        async with pool._admin, anyio.create_task_group() as tg:
            tg.start_soon(pool.lease, repo.head())
            await wait_all_tasks_blocked()  # picked it, failed to clean, waits to replace
            tg.cancel_scope.cancel()
        assert pool.status()["leased"] == 0
        with anyio.fail_after(WAIT_SECONDS):
            again = await pool.lease(repo.head())
        assert again is wt
        assert (wt.path / ".git").is_file()
        await pool.release(again)
    finally:
        await pool.close(remove=True)


async def test_a_spare_that_cannot_be_made_is_logged_and_the_run_goes_on(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """With the pool's lock folder gone, adding a spare fails quietly; every test still runs."""
    old = repo.head()
    new = repo.commit({"v2.txt": "2\n"})
    config = make_config(num_workers=1)
    locks = config.resolved_worktree_dir / ".locks"
    requests = [
        TestRequest(id="breaks-locks", command=f"rm -rf {locks}", ref=old, priority=2),
        TestRequest(id="needs-checkout", command="test -f v2.txt", ref=new, priority=1),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert {t.test_id: t.status for t in report.completed_tests} == {
        "breaks-locks": "passed",
        "needs-checkout": "passed",
    }
    assert len(pool_dirs(config)) == 1  # no spare could be made
