"""Isolation overhead near the git floor, inside one process and through the CLI.

Trivial tests (``true``) at one commit on 2 workers, on a repo of about
2,000 files, against shell that does only the unavoidable work per test in
a pre-made worktree per worker: ``git reset --hard`` + ``git clean -ffdx``,
then the same command the engine runs (``bash -c true``). Two comparisons,
each warmed by one untimed pass of every side (worktree creation is counted
for none), each in rounds that alternate the order of its sides:

1. The engine inside this process (``run_tests``) against ``xargs -P2``
   where each slot owns a worktree (``--process-slot-var``).
2. **The CLI as a user runs it**: ``parallel-orch run`` of a plan of the
   tests, a new process timed from start to exit (its imports, plan loading,
   store and report included), against two shell loops, one per worktree,
   each doing its half of the tests. In both environments: with
   ``PYTHONDONTWRITEBYTECODE=1`` (as these machines set it) and without.

Ratios are of summed walls. CPU (this process, its threads and every child,
on both sides) is printed beside them: on a shared machine it is the
steadier figure.

Targets: our wall / baseline wall <= 1.3, for both.

``--cli-only`` runs the second comparison alone; ``--checkout LABEL=PATH``
(repeatable) runs its CLI side once per checkout, each importing its own
package first (``PYTHONPATH``), all in the same alternating rounds: two
versions side by side in one run, against the same shell loops.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio

from bench.cli_process import package_bytecode, python_envs, run_cli
from bench.common import (
    Figure,
    Span,
    autogroup_note,
    fmt_spans,
    fresh_dir,
    git,
    init_repo,
    is_quick,
    measure,
    median,
    note,
    run_benchmark,
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
#: One worker's share of the same work: a loop over its half of the tests in its worktree.
LOOP = (
    'wt="$BENCH_BASE/wt$1"; i=0; while [ "$i" -lt "$2" ]; do '
    'git -C "$wt" reset -q --hard "$BENCH_SHA" && git -C "$wt" clean -ffdxq && bash -c true '
    "|| exit 1; i=$((i + 1)); done"
)
#: Two such loops at once, in the benchmark's session as the engine's git work is (with the
#: kernel's autogroup scheduling a session is what shares a loaded CPU; see bench/README.md).
LOOPS_SCRIPT = (
    f"bash -c '{LOOP}' loop 0 {{first}} & first=$!; "
    f"bash -c '{LOOP}' loop 1 {{second}} & second=$!; "
    'wait "$first" && wait "$second"'
)


def requests(count: int, sha: str) -> list[TestRequest]:
    return [TestRequest(id=f"trivial-{i:04d}", command="true", ref=sha) for i in range(count)]


def baseline_worktrees(repo: Path, work: Path, sha: str) -> Path:
    """One pre-made worktree per worker for the shell baselines; their folder."""
    base = work / "baseline-worktrees"
    base.mkdir(parents=True)
    for slot in range(WORKERS):
        git(repo, "worktree", "add", "-q", "--detach", str(base / f"wt{slot}"), sha)
    return base


async def measure_sides(
    repo: Path, work: Path, sha: str, tests: int, rounds: int, *, check: bool = True
) -> tuple[list[Span], list[Span]]:
    """Rounds of ours and the baseline, in AB BA order against drift; each side's spans.

    :param check: warn when a report does not show every test passed.
    """
    base = baseline_worktrees(repo, work, sha)
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


def measure_cli(
    repo: Path,
    work: Path,
    sha: str,
    tests: int,
    rounds: int,
    checkouts: Mapping[str, Path] | None = None,
) -> dict[str, list[Span]]:
    """Rounds of ``parallel-orch run`` (a new process each, in both environments) and the two
    shell loops, in the worktrees :func:`baseline_worktrees` made; each side's spans by label.

    :param checkouts: run the CLI side once per checkout (label: its path), each
        importing its own package; None: this checkout only.
    """
    plan = work / "trivial.toml"
    plan.write_text("".join(f'[[test]]\nid = "t{i:04d}"\nrun = "true"\n' for i in range(tests)))
    args = ["run", str(plan), "-j", str(WORKERS), "-q", "--state-dir", str(work / "cli-state")]
    loops = LOOPS_SCRIPT.format(first=tests // 2, second=tests - tests // 2)
    loops_env = {"BENCH_BASE": str(work / "baseline-worktrees"), "BENCH_SHA": sha}
    spans: dict[str, list[Span]] = {}

    def cli(env: dict[str, str], log: Path) -> Callable[[], Span]:
        return lambda: run_cli(args, cwd=repo, env=env, log=log).span

    def cli_in(env: dict[str, str], log: Path, state: Path) -> Callable[[], Span]:
        """The CLI side of one checkout: a state dir (and pool) of its own."""
        own = [*args[:-1], str(state)]
        return lambda: run_cli(own, cwd=repo, env=env, log=log).span

    sides: dict[str, Callable[[], Span]] = {}
    for index, pyenv in enumerate(python_envs()):
        if checkouts is None:
            sides[pyenv.label] = cli(pyenv.env, work / f"cli-{index}.log")
            continue
        for name, path in checkouts.items():
            env = {**pyenv.env, "PYTHONPATH": str(path)}
            args_state = work / f"cli-state-{name}"
            sides[f"{pyenv.label}, {name}"] = cli_in(
                env, work / f"cli-{index}-{name}.log", args_state
            )

    def two_loops() -> Span:
        with measure() as span:
            _, code = run_shell(loops, cwd=repo, env=loops_env)
        if code != 0:
            note(f"warning: the shell loops exited {code}")
        return span

    sides["loops"] = two_loops
    total, compiled = package_bytecode()
    note(f"CLI: {compiled} of {total} package modules compiled before the warm-up")
    for side in sides.values():  # warm, untimed: the CLI's pool is made here
        side()
    for index in range(rounds):
        order = list(sides.items())
        for label, side in order if index % 2 == 0 else order[::-1]:
            spans.setdefault(label, []).append(side())
    return spans


def ratio(ours: list[Span], baseline: list[Span], attr: str = "wall") -> float:
    mine: float = sum(getattr(s, attr) for s in ours)
    theirs: float = sum(getattr(s, attr) for s in baseline)
    return mine / theirs


def run(quick: bool) -> list[Figure]:
    files, tests, rounds = (500, 100, 2) if quick else (2_000, 300, 4)
    work = fresh_dir("isolation")
    repo = work / "repo"
    sha = init_repo(repo, files)
    note(
        f"repo: {files} files, 1 commit; {tests} tests of `true`, {WORKERS} workers, "
        f"{rounds} rounds"
    )
    autogroup_note()
    ours, baseline = anyio.run(measure_sides, repo, work, sha, tests, rounds)
    in_process = ratio(ours, baseline)
    note(f"parallel-orch run_tests : {fmt_spans(ours)}  ({per_test(ours, tests)})")
    note(f"xargs reset+clean+true  : {fmt_spans(baseline)}  ({per_test(baseline, tests)})")
    rounds_text = ", ".join(f"{o.wall / b.wall:.2f}" for o, b in zip(ours, baseline, strict=True))
    note(f"wall ratio per round    : {rounds_text}")
    figures = [
        Figure(
            "isolation: ours / xargs reset+clean, wall",
            in_process,
            target=f"<= {TARGET_RATIO}",
            met=in_process <= TARGET_RATIO,
        ),
        Figure("isolation: ours / xargs reset+clean, CPU", ratio(ours, baseline, "cpu")),
    ]
    figures += cli_figures(measure_cli(repo, work, sha, tests, rounds), tests)
    return figures


def cli_figures(cli: dict[str, list[Span]], tests: int) -> list[Figure]:
    """The CLI sides against the two shell loops, wall and CPU."""
    figures = []
    loops = cli.pop("loops")
    note(f"two shell loops         : {fmt_spans(loops)}  ({per_test(loops, tests)})")
    for label, spans in cli.items():
        note(f"`parallel-orch run` [{label}]: {fmt_spans(spans)}  ({per_test(spans, tests)})")
        wall = ratio(spans, loops)
        figures += [
            Figure(
                f"isolation: CLI run [{label}] / two shell loops, wall",
                wall,
                target=f"<= {TARGET_RATIO}",
                met=wall <= TARGET_RATIO,
            ),
            Figure(
                f"isolation: CLI run [{label}] / two shell loops, CPU", ratio(spans, loops, "cpu")
            ),
        ]
    return figures


def run_cli_only(checkouts: Mapping[str, Path] | None, quick: bool) -> list[Figure]:
    """Only the CLI comparison (``--cli-only``), for each of ``checkouts`` if given."""
    files, tests, rounds = (500, 100, 2) if quick else (2_000, 300, 4)
    work = fresh_dir("isolation")
    repo = work / "repo"
    sha = init_repo(repo, files)
    note(f"repo: {files} files; {tests} tests of `true`, {WORKERS} workers, {rounds} rounds")
    for name, path in (checkouts or {}).items():
        note(f"checkout {name}: {path} ({git(path, 'rev-parse', '--short', 'HEAD')})")
    autogroup_note()
    baseline_worktrees(repo, work, sha)
    return cli_figures(measure_cli(repo, work, sha, tests, rounds, checkouts), tests)


def parse_checkouts(args: Sequence[str]) -> dict[str, Path] | None:
    """``--checkout LABEL=PATH`` pairs, in order; None when there are none."""
    found = {}
    for flag, value in itertools.pairwise(args):
        if flag == "--checkout":
            label, _, path = value.partition("=")
            found[label] = Path(path).resolve()
    return found or None


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    title = "isolation overhead near the git floor"
    checkouts = parse_checkouts(args)
    if checkouts is None and "--cli-only" not in args:
        run_benchmark(title, run, is_quick(args))
        return
    run_benchmark(f"{title}, CLI only", functools.partial(run_cli_only, checkouts), is_quick(args))


if __name__ == "__main__":
    main()
