"""A test's JUnit XML file, read safely: its cases and their counts.

The file is whatever the test wrote, so it is untrusted input. It is streamed
with lxml's ``iterparse`` (each case is dropped once read, so memory does not
grow with the file), no DTD is loaded, no entity is expanded and nothing is
fetched from the network, so an entity bomb stays a few bytes. A file over
:data:`MAX_BYTES` is not read at all, and at most :data:`MAX_CASES` cases are
kept (all are counted). Whatever goes wrong, the attempt keeps its own status:
the result says why the file could not be read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from parallel_orch.models import JUnitCounts

if TYPE_CHECKING:
    from lxml import etree

MAX_BYTES = 32 * 1024 * 1024  # a bigger file is not read: it is reported as too large
MAX_CASES = 100_000  # kept per file; the rest are counted, not kept
MAX_TEXT = 500  # characters kept of a name, class name, file or message

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
# What a <testcase> child means, by tag; the first that applies wins. Surefire's
# flaky* children mean the case passed on a rerun; its rerun* children that it never did.
_OUTCOME = {
    "error": ERROR,
    "rerunError": ERROR,
    "failure": FAILED,
    "rerunFailure": FAILED,
    "skipped": SKIPPED,
}
_RANK = {PASSED: 0, SKIPPED: 1, FAILED: 2, ERROR: 3}


@dataclass(frozen=True, slots=True)
class Case:
    """One test case of a JUnit file."""

    classname: str
    name: str
    status: str  # passed, failed, error or skipped
    time: float | None = None  # seconds, when given
    file: str | None = None
    message: str | None = None  # the first line of its failure, error or skip reason


@dataclass(frozen=True, slots=True)
class JUnitResult:
    """What an attempt's JUnit file held, or why it could not be read."""

    counts: JUnitCounts | None = None  # None when the file could not be read
    cases: tuple[Case, ...] = ()
    dropped: int = 0  # cases counted but not kept (beyond MAX_CASES)
    error: str | None = None  # why the file could not be read, for the report

    @classmethod
    def unreadable(cls, why: str) -> JUnitResult:
        return cls(error=why)


def parse(path: Path) -> JUnitResult:
    """The cases in the JUnit file at ``path``; see the module docstring."""
    try:
        # Not following a link, not blocking on a FIFO: the test chose what is there.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return JUnitResult.unreadable(f"the test wrote no JUnit file at {path}")
    except OSError as exc:
        return JUnitResult.unreadable(f"cannot read the JUnit file {path}: {exc.strerror}")
    with open(fd, "rb") as source:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return JUnitResult.unreadable(f"the JUnit path {path} is not a regular file")
        if info.st_size == 0:
            return JUnitResult.unreadable(f"the JUnit file {path} is empty")
        if info.st_size > MAX_BYTES:
            return JUnitResult.unreadable(
                f"the JUnit file {path} is {info.st_size / 2**20:.1f} MiB, over the "
                f"{MAX_BYTES // 2**20} MiB that are read"
            )
        from lxml import etree  # when a file is read: runs of plain commands never need it

        try:
            return _tally(_cases(source))
        except etree.XMLSyntaxError as exc:
            return JUnitResult.unreadable(f"the JUnit file {path} is not valid XML: {exc.msg}")
        except OSError as exc:
            return JUnitResult.unreadable(f"cannot read the JUnit file {path}: {exc}")


def parse_counts(path: Path) -> JUnitCounts | None:
    """Passed, failed, errors and skipped cases in a JUnit file; None if missing or unreadable."""
    return parse(path).counts


@dataclass(slots=True)
class _Tally:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    kept: list[Case] = field(default_factory=list)
    dropped: int = 0


def _tally(cases: Iterator[Case]) -> JUnitResult:
    tally = _Tally()
    for case in cases:
        if case.status == ERROR:
            tally.errors += 1
        elif case.status == FAILED:
            tally.failed += 1
        elif case.status == SKIPPED:
            tally.skipped += 1
        else:
            tally.passed += 1
        if len(tally.kept) < MAX_CASES:
            tally.kept.append(case)
        else:
            tally.dropped += 1
    counts = JUnitCounts(
        passed=tally.passed, failed=tally.failed, errors=tally.errors, skipped=tally.skipped
    )
    return JUnitResult(counts=counts, cases=tuple(tally.kept), dropped=tally.dropped)


def _cases(source: BinaryIO) -> Iterator[Case]:
    """Every ``<testcase>``, wherever it is nested, as it is read.

    Every element is dropped once read (a case's children once the case is),
    so memory stays flat whatever the file holds.
    """
    from lxml import etree

    events = etree.iterparse(
        source,
        events=("end",),
        load_dtd=False,
        no_network=True,
        resolve_entities=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    for _, element in events:
        parent = element.getparent()
        if parent is not None and parent.tag == "testcase":
            continue  # read with its case
        if element.tag == "testcase":
            yield _case(element)
        element.clear(keep_tail=False)
        while parent is not None and element.getprevious() is not None:
            del parent[0]


def _case(element: etree._Element) -> Case:
    status, message = PASSED, None
    for child in element:
        outcome = _OUTCOME.get(child.tag) if isinstance(child.tag, str) else None
        if outcome is not None and _RANK[outcome] > _RANK[status]:
            status = outcome
            message = _first_line(child.get("message") or child.text or child.get("type") or "")
    return Case(
        classname=_clip(element.get("classname") or ""),
        name=_clip(element.get("name") or ""),
        status=status,
        time=_seconds(element.get("time")),
        file=_clip(element.get("file")) if element.get("file") else None,
        message=message or None,
    )


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.replace(",", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return _clip(line.strip())
    return ""


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
