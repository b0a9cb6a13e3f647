"""Gates, quarantine and comparison through the Python API, with the store behind them."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from parallel_orch import ParallelTestConfig, TestRequest, load_plans
from parallel_orch.cli.app import make_config as cli_config
from parallel_orch.exceptions import ConfigError
from parallel_orch.report.gates import exit_code
from parallel_orch.report.options import Gates, ReportOptions
from tests.helpers import GitRepo, MakeConfig, orchestrator


def write_pyproject(repo: GitRepo, body: str) -> None:
    (repo.path / "pyproject.toml").write_text(body)


def unless(marker: Path) -> str:
    """A command that fails while ``marker`` (outside the repo) exists."""
    return f"test ! -e {shlex.quote(str(marker))}"


# -- gates in the configuration ---------------------------------------------------------


def test_gates_come_from_pyproject_and_the_environment(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[tool.parallel-orch.gates]`` sets them; ``PARALLEL_ORCH_GATES__*`` overrides one
    key at a time, categories included."""
    write_pyproject(
        repo,
        "[tool.parallel-orch.gates]\nmin_pass_rate = 0.9\nmax_flaky = 2\nunit = 1.0\n"
        "integration = 0.98\n",
    )
    monkeypatch.chdir(repo.path)
    assert ParallelTestConfig().gates == Gates(
        min_pass_rate=0.9, max_flaky=2, categories={"unit": 1.0, "integration": 0.98}
    )
    monkeypatch.setenv("PARALLEL_ORCH_GATES__MIN_PASS_RATE", "0.95")
    monkeypatch.setenv("PARALLEL_ORCH_GATES__PERFORMANCE", "0.9")
    assert ParallelTestConfig().gates == Gates(
        min_pass_rate=0.95,
        max_flaky=2,
        categories={"unit": 1.0, "integration": 0.98, "performance": 0.9},
    )


@pytest.mark.parametrize(
    ("table", "env", "message"),
    [
        (
            "min_pass_rate = 1.5",
            {},
            "invalid configuration: gates: min_pass_rate = 1.5: a pass rate is between 0 and 1",
        ),
        (
            "unit = 2",
            {},
            "invalid configuration: gates: unit = 2.0: a pass rate is between 0 and 1",
        ),
        (
            "",
            {"PARALLEL_ORCH_GATES__MIN_PASS_RATE": "2"},
            "invalid configuration: gates: min_pass_rate = 2.0: a pass rate is between 0 and 1",
        ),
        ("max_flaky = 'abc'", {}, "gates.max_flaky: Input should be a valid integer"),
        ("bogus = 'x'", {}, "gates.categories.bogus: Input should be a valid number"),
    ],
)
def test_a_bad_configured_gate_is_a_config_error_naming_it(
    repo: GitRepo,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    env: dict[str, str],
    message: str,
) -> None:
    """A configured gate out of range or of the wrong type is exit 2, naming the key."""
    write_pyproject(repo, f"[tool.parallel-orch.gates]\n{table}\n")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as raised:
        cli_config(repo=repo.path)
    assert raised.value.exit_code == 2
    assert message in raised.value.message
    assert "\n" not in raised.value.message


async def test_configured_gates_judge_every_session_and_are_stored(
    make_config: MakeConfig,
) -> None:
    """The config's gates judge a session; the stored report has their verdicts."""
    config = make_config(gates={"min_pass_rate": 1.0, "max_flaky": 0})
    async with orchestrator(config) as orch:
        report = await orch.run_tests(
            [TestRequest(id="a", command="true"), TestRequest(id="b", command="false")]
        )
        stored = await orch.report(report.session_id)
    assert [(g.name, g.passed) for g in report.gates] == [
        ("min_pass_rate", False),
        ("max_flaky", True),
    ]
    assert not report.gates_passed
    assert stored == report


# -- quarantine -------------------------------------------------------------------------


async def test_a_quarantined_plan_test_runs_is_reported_and_fails_nothing(
    config: ParallelTestConfig, tmp_path: Path, outside: Path
) -> None:
    """``quarantine = "reason"`` runs the test and reports it apart; exit 0 all the same."""
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "suite.toml").write_text(
        '[[test]]\nid = "ok"\nrun = "true"\n\n'
        f'[[test]]\nid = "wobbly"\nrun = "touch {outside}/ran; false"\n'
        'quarantine = "fails on CI, issue #12"\n'
    )
    async with orchestrator(config) as orch:
        session_id = await orch.create_session(
            load_plans([plans]),
            options=ReportOptions(gates=Gates(min_pass_rate=1.0)),
        )
        report = await orch.wait_for_session(session_id)
    assert (outside / "ran").exists()
    wobbly = next(t for t in report.completed_tests if t.test_id == "suite::wobbly")
    assert (wobbly.status, wobbly.quarantine) == ("failed", "fails on CI, issue #12")
    assert report.quarantined_tests == ("suite::wobbly",)
    assert report.failed_tests == ("suite::wobbly",)  # reported as what it was
    assert report.gates_passed
    assert exit_code(report) == 0


