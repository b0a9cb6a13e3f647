"""How `flaky` judges a test's outcomes across sessions (parallel_orch.history)."""

from __future__ import annotations

from datetime import datetime, timedelta

from parallel_orch.history import HistoryEntry, base_id, iso_z, rank
from parallel_orch.store import OutcomeCounts

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901)
A, B = "a" * 40, "b" * 40


def at(minute: int) -> tuple[datetime, str]:
    """A time and the session of that minute."""
    return T0 + timedelta(minutes=minute), f"s{minute}"


def counts(
    test_id: str,
    sha: str = A,
    *,
    passed: int = 0,
    failed: int = 0,
    flagged: int = 0,
    last_failed: int | None = None,
    last_flagged: int | None = None,
) -> OutcomeCounts:
    return OutcomeCounts(
        test_id,
        sha,
        passed,
        failed,
        flagged,
        at(last_failed) if last_failed is not None else None,
        at(last_flagged) if last_flagged is not None else None,
    )


def test_mixed_outcomes_at_one_commit_are_flakes_and_a_fix_is_not() -> None:
    """Fail/pass at one SHA ranks as flaky; fail at one SHA then pass at the next does not."""
    ranked = rank(
        [
            counts("u::flip", A, passed=2, failed=2, last_failed=3),
            counts("u::flip", B, passed=1),
            counts("u::fixed", A, failed=1, last_failed=1),
            counts("u::fixed", B, passed=1),
            counts("u::broken", A, failed=3, last_failed=5),
        ]
    )
    assert [t.test_id for t in ranked] == ["u::flip"]
    (flip,) = ranked
    assert (flip.runs, flip.flakes, flip.flake_rate) == (5, 2, 0.4)
    assert (flip.mixed_failures, flip.mixed_shas, flip.flagged) == (2, [A], 0)
    assert (flip.last_flake_at, flip.last_flake_session) == at(3)


def test_a_retried_pass_counts_and_ranking_is_by_rate() -> None:
    """An execution flagged flaky is a flake; tests come flakiest first; the latest flake
    of either kind is named."""
    ranked = rank(
        [
            counts("u::rare", passed=4, flagged=1, last_flagged=1),
            counts("u::often", A, passed=2, flagged=1, last_flagged=2),
            counts("u::often", B, passed=1, failed=1, last_failed=9),
        ]
    )
    assert [(t.test_id, t.flake_rate, t.flagged) for t in ranked] == [
        ("u::often", 0.5, 1),
        ("u::rare", 0.25, 1),
    ]
    assert ranked[0].last_flake_session == "s9"


def test_matrix_and_repeat_variants_count_as_their_test() -> None:
    """`x#1` passing and `x#2` failing at the same commit make `x` flaky."""
    assert base_id("unit/core::cli@feature/x#2") == "unit/core::cli"
    assert base_id("we@ird::t#3") == "we@ird::t"
    (test,) = rank([counts("u::x#1", passed=1), counts("u::x#2", failed=1, last_failed=1)])
    assert (test.test_id, test.runs, test.flakes, test.mixed_shas) == ("u::x", 2, 1, [A])


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
        sha=A,
        flaky=False,
        attempts=1,
        error=None,
    )
    dumped = entry.model_dump(mode="json")
    assert dumped["created_at"] == dumped["completed_at"] == "2026-01-02T03:04:05.678901Z"
    assert HistoryEntry.model_validate(dumped).created_at.tzinfo is not None
