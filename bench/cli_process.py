"""Our CLI as a user runs it: a new process each time, in the two environments compared.

These machines set ``PYTHONDONTWRITEBYTECODE=1`` (so do many CI images);
Python's default writes bytecode. A benchmark that runs Python runs every
side in both, with the same environment for every side of a comparison:
nothing is set or dropped for one side only.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import Span, measure, note
from bench.daemon_process import PROJECT_ROOT, cli_env
from parallel_orch.report import ParallelTestReport

DONT_WRITE = "PYTHONDONTWRITEBYTECODE"


@dataclass(frozen=True, slots=True)
class PyEnv:
    """One environment every side of a comparison runs in."""

    label: str  # short, for figure names
    env: dict[str, str]


def python_envs() -> tuple[PyEnv, PyEnv]:
    """With ``PYTHONDONTWRITEBYTECODE=1`` (as these machines set it) first, then without.

    That order matters: a run without the variable writes bytecode that a later
    run with it would read, so the "with" side is measured first, as a fresh
    checkout on such a machine has it.
    """
    base = {k: v for k, v in cli_env().items() if k != DONT_WRITE}
    return (
        PyEnv(f"{DONT_WRITE}=1", {**base, DONT_WRITE: "1"}),
        PyEnv("bytecode written", base),
    )


def cli_argv(*args: str) -> list[str]:
    """``parallel-orch ARGS`` as a user types it: the venv's console script."""
    script = Path(sys.executable).with_name("parallel-orch")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "parallel_orch"]
    return [*head, *args]


def package_bytecode() -> tuple[int, int]:
    """Modules of this checkout's package, and how many of them have bytecode next to them."""
    sources = list((PROJECT_ROOT / "parallel_orch").rglob("*.py"))
    tag = sys.implementation.cache_tag
    compiled = sum(
        1 for s in sources if (s.parent / "__pycache__" / f"{s.stem}.{tag}.pyc").exists()
    )
    return len(sources), compiled


@dataclass(frozen=True, slots=True)
class CliRun:
    """One CLI process: its wall and CPU (children included), exit code and report."""

    span: Span
    code: int
    report: ParallelTestReport | None


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    report: Path | None = None,
    executable: Path | None = None,
) -> CliRun:
    """``parallel-orch ARGS`` from start to exit, output to ``log``; with ``report``, the
    report it wrote there (``--report-json``). ``executable``: another checkout's
    ``parallel-orch``, to measure two versions side by side."""
    argv = [str(executable), *args] if executable is not None else cli_argv(*args)
    if report is not None:
        report.unlink(missing_ok=True)
        argv += ["--report-json", str(report)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out, measure() as span:
        done = subprocess.run(
            argv, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    parsed = None
    if report is not None and report.exists():
        parsed = ParallelTestReport.model_validate_json(report.read_text(encoding="utf-8"))
    if done.returncode != 0:
        note(f"warning: `parallel-orch {' '.join(args[:2])} ...` exited {done.returncode} ({log})")
    return CliRun(span, done.returncode, parsed)