async def test_the_config_quarantines_by_test_id_and_a_plan_reason_wins(
    make_config: MakeConfig,
) -> None:
    """``quarantine = [ids]`` in the config marks those tests; a plan's own reason stays."""
    config = make_config(quarantine=["a", "b"])
    async with orchestrator(config) as orch:
        report = await orch.run_tests(
            [
                TestRequest(id="a", command="false"),
                TestRequest(id="b", command="false", quarantine="own reason"),
                TestRequest(id="c", command="true"),
            ]
        )
    reasons = {t.test_id: t.quarantine for t in report.completed_tests}
    assert reasons == {"a": "quarantined in the configuration", "b": "own reason", "c": None}
    assert exit_code(report) == 0


# -- comparison -------------------------------------------------------------------------


async def test_a_second_session_of_the_same_plans_is_compared_with_the_first(
    config: ParallelTestConfig, outside: Path
) -> None:
    """The next session of a plan set lists what broke and what was fixed since the last."""
    requests = [
        TestRequest(id="steady", command="true"),
        TestRequest(id="breaks", command=unless(outside / "break")),
        TestRequest(id="heals", command=unless(outside / "broken")),
    ]
    (outside / "broken").touch()
    async with orchestrator(config) as orch:
        first = await orch.run_tests(requests)
        (outside / "broken").unlink()
        (outside / "break").touch()
        second = await orch.run_tests(requests)
        other = await orch.run_tests([TestRequest(id="elsewhere", command="true")])
    assert first.comparison is None
    assert second.comparison is not None
    assert second.comparison.baseline_session_id == first.session_id
    assert second.comparison.tests.new_failures == ("breaks",)
    assert second.comparison.tests.fixed == ("heals",)
    assert other.comparison is None  # another plan set: nothing to compare with


async def test_compare_to_picks_another_baseline_and_a_stored_report_can_be_rejudged(
    config: ParallelTestConfig, outside: Path
) -> None:
    """``compare_to`` names the baseline; ``report(options=...)`` judges a stored session
    again, ``no_new_failures`` against the previous session."""
    requests = [TestRequest(id="t", command=unless(outside / "break"))]
    async with orchestrator(config) as orch:
        green = await orch.run_tests(requests)
        (outside / "break").touch()
        red = await orch.run_tests(requests)
        again = await orch.run_tests(requests)
        assert again.comparison is not None
        assert again.comparison.baseline_session_id == red.session_id
        assert again.comparison.tests.still_failing == ("t",)
        against_green = await orch.report(
            again.session_id,
            options=ReportOptions(
                compare_to=green.session_id[:8], gates=Gates(no_new_failures=True)
            ),
        )
        rejudged_red = await orch.report(
            red.session_id, options=ReportOptions(gates=Gates(no_new_failures=True))
        )
        assert await orch.report(red.session_id) == red  # the stored report is unchanged
    assert against_green.comparison is not None
    assert against_green.comparison.baseline_session_id == green.session_id
    assert against_green.comparison.tests.new_failures == ("t",)
    assert [g.passed for g in against_green.gates] == [False]
    assert against_green.gates[0].reason == f"1 new failure(s) since {green.session_id}: t"
    assert [g.passed for g in rejudged_red.gates] == [False]
    assert exit_code(rejudged_red) == 1


async def test_a_test_added_to_a_plan_shows_as_added_against_the_last_session(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """The plan set is its plans, not their tests: a new test is `added`, a gone one `removed`."""
    plans = repo.path / "plans"
    plans.mkdir()
    (plans / "a.toml").write_text('[[test]]\nid = "old"\nrun = "true"\n')
    async with orchestrator(config) as orch:
        await orch.run_tests([plans])
        (plans / "a.toml").write_text('[[test]]\nid = "new"\nrun = "true"\n')
        second = await orch.run_tests([plans])
    assert second.comparison is not None
    assert second.comparison.tests.added == ("a::new",)
    assert second.comparison.tests.removed == ("a::old",)
