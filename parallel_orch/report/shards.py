"""A sharded test in the report: its shards' executions shown as the one test they are.

Status is the worst of its shards', flaky if any shard was, case totals and
durations summed; its attempts are every shard's, each labelled with its
shard, so the timeline still shows the shards. A shard whose runner never
touched ``TEST_SHARD_STATUS_FILE`` did not shard, and a shard whose cases were not
read (its JUnit file missing or unreadable) is not in the totals: the test's notes say
so.
"""

from __future__ import annotations

from collections.abc import Sequence

from parallel_orch.models import SHARD_SUFFIX
from parallel_orch.report.model import CaseCounts, TestResult

#: Of a test's shards' statuses, the first found here is the test's.
_WORST_FIRST = (
    "error",
    "timed_out",
    "failed",
    "interrupted",
    "cancelled",
    "running",
    "pending",
    "skipped",
    "passed",
)


def merge_shards(results: Sequence[TestResult]) -> list[TestResult]:
    """``results`` with each sharded test's shards merged into one, where the first was."""
    groups: dict[str, list[TestResult]] = {}
    order: list[str | TestResult] = []
    for result in results:
        match = SHARD_SUFFIX.search(result.test_id)
        if match is None:
            order.append(result)
            continue
        base = result.test_id[: match.start()]
        if base not in groups:
            groups[base] = []
            order.append(base)
        groups[base].append(result)
    return [item if isinstance(item, TestResult) else _merged(item, groups[item]) for item in order]


def _merged(base: str, shards: list[TestResult]) -> TestResult:
    statuses = {s.status for s in shards}
    status = next((s for s in _WORST_FIRST if s in statuses), shards[0].status)
    failing = next((s for s in shards if s.status == status and s.first_error), None)
    durations = [s.duration_seconds for s in shards if s.duration_seconds is not None]
    counted = [s.cases for s in shards if s.cases is not None]
    ignored = [s.test_id for s in shards if any(a.sharded is False for a in s.attempts)]
    notes = []
    if ignored:
        notes.append(
            f"{_listed(ignored, len(shards))}: the runner never touched TEST_SHARD_STATUS_FILE,"
            " so it did not shard (every shard ran every case)"
        )
    uncounted = [s.test_id for s in shards if s.cases is None]
    if counted and uncounted:  # some shards' cases were read: the totals leave the others out
        notes.append(
            f"{_listed(uncounted, len(shards))}: no JUnit cases read,"
            " not counted in the case totals"
        )
    return TestResult(
        test_id=base,
        status=status,
        flaky=any(s.flaky for s in shards),
        category=shards[0].category,
        ref=shards[0].ref,
        sha=shards[0].sha,
        duration_seconds=round(sum(durations), 6) if durations else None,
        error=next((s.error for s in shards if s.error), None),
        cases=CaseCounts(
            passed=sum(c.passed for c in counted),
            failed=sum(c.failed for c in counted),
            errors=sum(c.errors for c in counted),
            skipped=sum(c.skipped for c in counted),
        )
        if counted
        else None,
        attempts=tuple(
            a.model_copy(update={"shard": s.test_id[len(base) + 1 : -1]})
            for s in shards
            for a in s.attempts
        ),
        leaky=any(s.leaky for s in shards),
        quarantine=shards[0].quarantine,
        first_error=(
            f"[{failing.test_id[len(base) + 1 : -1]}] {failing.first_error}" if failing else None
        ),
        shards=len(shards),
        notes=tuple(notes),
    )


def _listed(labels: Sequence[str], total: int, shown: int = 5) -> str:
    """``t[2/4]``, ``t[2/4], t[3/4]``, or ``30 of 1000 shards (t[1/1000], ... and 25 more)``:
    a note stays one short line however many shards it is about."""
    if len(labels) == 1:
        return labels[0]
    head = ", ".join(labels[:shown])
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return f"{len(labels)} of {total} shards ({head}{more})"
