"""One plan set, one test: the same key and ids whatever the spelling of the paths (DESIGN §2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel_orch import load_plans
from parallel_orch.plan_identity import canonical_plan_paths, plan_key

PLAN = '[[test]]\nid = "t"\nrun = "true"\n'


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo-shaped folder with plans/unit/x.toml and examples/demo.toml; the cwd."""
    repo = tmp_path / "repo"
    for rel in ("plans/unit/x.toml", "plans/lint.toml", "examples/demo.toml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(PLAN)
    monkeypatch.chdir(repo)
    return repo


def test_plan_key_is_the_same_for_every_spelling_of_the_paths(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plans`, `./plans/` and the absolute path (also from a subfolder) key one plan set."""
    ids = ["unit/x::t"]
    spellings = [["plans"], ["./plans/"], [str(tree / "plans")], ["plans", "./plans"]]
    keys = {plan_key(canonical_plan_paths(tree, paths), ids) for paths in spellings}
    (tree / "src").mkdir()
    monkeypatch.chdir(tree / "src")
    keys.add(plan_key(canonical_plan_paths(tree, [Path("../plans")]), ids))
    assert canonical_plan_paths(tree, ["../plans/"]) == ["plans"]
    assert len(keys) == 1
    assert plan_key(canonical_plan_paths(tree, ["plans/unit"]), ids) not in keys


def test_canonical_paths_outside_the_repo_stay_absolute(tree: Path, tmp_path: Path) -> None:
    """A plan path outside the repo is kept absolute and resolved; the repo itself is `.`."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert canonical_plan_paths(tree, [str(outside / ".." / "elsewhere"), "."]) == sorted(
        [".", str(outside)]
    )


def test_a_test_has_one_id_however_its_plan_is_reached(tree: Path) -> None:
    """`plans`, `plans/unit`, `./plans/unit/x.toml` and the absolute path give `unit/x::t`."""
    root = tree / "plans"
    for given in ("plans", "plans/unit", "./plans/unit/x.toml", str(root / "unit")):
        ids = [r.id for r in load_plans(given, root=root)]
        assert "unit/x::t" in ids, given
    assert [r.category for r in load_plans("plans/unit", root=root)] == ["unit"]


def test_plans_outside_the_root_are_named_from_the_directory_given(tree: Path) -> None:
    """A plan outside the plans root keeps the old rule: relative to the directory given."""
    root = tree / "plans"
    assert [r.id for r in load_plans("examples", root=root)] == ["demo::t"]
    assert [r.id for r in load_plans("examples/demo.toml", root=root)] == ["demo::t"]
    from_top = [r.id for r in load_plans(".", root=root)]
    assert from_top == ["examples/demo::t", "lint::t", "unit/x::t"]


def test_a_plan_reached_twice_is_loaded_once(tree: Path) -> None:
    """`plans` and `plans/unit` together load plans/unit/x.toml once, not as a duplicate."""
    requests = load_plans(["plans", "plans/unit", "./plans/unit/x.toml"], root=tree / "plans")
    assert [r.id for r in requests] == ["lint::t", "unit/x::t"]
