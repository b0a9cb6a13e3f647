"""What an attempt leaves in the store and on disk while it runs and once it ends."""

from __future__ import annotations

from pathlib import Path

import anyio

from parallel_orch import ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.settle import PROCESS_RECORD_SECONDS
from tests.helpers import GitRepo, MakeConfig, make_fifo, orchestrator, process_alive, read_fifo


async def test_a_long_attempt_has_its_process_recorded_while_it_runs(
    config: ParallelTestConfig, outside: Path
) -> None:
    """An attempt still running after a moment has its pid and pgid in the store already."""
    started = make_fifo(outside / "started")
    release = outside / "release"
    command = f"echo $$ > {started}; while [ ! -e {release} ]; do sleep 0.05; done"
    async with orchestrator(config) as orch, anyio.create_task_group() as tg:
        tg.start_soon(orch.run_tests, [TestRequest(id="long", command=command)])
        pid = int(await read_fifo(started))
        await anyio.sleep(PROCESS_RECORD_SECONDS * 5)
        (session,) = await orch.store.sessions_with_status(SessionStatus.RUNNING)
        (attempt,) = await orch.store.attempts(session.id)
        release.touch()
    assert not process_alive(pid)
    assert attempt.completed_at is None  # read while it ran
    assert (attempt.pid, attempt.pgid) == (pid, pid)


async def test_no_scratch_folder_outlives_the_run(
    repo: GitRepo, config: ParallelTestConfig, outside: Path
) -> None:
    """Filled, removed or untouched by its test, TEST_TMPDIR's folder is gone once the run
    ends (each attempt finding it empty is the next test's)."""
    seen = outside / "tmpdirs"
    fill = f'echo "$TEST_TMPDIR" >> {seen}; mkdir -p "$TEST_TMPDIR/a" && touch "$TEST_TMPDIR/a/f"'
    requests = [
        TestRequest(id="full", command=fill),
        TestRequest(id="emptied", command=f'echo "$TEST_TMPDIR" >> {seen}; rmdir "$TEST_TMPDIR"'),
        TestRequest(id="untouched", command=f'echo "$TEST_TMPDIR" >> {seen}'),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.tests_passed == 3
    tmpdirs = [Path(line) for line in seen.read_text().splitlines()]
    assert len(tmpdirs) == 3
    for tmp in tmpdirs:
        assert not tmp.parent.exists(), tmp  # the attempt's scratch folder, TEST_TMPDIR's parent


async def test_each_attempt_starts_with_an_empty_scratch_even_after_one_filled_it(
    make_config: MakeConfig, outside: Path
) -> None:
    """A worker's attempts, across sessions, share one scratch folder, each finding it empty."""
    seen = outside / "seen"
    look = f'echo "$TEST_TMPDIR $(ls -A "$TEST_TMPDIR" "$TEST_TMPDIR/.." | tr "\\n" " ")" >> {seen}'
    fill = f'{look}; mkdir "$TEST_TMPDIR/a" && touch "$TEST_TMPDIR/a/f" "$TEST_TMPDIR/../left"'
    requests = [TestRequest(id=f"t{n}", command=fill, priority=-n) for n in range(3)]
    async with orchestrator(make_config(num_workers=1)) as orch:
        first = await orch.run_tests(requests)
        second = await orch.run_tests(requests[:1])
    assert first.tests_passed == 3 and second.tests_passed == 1
    lines = seen.read_text().splitlines()
    assert len(lines) == 4
    for line in lines:  # nothing in TEST_TMPDIR, nothing beside it
        path, *listed = line.split()
        assert listed == [f"{path}:", f"{path}/..:", "tmp"], line
    (tmp,) = {Path(line.split()[0]) for line in lines}
    assert not tmp.parent.exists()  # gone with its worker
