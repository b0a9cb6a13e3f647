"""Build a ParallelTestReport from the store."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from parallel_orch.models import FAILURE_STATUSES, ExecutionStatus
from parallel_orch.report.model import (
    AttemptResult,
    CaseCounts,
    CaseResult,
    DurationStats,
    GateResult,
    ParallelTestReport,
    SlowTest,
    StatusCounts,
    TestResult,
)
from parallel_orch.report.options import Gates
from parallel_orch.report.shards import merge_shards
from parallel_orch.store import (
    AttemptRecord,
    CaseRecord,
    ExecutionRecord,
    SessionRecord,
    Store,
)

SLOWEST = 10
_NOT_PASSED = frozenset({"failed", "error"})
_ERROR_LINE = re.compile(r"error|exception|failed|fatal|traceback|assert", re.IGNORECASE)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def duration_stats(sorted_durations: list[float]) -> DurationStats:
    durations = sorted_durations
    return DurationStats(
        sum=round(sum(durations), 6),
        mean=round(sum(durations) / len(durations), 6) if durations else 0.0,
        p50=percentile(durations, 50),
        p95=percentile(durations, 95),
        p99=percentile(durations, 99),
        max=durations[-1] if durations else 0.0,
    )


def case_totals(results: Iterable[TestResult]) -> CaseCounts:
    """JUnit cases over every result whose file was parsed."""
    parsed = [r.cases for r in results if r.cases]
    return CaseCounts(
        passed=sum(c.passed for c in parsed),
        failed=sum(c.failed for c in parsed),
        errors=sum(c.errors for c in parsed),
        skipped=sum(c.skipped for c in parsed),
    )


def count_statuses(results: list[TestResult]) -> StatusCounts:
    counts = Counter(r.status for r in results)
    total = len(results)
    passed = counts[ExecutionStatus.PASSED.value]
    return StatusCounts(
        total=total,
        passed=passed,
        failed=counts[ExecutionStatus.FAILED.value],
        timed_out=counts[ExecutionStatus.TIMED_OUT.value],
        errored=counts[ExecutionStatus.ERROR.value],
        skipped=counts[ExecutionStatus.SKIPPED.value],
        cancelled=counts[ExecutionStatus.CANCELLED.value],
        interrupted=counts[ExecutionStatus.INTERRUPTED.value],
        flaky=sum(r.flaky for r in results),
        success_rate=round(passed / total, 4) if total else 0.0,
    )


def _cases(records: Sequence[CaseRecord], *, final: bool) -> tuple[CaseResult, ...]:
    return tuple(
        CaseResult.model_construct(  # the store's own rows: no validation, 10x faster
            classname=c.classname,
            name=c.name,
            status=c.status,
            time=c.time,
            file=c.file,
            message=c.message,
        )
        for c in records
        if final or c.status in _NOT_PASSED
    )


def first_error(result: TestResult, output_tail: str) -> str | None:
    """What went wrong, in one line: the first failing case's message, else the error,
    else the last line of the log that reads like one."""
    final = result.attempts[-1] if result.attempts else None
    return _first_error(result.status, final.cases if final else (), result.error, output_tail)


def _first_error(
    status: str, cases: Sequence[CaseResult], error: str | None, output_tail: str
) -> str | None:
    if status == ExecutionStatus.PASSED.value:
        return None
    for case in cases:
        if case.status in _NOT_PASSED and case.message:
            return (
                f"{case.classname}.{case.name}: {case.message}" if case.classname else case.message
            )
    if error:
        return error
    lines = [line.strip() for line in output_tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line[:300]
    return lines[-1][:300] if lines else None


def _attempt(
    a: AttemptRecord, rows: Sequence[CaseRecord], *, final: bool, tail: bool
) -> AttemptResult:
    """One attempt; ``tail``: carry its log tail (a failed test's final attempt only, so a
    chatty passing suite does not make the report megabytes per test)."""
    return AttemptResult.model_construct(  # the store's own rows: no validation
        number=a.number,
        status=a.status,
        worker=a.worker,
        worktree=a.worktree,
        exit_code=a.exit_code,
        started_at=a.started_at,
        completed_at=a.completed_at,
        duration_seconds=a.duration_seconds,
        log_path=a.log_path,
        error=a.error,
        leaked=a.leaked,
        setup_seconds=a.setup_seconds,
        sharded=a.sharded,
        junit_error=a.junit_error,
        host=a.host,
        output_tail=a.output_tail if tail else "",
        cases=_cases(rows, final=final),
    )


def _result(
    execution: ExecutionRecord,
    attempts: list[AttemptRecord],
    case_rows: Mapping[int, Sequence[CaseRecord]],
) -> TestResult:
    final = attempts[-1] if attempts else None
    counts = None
    if final is not None and final.cases_passed is not None:
        counts = CaseCounts.model_construct(
            passed=final.cases_passed,
            failed=final.cases_failed or 0,
            errors=final.cases_errors or 0,
            skipped=final.cases_skipped or 0,
        )
    durations = [a.duration_seconds for a in attempts if a.duration_seconds is not None]
    failed = execution.status != ExecutionStatus.PASSED.value
    results = tuple(
        _attempt(a, case_rows.get(a.id, ()), final=a is final, tail=failed and a is final)
        for a in attempts
    )
    tail = final.output_tail if final else ""
    last_cases = results[-1].cases if results else ()
    return TestResult.model_construct(  # the store's own rows: no validation
        test_id=execution.test_id,
        status=execution.status,
        flaky=execution.flaky,
        category=execution.category,
        ref=execution.ref,
        sha=execution.sha,
        duration_seconds=round(sum(durations), 6) if durations else None,
        error=execution.error,
        cases=counts,
        attempts=results,
        leaky=any(a.leaked for a in attempts),
        quarantine=_quarantine(execution.request_json),
        first_error=_first_error(execution.status, last_cases, execution.error, tail),
    )


def _quarantine(request_json: str) -> str | None:
    reason = json.loads(request_json).get("quarantine")
    return reason if isinstance(reason, str) else None


def _request_content(request_json: str) -> str:
    """A request without ``plan_path``: where a plan lives is not an input, its content is."""
    request = json.loads(request_json)
    request.pop("plan_path", None)
    for key in (
        "quarantine",
        "coverage",
        "setup_inputs",
    ):  # keys newer than the first hashes: left out unset
        if not request.get(key):
            request.pop(key, None)
    return json.dumps(request, sort_keys=True)


def report_hash(status: str, executions: Iterable[ExecutionRecord]) -> str:
    """Stable over inputs (request content, commit SHAs) and verdicts; blind to timings."""
    material = [
        status,
        sorted(
            (e.test_id, _request_content(e.request_json), e.sha, e.status, e.flaky)
            for e in executions
        ),
    ]
    return hashlib.sha256(json.dumps(material, default=str).encode()).hexdigest()


def rehash(base: str, gates: Gates, verdicts: Sequence[GateResult]) -> str:
    """``base`` extended by the gate configuration and verdicts; ``base`` when there are none."""
    if not gates.any and not verdicts:
        return base
    material = [base, gates.model_dump(mode="json"), [(v.name, v.passed) for v in verdicts]]
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


async def build_report(store: Store, session_id: str) -> ParallelTestReport:
    """The report of a session (``session_id`` may be a unique prefix) as the store has it now."""
    session = await store.get_session(session_id)
    snapshot = await store.session_snapshot(session.id)
    return report_from(snapshot.session, snapshot.executions, snapshot.attempts, snapshot.cases)


async def load_report(store: Store, session_id: str) -> ParallelTestReport:
    """A session's stored report, or one built from the store while it has none yet."""
    return await report_of(store, await store.get_session(session_id))


