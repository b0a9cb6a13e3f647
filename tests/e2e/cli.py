"""Run the real CLI as a user types it, against this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test environment, with this checkout first on the import path.

    Without ``GITHUB_STEP_SUMMARY`` unless given: under GitHub Actions, every run of
    the CLI in the suite would append its summary to the job's own.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PARALLEL_ORCH_") and k != "GITHUB_STEP_SUMMARY"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "parallel_orch", *args]


def run_cli(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``parallel-orch ARGS`` in ``cwd``; its exit code and output."""
    return subprocess.run(
        cli_argv(*args),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
