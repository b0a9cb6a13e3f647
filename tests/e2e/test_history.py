"""A test across sessions as a user asks: `history TEST_ID` and `flaky`, from the store or a
daemon, and one id and one plan set whatever the spelling of the plan paths."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from parallel_orch import ParallelTestConfig
from parallel_orch.daemon.protocol import ErrorCode
from tests.e2e.cli import run_cli
from tests.e2e.conftest import RawClient, StartDaemon, write_plan
from tests.helpers import GitRepo, MakeConfig, orchestrator

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def flip_plan(marks: Path) -> str:
    """`flip` fails, passes, fails, ... (a mark outside the repo carries over); `retried`
    fails its first attempt ever and passes its retry; `fixed` passes once fixed.txt is
    committed; `steady` always passes and `broken` always fails."""
    flip, retried = marks / "flip", marks / "retried"
    return (
        f'[[test]]\nid = "flip"\nrun = \'if [ -e "{flip}" ]; then rm "{flip}"; '
        f'else touch "{flip}"; exit 1; fi\'\n'
        f'[[test]]\nid = "retried"\nretries = 1\n'
        f'run = \'[ -e "{retried}" ] || {{ touch "{retried}"; exit 1; }}\'\n'
        '[[test]]\nid = "fixed"\nrun = "test -e fixed.txt"\n'
        '[[test]]\nid = "steady"\nrun = "true"\n'
        '[[test]]\nid = "broken"\nrun = "exit 3"\n'
    )


def cli_json(repo: GitRepo, *args: str) -> Any:
    result = run_cli([*args, "--json"], cwd=repo.path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_session(repo: GitRepo, path: str, tmp_path: Path) -> dict[str, Any]:
    """`run PATH` in the repo; its report."""
    out = tmp_path / "report.json"
    result = run_cli(["run", path, "-j", "2", "-q", "--report-json", str(out)], cwd=repo.path)
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return report


@pytest.mark.slow
def test_one_id_and_one_plan_set_whatever_the_spelling(repo: GitRepo, tmp_path: Path) -> None:
    """`plans`, `./plans/` and the absolute path are one plan set (each session compared with
    the one before); `plans/unit` and `./plans/unit/x.toml` run the same `unit/x::t`."""
    write_plan(repo.path, "unit/x.toml", '[[test]]\nid = "t"\nrun = "true"\n')
    spellings = ["plans", "./plans/", str(repo.path / "plans")]
    reports = [run_session(repo, path, tmp_path) for path in spellings]
    assert reports[0]["comparison"] is None
    for before, after in itertools.pairwise(reports):
        assert after["comparison"]["baseline_session_id"] == before["session_id"]
    for path in ("plans/unit", "./plans/unit/x.toml"):
        assert [t["test_id"] for t in run_session(repo, path, tmp_path)["completed_tests"]] == [
            "unit/x::t"
        ]
    seen = cli_json(repo, "history", "unit/x::t")
    assert len(seen) == 5 and {e["status"] for e in seen} == {"passed"}
    sessions = cli_json(repo, "sessions")
    assert [s["plan_paths"] for s in sessions] == [
        ["plans/unit/x.toml"],
        ["plans/unit"],
        ["plans"],
        ["plans"],
        ["plans"],
    ]


async def run_sessions(config: ParallelTestConfig, count: int) -> list[str]:
    """``count`` sessions of the repo's plans, one after the other; their ids."""
    async with orchestrator(config) as orch:
        return [(await orch.run_tests(config.repo / "plans")).session_id for _ in range(count)]


@pytest.mark.slow
def test_history_and_flaky_over_real_sessions(
    repo: GitRepo, make_config: MakeConfig, tmp_path: Path
) -> None:
    """A test flipping between pass and fail at one commit ranks flakiest; a retried pass
    counts; a test fixed by a commit, one always broken and one steady are not flaky."""
    marks = tmp_path / "marks"
    marks.mkdir()
    write_plan(repo.path, "unit/x.toml", flip_plan(marks))
    config = make_config(state_dir=None)  # the CLI reads <repo>/.parallel-orch
    first_sha = repo.head()
    ids = anyio.run(run_sessions, config, 2)
    second_sha = repo.commit({"fixed.txt": "fixed\n"}, "fix")
    ids += anyio.run(run_sessions, config, 2)

    flaky = cli_json(repo, "flaky")
    assert flaky["sessions"] == 4
    assert [(t["test_id"], t["flake_rate"]) for t in flaky["tests"]] == [
        ("unit/x::flip", 0.5),
        ("unit/x::retried", 0.25),
    ]
    flip, retried = flaky["tests"]
    assert (flip["runs"], flip["flakes"], flip["mixed_failures"]) == (4, 2, 2)
    assert flip["mixed_shas"] == sorted([first_sha, second_sha])
    assert (flip["last_flake_session"], retried["flagged"]) == (ids[2], 1)
    assert ISO_Z.match(flip["last_flake_at"])
    recent = cli_json(repo, "flaky", "--sessions", "2")
    assert (recent["sessions"], [t["test_id"] for t in recent["tests"]]) == (2, ["unit/x::flip"])

    history = cli_json(repo, "history", "unit/x::flip", "--limit", "3")
    assert [(e["session_id"], e["status"]) for e in history] == [
        (ids[3], "passed"),
        (ids[2], "failed"),
        (ids[1], "passed"),
    ]
    assert [e["sha"] for e in history] == [second_sha, second_sha, first_sha]
    assert all(ISO_Z.match(e["created_at"]) and ISO_Z.match(e["completed_at"]) for e in history)
    (oldest,) = [e for e in cli_json(repo, "history", "unit/x::retried") if e["flaky"]]
    assert (oldest["session_id"], oldest["attempts"], oldest["ref"]) == (ids[0], 2, "HEAD")

    table = run_cli(["flaky"], cwd=repo.path)
    assert table.returncode == 0 and "unit/x::flip" in table.stdout and "50%" in table.stdout
    missing = run_cli(["history", "x::flip"], cwd=repo.path)
    assert missing.returncode == 0 and "no executions of x::flip" in missing.stderr


@pytest.mark.slow
def test_history_and_flaky_through_a_daemon(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """`history --socket` and `flaky --socket` answer what the store says, for sessions the
    daemon ran from `plans/unit` under the same ids `run plans` gives; bad params are refused."""
    marks = tmp_path / "marks"
    marks.mkdir()
    write_plan(repo.path, "unit/x.toml", flip_plan(marks))
    daemon = start_daemon(repo.path)
    sock = ["--socket", str(daemon.socket)]
    for path in ("plans/unit", "plans/unit", "plans"):
        submitted = run_cli(["submit", path, "--wait", *sock], cwd=repo.path)
        assert submitted.returncode == 1, submitted.stderr

    history = cli_json(repo, "history", "unit/x::flip", *sock)
    assert [e["status"] for e in history] == ["failed", "passed", "failed"]
    assert history == cli_json(repo, "history", "unit/x::flip")
    flaky = cli_json(repo, "flaky", *sock)
    assert [t["test_id"] for t in flaky["tests"]] == ["unit/x::flip", "unit/x::retried"]
    assert flaky == cli_json(repo, "flaky")

    async def bad_params() -> dict[str, Any]:
        async with RawClient.connect(daemon.socket) as client:
            return await client.call("history", {"limit": 5})

    reply = anyio.run(bad_params)
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "test_id" in reply["error"]["message"]