async def report_of(store: Store, session: SessionRecord) -> ParallelTestReport:
    """:func:`load_report` of a session already read."""
    if session.report_json:
        return ParallelTestReport.model_validate_json(session.report_json)
    snapshot = await store.session_snapshot(session.id)
    return report_from(snapshot.session, snapshot.executions, snapshot.attempts, snapshot.cases)


def _slowest(results: Iterable[TestResult]) -> tuple[SlowTest, ...]:
    timed = [r for r in results if r.duration_seconds is not None]
    timed.sort(key=lambda r: r.duration_seconds or 0.0, reverse=True)
    return tuple(
        SlowTest(test_id=r.test_id, duration_seconds=r.duration_seconds or 0.0)
        for r in timed[:SLOWEST]
    )


def _by_attempt(cases: Iterable[CaseRecord]) -> dict[int, list[CaseRecord]]:
    found: dict[int, list[CaseRecord]] = defaultdict(list)
    for case in cases:
        found[case.attempt_id].append(case)
    return found


def report_from(
    session: SessionRecord,
    executions: Sequence[ExecutionRecord],
    attempts: Iterable[AttemptRecord],
    cases: Iterable[CaseRecord] = (),
) -> ParallelTestReport:
    """The report of ``session`` from its executions, attempts and JUnit cases."""
    by_execution: dict[int, list[AttemptRecord]] = defaultdict(list)
    for attempt in attempts:
        by_execution[attempt.execution_id].append(attempt)
    by_attempt = _by_attempt(cases)
    results = merge_shards([_result(e, by_execution.get(e.id, []), by_attempt) for e in executions])
    quarantined = [r.test_id for r in results if r.quarantine]
    totals = count_statuses(results)
    per_category: dict[str, list[TestResult]] = defaultdict(list)
    for result in results:
        per_category[result.category].append(result)
    durations = sorted(r.duration_seconds for r in results if r.duration_seconds is not None)
    busy = sum(a.duration_seconds or 0.0 for attempts in by_execution.values() for a in attempts)
    end = session.completed_at
    start = session.started_at or session.created_at
    wall = max((end - start).total_seconds(), 0.0) if end else 0.0
    return ParallelTestReport(
        session_id=session.id,
        status=session.status,
        started_at=start,
        completed_at=end,
        duration_seconds=round(wall, 6),
        total_tests=totals.total,
        tests_passed=totals.passed,
        tests_failed=totals.failed,
        tests_timed_out=totals.timed_out,
        tests_errored=totals.errored,
        tests_skipped=totals.skipped,
        tests_cancelled=totals.cancelled,
        tests_interrupted=totals.interrupted,
        tests_flaky=totals.flaky,
        tests_leaky=sum(r.leaky for r in results),
        success_rate=totals.success_rate,
        num_workers=session.num_workers,
        categories={name: count_statuses(rs) for name, rs in sorted(per_category.items())},
        duration_stats=duration_stats(durations),
        speedup=round(busy / wall, 3) if wall > 0 else 0.0,
        worker_utilisation=round(busy / (wall * session.num_workers), 3) if wall > 0 else 0.0,
        slowest_tests=_slowest(results),
        completed_tests=tuple(results),
        failed_tests=tuple(
            r.test_id for r in results if ExecutionStatus(r.status) in FAILURE_STATUSES
        ),
        cases=case_totals(results),
        tests_quarantined=len(quarantined),
        quarantined_tests=tuple(quarantined),
        report_hash=report_hash(session.status, executions),
    )
