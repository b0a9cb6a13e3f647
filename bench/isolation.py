"""Isolation overhead near the git floor.

Trivial tests (``true``) at one commit on 2 workers, on a repo of about
2,000 files, against a shell pipeline that does only the unavoidable work
per test: ``xargs -P2`` where each slot owns a pre-made worktree and runs
``git reset --hard`` + ``git clean -ffdx`` in it, then the same command the
engine runs (``bash -c true``). Both sides are warmed by one untimed pass,
so worktree creation is counted for neither. Rounds alternate the two sides
(AB BA ...); the ratio is of summed walls. CPU (this process, its threads and
every child, on both sides) is printed beside it: on a shared machine it is
the steadier figure.

Target: our wall / baseline wall <= 1.3.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.common import (
    Figure,
    Span,
    bench_main,
    fmt_spans,
    fresh_dir,
    git,
    init_repo,
    measure,
    median,
    note,
    run_shell,
)
from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, RetryPolicy, TestRequest

WORKERS = 2
TARGET_RATIO = 1.3

#: One test's unavoidable work: make the slot's worktree clean at the commit, then run the test.
BASELINE_SCRIPT = (
    "xargs -P {workers} -n 1 --process-slot-var=BENCH_SLOT "
    'sh -c \'wt="$BENCH_BASE/wt$BENCH_SLOT"; '
    'git -C "$wt" reset -q --hard "$BENCH_SHA" && git -C "$wt" clean -ffdxq && bash -c true\' sh'
)


def requests(count: int, sha: str) -> list[TestRequest]:
    return [TestRequest(id=f"trivial-{i:04d}", command="true", ref=sha) for i in range(count)]


async def measure_sides(
    repo: Path, work: Path, sha: str, tests: int, rounds: int, *, check: bool = True
) -> tuple[list[Span], list[Span]]:
    """Rounds of ours and the baseline, in AB BA order against drift; each side's spans.

    :param check: warn when a report does not show every test passed.
    """
    base = work / "baseline-worktrees"
    base.mkdir(parents=True)
    for slot in range(WORKERS):
        git(repo, "worktree", "add", "-q", "--detach", str(base / f"wt{slot}"), sha)
    baseline_env = {"BENCH_BASE": str(base), "BENCH_SHA": sha}
    script = BASELINE_SCRIPT.format(workers=WORKERS)
    stdin = "".join(f"{i}\n" for i in range(tests))

    config = ParallelTestConfig(
        repo=repo,
        num_workers=WORKERS,
        state_dir=work / "state",
        worktree_base_dir=work / "worktrees",
    )
    ours: list[Span] = []
    baseline: list[Span] = []
    async with ParallelTestOrchestrator(config, retry_policy=RetryPolicy.zero_wait()) as orch:

        async def run_ours() -> None:
            with measure() as span:
                report = await orch.run_tests(requests(tests, sha))
            ours.append(span)
            if check and report.tests_passed != tests:
                note(f"warning: {report.tests_passed} of {tests} passed")

        async def run_baseline() -> None:
            with measure() as span:
                _, code = await anyio.to_thread.run_sync(
                    lambda: run_shell(script, cwd=repo, env=baseline_env, stdin=stdin)
                )
            baseline.append(span)
            if code != 0:
                note(f"warning: the baseline exited {code}")

        # Warm both sides, untimed: the pool creates its worktrees, the page cache fills.
        await run_ours()
        await run_baseline()
        ours.clear()
        baseline.clear()
        for index in range(rounds):
            for side in (run_ours, run_baseline) if index % 2 == 0 else (run_baseline, run_ours):
                await side()
    return ours, baseline


def per_test(spans: list[Span], tests: int) -> str:
    return f"{median([s.wall for s in spans]) / tests * 1000:.1f} ms/test"


def run(quick: bool) -> list[Figure]:
    files, tests, rounds = (500, 100, 2) if quick else (2_000, 300, 4)
    work = fresh_dir("isolation")
    repo = work / "repo"
    sha = init_repo(repo, files)
    note(
        f"repo: {files} files, 1 commit; {tests} tests of `true`, {WORKERS} workers, "
        f"{rounds} rounds"
    )
    ours, baseline = anyio.run(measure_sides, repo, work, sha, tests, rounds)
    ratio = sum(s.wall for s in ours) / sum(s.wall for s in baseline)
    cpu_ratio = sum(s.cpu for s in ours) / sum(s.cpu for s in baseline)
    note(f"parallel-orch run_tests : {fmt_spans(ours)}  ({per_test(ours, tests)})")
    note(f"xargs reset+clean+true  : {fmt_spans(baseline)}  ({per_test(baseline, tests)})")
    rounds_text = ", ".join(f"{o.wall / b.wall:.2f}" for o, b in zip(ours, baseline, strict=True))
    note(f"wall ratio per round    : {rounds_text}")
    return [
        Figure(
            "isolation: ours / xargs reset+clean, wall",
            ratio,
            target=f"<= {TARGET_RATIO}",
            met=ratio <= TARGET_RATIO,
        ),
        Figure("isolation: ours / xargs reset+clean, CPU", cpu_ratio),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("isolation overhead near the git floor", run, argv)


if __name__ == "__main__":
    main()
