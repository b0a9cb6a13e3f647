"""JUnit XML for CI test reporters: GitLab, Jenkins, the GitHub actions that read JUnit.

A ``<testsuites>`` root with the session's totals holds one ``<testsuite>`` per
execution, named by its test id, whose properties carry the session id,
category, ref, SHA, and the worker, worktree and log of its final attempt
(and the quarantine, shard count and why its JUnit file was unreadable, if so).
Inside it are the cases of the final attempt's own JUnit file when it was
parsed, else one ``<testcase>`` for the execution itself. That testcase is also
written beside parsed cases that do not carry the execution's outcome: the test
did not pass but no case failed (a crash, a timeout, an exit code of its own),
or it passed after an attempt whose failure no case shows. A sharded test's
shards are executions of their own in its suite, each with its cases.

Retries follow Maven Surefire's conventions (``surefire-test-report-3.0.xsd``),
which those reporters know. A test that passed after failing (flaky) passes,
with one ``<flakyFailure>`` or ``<flakyError>`` per failed attempt. A test that
failed every attempt has a ``<failure>`` (or ``<error>``) with the first
attempt's detail, then one ``<rerunFailure>`` or ``<rerunError>`` per rerun.
Inner cases follow the same rules, matched across attempts by class name and
name. Failed and timed out are failures (``type="timeout"`` for a timeout);
error and interrupted, the infrastructure's failures, are errors; skipped and
cancelled are ``<skipped>`` with the reason.

Quarantine: a quarantined test has the property ``quarantine`` (the reason).
When it did not pass, it is written as ``<skipped message="quarantined: ...">``
with what went wrong, as pytest writes an expected failure (xfail): its
failure gates nothing and the exit code ignores it, so it must not turn a CI
reporter red either (Jenkins marks a build unstable on any failure). A
quarantined test that passed is an ordinary pass.

Names: no two testcases in the file share class name and name, since GitLab
keeps only the first of duplicates. The execution's own testcase is named by
its test id, which names the ref of a matrix (``@ref``) and the run of a
repeat (``#n``); an inner case of such an execution gets the same suffix; a
name still taken gets `` [test id]``, then a number.

Text: characters XML 1.0 forbids (test output is full of control characters)
are removed. ``<system-out>`` holds the bounded log tail the report keeps for a
test that did not pass. Times are seconds to the millisecond; timestamps are
ISO 8601 in UTC. Written with lxml, never by joining strings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from parallel_orch.report.model import AttemptResult, CaseResult, ParallelTestReport, TestResult

FAILURE, ERROR, SKIPPED = "failure", "error", "skipped"
# What a status (of an execution, attempt or case) is to a CI reporter; a pass is absent.
_KIND = {
    "failed": FAILURE,
    "timed_out": FAILURE,
    "error": ERROR,
    "interrupted": ERROR,
    "skipped": SKIPPED,
    "cancelled": SKIPPED,
}
_TYPE = {"timed_out": "timeout"}  # the ``type`` of a failure; otherwise the status itself
_RERUN = {FAILURE: "rerunFailure", ERROR: "rerunError"}
_FLAKY = {FAILURE: "flakyFailure", ERROR: "flakyError"}
# Surefire's order of a testcase's children.
_SUREFIRE = (FAILURE, "rerunFailure", "flakyFailure", SKIPPED, ERROR, "rerunError", "flakyError")
_ORDER = {tag: n for n, tag in enumerate(_SUREFIRE)}
# Everything XML 1.0 allows: tab, newline, carriage return and the rest minus surrogates.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids."""
    if text.isascii() and text.isprintable():  # most names and paths: nothing to look for
        return text
    return _FORBIDDEN.sub("", text)


@dataclass(slots=True)
class Tally:
    """Testcases written, by what a CI reporter counts them as."""

    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0

    def count(self, kind: str | None) -> None:
        self.tests += 1
        if kind == FAILURE:
            self.failures += 1
        elif kind == ERROR:
            self.errors += 1
        elif kind == SKIPPED:
            self.skipped += 1

    def add(self, other: Tally) -> None:
        self.tests += other.tests
        self.failures += other.failures
        self.errors += other.errors
        self.skipped += other.skipped

    def write(self, element: Any) -> None:
        for name in ("tests", "failures", "errors", "skipped"):
            element.set(name, str(getattr(self, name)))


class Names:
    """Gives each testcase a (class name, name) pair that no other in the file has."""

    def __init__(self) -> None:
        self._taken: set[tuple[str, str]] = set()

    def unique(self, classname: str, name: str, test_id: str) -> str:
        candidate = name
        if (classname, candidate) in self._taken:
            candidate = f"{name} [{test_id}]"
            n = 2
            while (classname, candidate) in self._taken:
                candidate, n = f"{name} [{test_id}] ({n})", n + 1
        self._taken.add((classname, candidate))
        return candidate


