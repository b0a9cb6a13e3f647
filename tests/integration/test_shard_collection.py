"""A shard imports only the test modules holding its recorded cases: real pytest processes
with the bundled plugin, told their part the way the engine tells them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from parallel_orch import sharding
from parallel_orch.models import TestRequest

#: Module -> (cases, seconds each as recorded): 3 s, 2 s and 1 s, so a and (b + c) balance.
MODULES = {"test_a": (3, 1.0), "test_b": (2, 1.0), "test_c": (2, 0.5)}


def write_suite(root: Path, new_case: bool = False) -> None:
    """Modules that log their import, and a conftest that logs each case run, with the shard."""
    tests = root / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    log = "open(os.environ['SUITE_LOG'], 'a').write"
    (tests / "conftest.py").write_text(
        "import os\n"
        "def pytest_runtest_call(item):\n"
        f"    {log}('ran ' + item.nodeid + ' ' + os.environ['TEST_SHARD_INDEX'] + '\\n')\n"
    )
    for module, (count, _) in MODULES.items():
        body = f"import os\n{log}('imported {module} ' + os.environ['TEST_SHARD_INDEX'] + '\\n')\n"
        body += "".join(f"def test_{n}():\n    pass\n" for n in range(count))
        if new_case and module == "test_b":
            body += "def test_new():\n    pass\n"
        (tests / f"{module}.py").write_text(body)
    if new_case:
        (tests / "test_d.py").write_text("".join(f"def test_{n}():\n    pass\n" for n in range(4)))


def history(path: Path) -> Path:
    cases = {
        f"tests.{module}::test_{n}": seconds
        for module, (count, seconds) in MODULES.items()
        for n in range(count)
    }
    path.write_text(json.dumps({"cases": cases, "collect": {}}))
    return path


def run_shards(
    root: Path, durations: Path, *args: str, extra: dict[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """Both shards of ``pytest ARGS`` one after the other; what each imported and ran."""
    log = root / "log"
    log.unlink(missing_ok=True)
    for index in (1, 2):
        request = TestRequest(id="s", command="pytest", shards=2).split(2)[index - 1]
        env = {**os.environ, "SUITE_LOG": str(log), **(extra or {})}
        env.update(
            sharding.shard_env(request, env, status_file=root / "status", durations=durations)
        )
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def imports(events: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return sorted((name, shard) for kind, name, shard in events if kind == "imported")


def ran(events: list[tuple[str, str, str]]) -> dict[str, str]:
    runs = [(name, shard) for kind, name, shard in events if kind == "ran"]
    assert len(runs) == len(dict(runs)), f"a case ran twice: {sorted(runs)}"
    return dict(runs)


def test_each_module_is_imported_by_the_shard_holding_its_cases(tmp_path: Path) -> None:
    """With a history, test_a is imported by one shard and test_b, test_c by the other only,
    and every case runs once."""
    write_suite(tmp_path)
    events = run_shards(tmp_path, history(tmp_path / "d.json"), "tests")
    assert imports(events) == [("test_a", "0"), ("test_b", "1"), ("test_c", "1")]
    assert len(ran(events)) == 7


def test_new_cases_and_modules_still_run_once(tmp_path: Path) -> None:
    """A case the history does not know goes to the shard holding its module; a new module
    is imported by both and its cases split between them."""
    write_suite(tmp_path, new_case=True)
    events = run_shards(tmp_path, history(tmp_path / "d.json"), "tests")
    shard_of = ran(events)
    assert len(shard_of) == 7 + 1 + 4
    assert shard_of["tests/test_b.py::test_new"] == "1"
    assert sorted(shard_of[f"tests/test_d.py::test_{n}"] for n in range(4)) == ["0", "0", "1", "1"]
    assert ("test_a", "1") not in imports(events)


def test_collecting_every_module_can_be_asked_for_and_splits_the_same(tmp_path: Path) -> None:
    """PARALLEL_ORCH_SHARD_COLLECT=all, or a case named on the command line: every module is
    imported by both shards, and each case runs in the shard it would have anyway."""
    write_suite(tmp_path)
    durations = history(tmp_path / "d.json")
    skipping = ran(run_shards(tmp_path, durations, "tests"))
    events = run_shards(tmp_path, durations, "tests", extra={"PARALLEL_ORCH_SHARD_COLLECT": "all"})
    assert imports(events) == sorted((m, s) for m in MODULES for s in "01")
    assert ran(events) == skipping
    named = run_shards(tmp_path, durations, "tests/test_a.py::test_0", "tests/test_b.py")
    assert len(imports(named)) == 4 and sorted(ran(named)) == [
        "tests/test_a.py::test_0",
        "tests/test_b.py::test_0",
        "tests/test_b.py::test_1",
    ]


def test_a_shard_that_holds_no_module_passes(tmp_path: Path) -> None:
    """Only test_a in the suite, all of it recorded in shard 0: shard 1 imports nothing, and
    passes rather than exiting 5 (no tests collected)."""
    write_suite(tmp_path)
    events = run_shards(tmp_path, history(tmp_path / "d.json"), "tests/test_a.py")
    assert imports(events) == [("test_a", "0")]


def test_shards_write_their_modules_collection_times_for_the_next_session(
    tmp_path: Path,
) -> None:
    """Each shard writes the time its modules took to collect; the next session's durations
    file carries them (and the split then counts them)."""
    write_suite(tmp_path)
    state = tmp_path / "state"
    first = sharding.durations_path(state, "0123abcd", "suite")
    sharding.write_durations(first, json.loads(history(tmp_path / "d.json").read_text())["cases"])
    run_shards(tmp_path, first, "tests")
    second = sharding.durations_path(state, "4567ef01", "suite")
    sharding.write_durations(second, {})
    written = json.loads(second.read_text())
    collect = written["collect"]
    assert sorted(collect) == [f"tests.{m}" for m in MODULES]
    assert all(seconds > 0 for seconds in collect.values())
    assert 0 < written["per_case"] < 0.1  # pytest's own cost a case, as the shards measured it
