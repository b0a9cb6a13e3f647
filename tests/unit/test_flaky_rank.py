"""How `flaky` judges a test's outcomes across sessions (parallel_orch.history)."""

from __future__ import annotations

from datetime import datetime, timedelta

from parallel_orch.history import HistoryEntry, base_id, iso_z, rank
from parallel_orch.store import OutcomeRecord

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901)


def outcome(
    test_id: str, n: int, status: str, sha: str = "a" * 40, flaky: bool = False
) -> OutcomeRecord:
    return OutcomeRecord(test_id, f"s{n}", sha, status, flaky, T0 + timedelta(minutes=n))


def test_mixed_outcomes_at_one_commit_are_flakes_and_a_fix_is_not() -> None:
    """Fail/pass at one SHA ranks as flaky; fail at one SHA then pass at the next does not."""
    outcomes = [
        outcome("u::flip", 1, "failed"),
        outcome("u::flip", 2, "passed"),
        outcome("u::flip", 3, "timed_out"),
        outcome("u::flip", 4, "passed"),
        outcome("u::fixed", 1, "failed", sha="a" * 40),
        outcome("u::fixed", 2, "passed", sha="b" * 40),
        outcome("u::broken", 1, "failed"),
    ]
    (flip,) = rank(outcomes)
    assert (flip.test_id, flip.runs, flip.flakes, flip.flake_rate) == ("u::flip", 4, 2, 0.5)
    assert (flip.mixed_failures, flip.mixed_shas, flip.flagged) == (2, ["a" * 40], 0)
    assert (flip.last_flake_session, flip.last_flake_at) == ("s3", T0 + timedelta(minutes=3))


def test_a_retried_pass_counts_and_ranking_is_by_rate() -> None:
    """An execution flagged flaky is a flake; tests come flakiest first."""
    outcomes = [outcome("u::rare", n, "passed", flaky=n == 1) for n in range(1, 5)]
    outcomes += [outcome("u::often", 1, "passed", flaky=True), outcome("u::often", 2, "passed")]
    ranked = rank(outcomes)
    assert [(t.test_id, t.flake_rate, t.flagged) for t in ranked] == [
        ("u::often", 0.5, 1),
        ("u::rare", 0.25, 1),
    ]


def test_matrix_and_repeat_variants_count_as_their_test() -> None:
    """`x#1` passing and `x#2` failing at the same commit make `x` flaky."""
    assert base_id("unit/core::cli@feature/x#2") == "unit/core::cli"
    assert base_id("we@ird::t#3") == "we@ird::t"
    (test,) = rank([outcome("u::x#1", 1, "passed"), outcome("u::x#2", 1, "failed")])
    assert (test.test_id, test.runs, test.flakes) == ("u::x", 2, 1)


def test_times_in_json_are_iso_8601_with_z() -> None:
    """A naive (UTC) store time is written `...Z` in JSON."""
    assert iso_z(T0) == "2026-01-02T03:04:05.678901Z"
    entry = HistoryEntry(
        session_id="s",
        test_id="u::t",
        status="passed",
        created_at=T0,
        started_at=None,
        completed_at=T0,
        duration_seconds=1.0,
        ref="HEAD",
        sha="a" * 40,
        flaky=False,
        attempts=1,
        error=None,
    )
    dumped = entry.model_dump(mode="json")
    assert dumped["created_at"] == dumped["completed_at"] == "2026-01-02T03:04:05.678901Z"
    assert HistoryEntry.model_validate(dumped).created_at.tzinfo is not None