def render(report: ParallelTestReport) -> str:
    """The report as one JUnit XML document; see the module docstring."""
    root = etree.Element("testsuites", name=clean(f"parallel-orch session {report.session_id}"))
    names = Names()
    total = Tally()
    for test in report.completed_tests:
        total.add(_suite(root, test, report.session_id, names))
    total.write(root)
    root.set("time", _seconds(report.duration_seconds))
    if report.started_at is not None:
        root.set("timestamp", _timestamp(report.started_at))
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return xml.decode("utf-8")


@dataclass(frozen=True, slots=True)
class Run:
    """The attempts of one execution: the test's own, or one shard's of a sharded test."""

    test_id: str
    status: str
    attempts: tuple[AttemptResult, ...]
    what: str  # what went wrong, in one line, when it did
    error: str | None
    duration_seconds: float | None


def runs(test: TestResult) -> list[Run]:
    """``test``'s executions: itself, or each of its shards (whose attempts are its own)."""
    if not test.shards or not test.attempts:
        whole = (test.status, test.attempts, _what(test), test.error, test.duration_seconds)
        return [Run(test.test_id, *whole)]
    by_shard: dict[str, list[AttemptResult]] = defaultdict(list)
    for attempt in test.attempts:
        by_shard[attempt.shard or ""].append(attempt)
    found = []
    for label, attempts in by_shard.items():
        final, prefix = attempts[-1], f"[{label}] "
        what = test.first_error or ""
        what = what[len(prefix) :] if what.startswith(prefix) else _describe(final)
        durations = [a.duration_seconds for a in attempts if a.duration_seconds is not None]
        seconds = sum(durations) if durations else None
        run_id = f"{test.test_id}[{label}]"
        found.append(Run(run_id, final.status, tuple(attempts), what, final.error, seconds))
    return found


def _suite(parent: Any, test: TestResult, session_id: str, names: Names) -> Tally:
    suite = etree.SubElement(parent, "testsuite", name=clean(test.test_id))
    _properties(suite, test, session_id)
    tally = Tally()
    tails = []
    for run in runs(test):
        tail = _run(suite, test, run, names, tally)
        if tail:
            tails.append(f"[{run.test_id}]\n{tail}" if test.shards else tail)
    if tails:
        etree.SubElement(suite, "system-out").text = clean("\n".join(tails))
    tally.write(suite)
    suite.set("time", _seconds(test.duration_seconds))
    if test.attempts:
        suite.set("timestamp", _timestamp(test.attempts[0].started_at))
    return tally


def _run(suite: Any, test: TestResult, run: Run, names: Names, tally: Tally) -> str | None:
    """``run``'s testcases: its final attempt's cases, and its own when they do not show
    its outcome; its log tail when no testcase of its own holds it."""
    final = run.attempts[-1] if run.attempts else None
    cases = final.cases if final is not None else ()
    earlier = _earlier_failures(run.attempts[:-1])
    shown: set[int] = set()  # earlier attempts whose failure a case shows
    failing = False
    variant = _variant(test.test_id)
    for case in cases:
        before = earlier.get((case.classname, case.name), []) if earlier else []
        tally.count(_case(suite, test, run, case, variant, before, names))
        shown.update(a.number for a, _ in before)
        failing = failing or _KIND.get(case.status) in _RERUN  # quarantined or not
    passed = run.status == "passed"
    unshown = any(a.number not in shown for a in run.attempts[:-1] if _KIND.get(a.status) in _RERUN)
    tail = final.output_tail if final is not None else None
    if not cases or (not passed and not failing) or (passed and unshown):
        tally.count(_execution_case(suite, test, run, names, tail))
        return None
    return tail


def _properties(suite: Any, test: TestResult, session_id: str) -> None:
    final = test.attempts[-1] if test.attempts else None
    values: dict[str, object | None] = {
        "session_id": session_id,
        "category": test.category,
        "ref": test.ref,
        "sha": test.sha,
        "shards": test.shards or None,
        "worker": final.worker if final else None,
        "worktree": final.worktree if final else None,
        "log": final.log_path if final else None,
        "quarantine": test.quarantine,
        "junit_error": final.junit_error if final else None,
    }
    properties = etree.SubElement(suite, "properties")
    for name, value in values.items():
        if value is not None and value != "":
            etree.SubElement(properties, "property", name=name, value=clean(str(value)))


def _earlier_failures(
    attempts: Sequence[AttemptResult],
) -> dict[tuple[str, str], list[tuple[AttemptResult, CaseResult]]]:
    """The cases that failed in attempts before the final one, by class name and name."""
    found: dict[tuple[str, str], list[tuple[AttemptResult, CaseResult]]] = defaultdict(list)
    for attempt in attempts:
        for case in attempt.cases:
            if _KIND.get(case.status) in _RERUN:
                found[(case.classname, case.name)].append((attempt, case))
    return found


