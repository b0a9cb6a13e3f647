"""`make run` runs the whole suite: every test file is named by a plan in plans/."""

from __future__ import annotations

from pathlib import Path

from parallel_orch.plans import load_plans

ROOT = Path(__file__).parents[2]


def test_every_test_file_is_run_by_a_plan() -> None:
    """Each tests/**/test_*.py appears in a plan's command, or its folder does."""
    commands = " ".join(
        r.command if isinstance(r.command, str) else " ".join(r.command)
        for r in load_plans([ROOT / "plans"])
    )
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py"))
    words = set(commands.split())
    missing = [f for f in files if f not in words and str(Path(f).parent) not in words]
    assert missing == [], f"add these to a plan under plans/: {missing}"
