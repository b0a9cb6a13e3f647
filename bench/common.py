"""What every benchmark shares: quick mode, scratch dirs, generated git repos, timing, output."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WORK_DIR = Path(__file__).resolve().parent / ".work"  # gitignored scratch space
QUICK_ENV = "BENCH_QUICK"

#: A fixed identity and clock for generated repos, so commit SHAs do not depend on the machine.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "parallel-orch bench",
    "GIT_AUTHOR_EMAIL": "bench@parallel-orch.invalid",
    "GIT_COMMITTER_NAME": "parallel-orch bench",
    "GIT_COMMITTER_EMAIL": "bench@parallel-orch.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
}


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, with the target it is read against (if any)."""

    name: str
    value: float
    unit: str = "x"  # "x" for ratios, "s" or "ms" for times, "count" for a whole number
    target: str = ""  # e.g. "<= 1.30"
    met: bool | None = None  # None: no target

    def render(self) -> str:
        if self.unit == "x":
            value = f"{self.value:.3f}"
        elif self.unit == "count":
            value = f"{self.value:.0f}"
        else:
            value = f"{self.value:.1f} {self.unit}"
        if self.met is None:
            return f"{self.name}: {value}"
        verdict = "met" if self.met else "MISSED"
        return f"{self.name}: {value} (target {self.target}: {verdict})"


def is_quick(argv: Sequence[str]) -> bool:
    """Quick mode: ``--quick`` on the command line or ``BENCH_QUICK=1`` in the environment."""
    return "--quick" in argv or os.environ.get(QUICK_ENV, "") not in ("", "0")


def bench_main(title: str, run: Callable[[bool], list[Figure]], argv: Sequence[str] | None) -> None:
    """Entry point of one benchmark module: parse ``--quick``, run, print the figures."""
    args = sys.argv[1:] if argv is None else list(argv)
    run_benchmark(title, run, is_quick(args))


def run_benchmark(title: str, run: Callable[[bool], list[Figure]], quick: bool) -> list[Figure]:
    """Run one benchmark between load readings; print and return its figures."""
    header(f"{title}{' (quick)' if quick else ''}")
    note(f"load average before: {load()}")
    figures = run(quick)
    note(f"load average after : {load()}")
    for figure in figures:
        print(f"  => {figure.render()}", flush=True)
    return figures


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) + f" on {os.cpu_count()} cores"


def autogroup_note() -> None:
    """Say whether the kernel shares the CPU by session (autogroup): under other load, each of
    our attempts (a session of its own) then gets a share (see bench/README.md)."""
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return
    if enabled:
        note("sched_autogroup_enabled=1: under other load the CPU is shared by session")


def header(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def note(text: str) -> None:
    print(f"  {text}", flush=True)


def fresh_dir(name: str) -> Path:
    """An empty scratch dir ``bench/.work/<name>``, wiped first."""
    path = WORK_DIR / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def use_git_identity() -> None:
    """Give this process (and the engine's git calls) a fixed git identity and clock."""
    os.environ.update(GIT_IDENTITY)


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in ``repo``; its stdout, stripped. Raises on failure."""
    out = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return out.stdout.strip()


def write_tree(root: Path, count: int, *, per_dir: int = 100, prefix: str = "f") -> list[Path]:
    """Write ``count`` small text files under ``root`` in folders of ``per_dir``; their paths."""
    paths = []
    for index in range(count):
        folder = root / "src" / f"pkg{index // per_dir:03d}"
        if index % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{prefix}{index:05d}.txt"
        path.write_text(f"file {index}\n" + "lorem ipsum dolor sit amet\n" * 8)
        paths.append(path)
    return paths


def init_repo(path: Path, files: int) -> str:
    """A new repo at ``path`` with ``files`` generated files in one commit; that commit's SHA."""
    use_git_identity()
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    write_tree(path, files)
    (path / ".gitignore").write_text("*.pyc\n__pycache__/\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", f"{files} generated files")
    return git(path, "rev-parse", "HEAD")


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def cpu_seconds() -> float:
    """CPU (user + system) used so far by this process, its threads and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(slots=True)
class Span:
    """Wall and CPU seconds of one measured stretch."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measure() -> Iterator[Span]:
    """Measure the block: wall time, and CPU of this process and every child reaped meanwhile.

    On a shared machine the CPU figure is the steadier one: other load stretches
    walls a lot more than it inflates the CPU a piece of work needs.
    """
    span = Span()
    wall_start, cpu_start = time.perf_counter(), cpu_seconds()
    try:
        yield span
    finally:
        span.wall = time.perf_counter() - wall_start
        span.cpu = cpu_seconds() - cpu_start


def fmt_spans(spans: Sequence[Span]) -> str:
    """Median wall (min..max) and median CPU."""
    walls = [s.wall for s in spans]
    cpus = [s.cpu for s in spans]
    return f"wall {fmt_seconds(walls)}; CPU {median(cpus):.2f} s"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_seconds(values: Sequence[float]) -> str:
    """``median (min..max)`` in seconds."""
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"{median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def fmt_ms(values: Sequence[float]) -> str:
    """``median (min..max)`` in milliseconds."""
    ms = [v * 1000 for v in values]
    return f"{median(ms):.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})"


def run_shell(
    script: str, *, cwd: Path, env: Mapping[str, str], stdin: str = "", log: Path | None = None
) -> tuple[float, int]:
    """Run a bash script, output to ``log`` (or ``/dev/null``); its seconds and exit code."""
    with open(log or os.devnull, "wb") as out:
        started = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env={**os.environ, **env},
            input=stdin.encode(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
        return time.perf_counter() - started, done.returncode
