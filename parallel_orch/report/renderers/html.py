"""One self-contained HTML page: what ran where and when, what failed, the verdicts.

The page needs no network: its CSS, script and SVG are inline. The summary
parts (counts, gates, failures, flaky and quarantined tests, notes, categories, the
comparison, coverage, the duration histogram) are rendered by the template and
read without script. The worker timeline is drawn by a small inline script
from the attempts embedded once as JSON, so that 20,000 tests cost one compact
array rather than 20,000 template-rendered elements. Long lists are cut, and
say how many they leave out: the page stays under 10 MB whatever the session.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2

from parallel_orch.report.model import AttemptResult, ParallelTestReport, TestResult
from parallel_orch.report.renderers import html_charts, words

MAX_FAILURES = 500  # failures shown in full; the rest are counted
MAX_TAILS = 50  # failures whose log tail is shown
TAIL_LINES = 40
TAIL_CHARS = 4_000
MAX_FAILED_CASES = 20  # per failure
MAX_LISTED = 200  # rows of any other list: flaky, quarantined, comparison, coverage files

#: Execution statuses in the order the legend shows them; unknown ones are added after.
STATUSES = (
    "passed",
    "failed",
    "timed_out",
    "error",
    "interrupted",
    "cancelled",
    "skipped",
    "running",
    "pending",
)
_FAILING = frozenset({"failed", "timed_out", "error", "interrupted"})


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed test as the page shows it."""

    index: int  # its position in the report: the timeline's bars name it so
    test: TestResult
    log_path: str
    host: str  # the fleet worker its final attempt ran on ("" here)
    tail: str | None  # the last lines of its final attempt's log, or None when not shown
    failed_cases: Sequence[str]
    more_cases: int


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("parallel_orch.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["seconds"] = seconds
    env.filters["label"] = lambda status: str(status).replace("_", " ")
    env.filters["gate_value"] = lambda value, name: words.gate_value(name, value)
    return env


def render(report: ParallelTestReport) -> str:
    """The report as one HTML page; see the module docstring."""
    template = _environment().get_template("report.html.j2")
    return template.render(**context(report))


def context(report: ParallelTestReport) -> dict[str, Any]:
    """What the template is given: the report, its cut lists, its charts and the JSON data."""
    tests = report.completed_tests
    failing = [(i, t) for i, t in enumerate(tests) if t.status in _FAILING]
    return {
        "r": report,
        "failures": [
            _failure(i, t, tail=n < MAX_TAILS) for n, (i, t) in enumerate(failing[:MAX_FAILURES])
        ],
        "failures_total": len(failing),
        "flaky": [t for t in tests if t.flaky],
        "quarantined": [t for t in tests if t.quarantine],
        "noted": [t for t in tests if t.notes],
        "category_gates": {
            g.name[len("min_pass_rate[") : -1]: g
            for g in report.gates
            if g.name.startswith("min_pass_rate[")
        },
        "legend": [s for s in STATUSES if s not in ("running", "pending")],
        "histogram": html_charts.histogram(tests),
        "attempts_total": sum(len(t.attempts) for t in tests),
        "limit": MAX_LISTED,
        "data": script_json(timeline_data(report)),
    }


def _failure(index: int, test: TestResult, *, tail: bool) -> Failure:
    final = test.attempts[-1] if test.attempts else None
    cases = [
        f"{c.classname}.{c.name}" if c.classname else c.name
        for c in (final.cases if final else ())
        if c.status in ("failed", "error")
    ]
    return Failure(
        index=index,
        test=test,
        log_path=final.log_path if final else "",
        host=final.host if final else "",
        tail=log_tail(final.output_tail) if tail and final and final.output_tail else None,
        failed_cases=cases[:MAX_FAILED_CASES],
        more_cases=max(0, len(cases) - MAX_FAILED_CASES),
    )


def log_tail(text: str) -> str:
    """The last :data:`TAIL_LINES` lines of ``text``, at most :data:`TAIL_CHARS` characters."""
    lines = text.rstrip("\n").splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


def timeline_data(report: ParallelTestReport) -> dict[str, Any]:
    """The attempts as compact rows for the timeline's script.

    Each row is ``[test index, attempt number, worker, start, setup, duration, status index,
    host index]``, times in seconds from ``origin`` rounded to the millisecond. The setup, when
    the attempt set its worktree up, runs from ``start``; the command follows it. Hosts are a
    fleet's Dask workers ("" for this machine).
    """
    tests = report.completed_tests
    origin = _origin(report)
    statuses = list(STATUSES)
    rows: list[list[int | float]] = []
    hosts = [""]
    workers = set(range(report.num_workers))
    span = report.duration_seconds
    for index, test in enumerate(tests):
        for attempt in test.attempts:
            if attempt.status not in statuses:
                statuses.append(attempt.status)
            start = _epoch(attempt.started_at) - origin if origin is not None else 0.0
            setup = attempt.setup_seconds or 0.0
            duration = _duration(attempt, setup)
            workers.add(attempt.worker)
            if attempt.host not in hosts:
                hosts.append(attempt.host)
            span = max(span, start + setup + duration)
            rows.append(
                [
                    index,
                    attempt.number,
                    attempt.worker,
                    round(start, 3),
                    round(setup, 3),
                    round(duration, 3),
                    statuses.index(attempt.status),
                    hosts.index(attempt.host),
                ]
            )
    return {
        "origin": datetime.fromtimestamp(origin, UTC).isoformat() if origin is not None else None,
        "span": round(span, 3),
        "workers": sorted(workers),
        "statuses": statuses,
        "tests": [t.test_id for t in tests],
        "final": [statuses.index(t.status) if t.status in statuses else 0 for t in tests],
        "attempts": rows,
        "hosts": hosts,
    }


def _origin(report: ParallelTestReport) -> float | None:
    starts = [_epoch(a.started_at) for t in report.completed_tests for a in t.attempts]
    if report.started_at is not None:
        starts.append(_epoch(report.started_at))
    return min(starts) if starts else None


def _epoch(moment: datetime) -> float:
    """Seconds since the epoch; the store's naive datetimes are UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _duration(attempt: AttemptResult, setup: float) -> float:
    if attempt.duration_seconds is not None:
        return max(attempt.duration_seconds, 0.0)
    if attempt.completed_at is None:
        return 0.0
    return max(_epoch(attempt.completed_at) - _epoch(attempt.started_at) - setup, 0.0)


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u`` escapes, which JSON reads back as the same
    characters, so no ``</script>`` or ``<!--`` in a test's text can end the element.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def seconds(value: float | None) -> str:
    """A duration for people: ``0.042 s``, ``3.20 s``, ``2 m 05 s``, ``1 h 02 m``."""
    if value is None:
        return "-"
    if value == 0:
        return "0 s"
    if value < 1:
        return f"{value:.3f} s"
    if value < 60:
        return f"{value:.2f} s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} m"
