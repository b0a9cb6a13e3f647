"""A test's JUnit file is untrusted input: read safely and bounded, or said why not."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from parallel_orch import junit
from parallel_orch.models import JUnitCounts

SUITE = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="s">
  <testcase classname="pkg.mod" name="test_ok" time="0.25" file="pkg/mod.py"/>
  <testcase classname="pkg.mod" name="test_bad"><failure message="assert 1 == 2
second line">trace</failure><system-out>noise</system-out></testcase>
  <testcase classname="pkg.mod" name="test_skip"><skipped message="not on linux"/></testcase>
  <testcase classname="pkg.mod" name="test_err"><error type="OSError">boom</error></testcase>
  <testsuite name="nested"><testcase classname="deep" name="inner" time="1,234.5"/></testsuite>
</testsuite></testsuites>
"""


def test_cases_keep_their_class_name_file_status_time_and_first_message_line(
    tmp_path: Path,
) -> None:
    """Every case, nested suites included, with its status and its message's first line."""
    path = tmp_path / "j.xml"
    path.write_text(SUITE)
    result = junit.parse(path)
    assert result.error is None
    assert result.counts == JUnitCounts(passed=2, failed=1, errors=1, skipped=1)
    by_name = {c.name: c for c in result.cases}
    assert by_name["test_ok"] == junit.Case("pkg.mod", "test_ok", "passed", 0.25, "pkg/mod.py")
    assert by_name["test_bad"].status == "failed"
    assert by_name["test_bad"].message == "assert 1 == 2 second line"  # attribute newlines: spaces
    assert by_name["test_skip"].message == "not on linux"
    assert by_name["test_err"].status == "error" and by_name["test_err"].message == "boom"
    assert by_name["inner"].time == 1234.5  # thousands separators, as some reporters write


def test_surefire_flaky_children_mean_the_case_passed(tmp_path: Path) -> None:
    """A case with only flakyFailure children passed on a rerun; rerunFailure means it never did."""
    path = tmp_path / "j.xml"
    path.write_text(
        "<testsuite><testcase name='a'><flakyFailure message='once'/></testcase>"
        "<testcase name='b'><rerunFailure message='again'/></testcase></testsuite>"
    )
    statuses = {c.name: c.status for c in junit.parse(path).cases}
    assert statuses == {"a": "passed", "b": "failed"}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"<testsuite><testcase name='a'>", "not valid XML"),
        (b"<?xml version='1.0' encoding='utf-8'?><testsuite><testcase name='\xff\xfe'/>", "XML"),
        (b"", "empty"),
    ],
    ids=["truncated", "not-utf8", "empty"],
)
def test_a_broken_file_is_unreadable_with_the_reason(
    tmp_path: Path, content: bytes, says: str
) -> None:
    """Malformed, non-UTF-8 or empty: no counts, no cases, and a reason naming the file."""
    path = tmp_path / "j.xml"
    path.write_bytes(content)
    result = junit.parse(path)
    assert result.counts is None and result.cases == ()
    assert result.error is not None and says in result.error and str(path) in result.error


def test_an_entity_bomb_costs_nothing(tmp_path: Path) -> None:
    """Billion laughs: refused or left unexpanded, never a gigabyte of memory."""
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    path = tmp_path / "bomb.xml"
    path.write_text(
        f'<?xml version="1.0"?><!DOCTYPE t [{entities}]><testsuite><testcase name="&l9;"/>'
        "</testsuite>"
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = junit.parse(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000
    assert all(len(c.name) <= junit.MAX_TEXT for c in result.cases)


def test_external_entities_are_never_fetched(tmp_path: Path) -> None:
    """An entity naming a local file does not put that file's content in the report."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    path = tmp_path / "xxe.xml"
    path.write_text(
        f'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<testsuite><testcase name="a"><failure message="m">&x;</failure></testcase></testsuite>'
    )
    result = junit.parse(path)
    assert "TOP-SECRET" not in repr(result)


def test_a_file_over_the_limit_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over MAX_BYTES: refused at once with its size, whatever it holds."""
    monkeypatch.setattr(junit, "MAX_BYTES", 1024)
    path = tmp_path / "big.xml"
    path.write_text("<testsuite>" + "<testcase name='x'/>" * 200 + "</testsuite>")
    result = junit.parse(path)
    assert result.counts is None
    assert result.error is not None and "MiB" in result.error


def test_cases_beyond_the_limit_are_counted_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of more cases than MAX_CASES keeps that many and counts them all."""
    monkeypatch.setattr(junit, "MAX_CASES", 10)
    path = tmp_path / "many.xml"
    path.write_text("<testsuite>" + "<testcase name='x'/>" * 25 + "</testsuite>")
    result = junit.parse(path)
    assert result.counts is not None and result.counts.passed == 25
    assert len(result.cases) == 10 and result.dropped == 15


def test_a_hundred_thousand_cases_are_read_in_flat_memory(tmp_path: Path) -> None:
    """100,000 cases: all counted and kept, memory far below the file's tree size."""
    path = tmp_path / "huge.xml"
    with path.open("w") as fh:
        fh.write("<testsuite>")
        for i in range(100_000):
            fh.write(f'<testcase classname="m{i % 7}" name="t{i}" time="0.001"><system-out>')
            fh.write("x" * 100)
            fh.write("</system-out></testcase>")
        fh.write("</testsuite>")
    result = junit.parse(path)
    assert result.counts is not None and result.counts.passed == 100_000
    assert len(result.cases) == 100_000


def test_a_fifo_a_link_or_a_missing_file_is_not_waited_on(tmp_path: Path) -> None:
    """Paths a test can plant instead of a file: each is said, none blocks the worker."""
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    link = tmp_path / "link.xml"
    link.symlink_to("/dev/zero")
    assert "not a regular file" in (junit.parse(fifo).error or "")
    assert junit.parse(link).error is not None
    assert "wrote no JUnit file" in (junit.parse(tmp_path / "none.xml").error or "")