def _case(
    suite: Any,
    test: TestResult,
    run: Run,
    case: CaseResult,
    variant: str,
    earlier: list[tuple[AttemptResult, CaseResult]],
    names: Names,
) -> str | None:
    """One inner case of the final attempt; what it counts as."""
    classname = clean(case.classname)
    element = etree.SubElement(
        suite,
        "testcase",
        name=names.unique(classname, clean(case.name + variant), test.test_id),
        classname=classname,
        time=_seconds(case.time),
    )
    if case.file:
        element.set("file", clean(case.file))
    kind = _KIND.get(case.status)
    if kind is None and not earlier:
        return None  # the common case: it passed, and did every time
    children: list[Any] = []
    if kind in _RERUN and test.quarantine is not None:
        kind = SKIPPED
        children.append(_skipped(f"quarantined: {test.quarantine}: {case.message or ''}"))
    elif kind is None:
        children += [_marker(_FLAKY, c.status, a, c.message) for a, c in earlier]
    elif kind == SKIPPED:
        children.append(_skipped(case.message or "skipped"))
    else:
        first_attempt, first = earlier[0] if earlier else (None, case)
        where = f"attempt {first_attempt.number}: " if first_attempt else ""
        children.append(_primary(kind, case.status, case.message, where + (first.message or "")))
        if earlier:
            reruns = [*earlier[1:], (run.attempts[-1], case)]
            children += [_marker(_RERUN, c.status, a, c.message) for a, c in reruns]
    _append(element, children)
    return kind


def _execution_case(
    suite: Any, test: TestResult, run: Run, names: Names, tail: str | None
) -> str | None:
    """The execution's own testcase, for all its attempts; what it counts as."""
    classname = test.test_id.rpartition("::")[0] or "parallel-orch"
    element = etree.SubElement(
        suite,
        "testcase",
        name=names.unique(classname, run.test_id, run.test_id),
        classname=classname,
        time=_seconds(run.duration_seconds),
    )
    kind = _KIND.get(run.status)
    failed = [a for a in run.attempts if _KIND.get(a.status) in _RERUN]
    children: list[Any] = []
    if kind in _RERUN and test.quarantine is not None:
        kind = SKIPPED
        children.append(_skipped(f"quarantined: {test.quarantine}: {run.what}"))
    elif kind is None:
        children += [_marker(_FLAKY, a.status, a, _describe(a)) for a in failed]
    elif kind == SKIPPED:
        children.append(_skipped(f"{run.status}: {run.error}" if run.error else run.status))
    else:
        first = run.attempts[0] if run.attempts else None
        detail = _detail(first) if first else run.error or run.status
        children.append(_primary(kind, run.status, run.what, detail))
        children += [_marker(_RERUN, a.status, a, _describe(a)) for a in run.attempts[1:]]
    if tail:
        out = etree.Element("system-out")
        out.text = clean(tail)
        children.append(out)
    _append(element, children)
    return kind


def _append(testcase: Any, children: list[Any]) -> None:
    """``children`` in Surefire's order (the sort is stable: attempts stay in order)."""
    children.sort(key=lambda child: _ORDER.get(child.tag, len(_ORDER)))
    testcase.extend(children)


def _primary(kind: str, status: str, message: str | None, text: str) -> Any:
    element = etree.Element(kind, type=_TYPE.get(status, status))
    if message:
        element.set("message", clean(message))
    element.text = clean(text)
    return element


def _marker(tags: dict[str, str], status: str, attempt: AttemptResult, message: str | None) -> Any:
    """A ``flaky*`` or ``rerun*`` child for one attempt, by the kind of its status."""
    kind = _KIND.get(status, ERROR)
    element = etree.Element(tags.get(kind, tags[ERROR]), type=_TYPE.get(status, status))
    if message:
        element.set("message", clean(message))
    etree.SubElement(element, "stackTrace").text = clean(_detail(attempt, message))
    return element


def _skipped(message: str) -> Any:
    return etree.Element(SKIPPED, message=clean(message))


def _describe(attempt: AttemptResult) -> str:
    """What happened to ``attempt``, in one line."""
    if attempt.error:
        return f"{attempt.status}: {attempt.error}"
    if attempt.exit_code is not None:
        return f"{attempt.status}: exit code {attempt.exit_code}"
    return attempt.status


def _detail(attempt: AttemptResult, message: str | None = None) -> str:
    """Where and how ``attempt`` ran, for a reader who wants to look."""
    return (
        f"attempt {attempt.number}: {message or _describe(attempt)}\n"
        f"worker {attempt.worker}{f' on {attempt.host}' if attempt.host else ''}, "
        f"worktree {attempt.worktree or '-'}\n"
        f"log: {attempt.log_path}"
    )


def _what(test: TestResult) -> str:
    """What went wrong with ``test``, in one line."""
    final = test.attempts[-1] if test.attempts else None
    return test.first_error or test.error or (_describe(final) if final else test.status)


def _variant(test_id: str) -> str:
    """The ``@ref`` and ``#n`` of a matrix or repeat's test id, or nothing."""
    local = test_id.rpartition("::")[2]
    starts = [i for i in (local.find("@"), local.find("#")) if i >= 0]
    return local[min(starts) :] if starts else ""


def _seconds(value: float | None) -> str:
    return f"{max(value or 0.0, 0.0):.3f}"


def _timestamp(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")
