"""`parallel-orch run` writes JUnit XML, CSV and a Chrome trace where asked, and says where."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import pytest

from tests.e2e.cli import run_cli
from tests.helpers import GitRepo

PLAN = """\
[[test]]
id = "ok"
run = "true"

[[test]]
id = "bad"
run = "echo broken; exit 4"
retries = 1
"""


@pytest.mark.slow
def test_run_writes_the_report_files_it_is_asked_for_and_prints_their_paths(
    repo: GitRepo,
) -> None:
    """--junit-xml, --csv, --csv-cases and --trace each write a file and name it on stderr."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "ci.toml").write_text(PLAN)
    out = repo.path / "out"
    out.mkdir()
    result = run_cli(
        [
            "run",
            "plans",
            "--junit-xml",
            "out/junit.xml",
            "--csv",
            "out/tests.csv",
            "--csv-cases",
            "out/cases.csv",
            "--trace",
            "out/trace.json",
        ],
        cwd=repo.path,
    )
    assert result.returncode == 1, result.stderr
    for name in ("junit.xml", "tests.csv", "cases.csv", "trace.json"):
        assert f"out/{name}" in result.stderr
    root = ET.parse(out / "junit.xml").getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "2", "1")
    (bad,) = [s for s in root if (s.get("name") or "").endswith("::bad")]
    (case,) = bad.iter("testcase")
    assert [c.tag for c in case] == ["failure", "rerunFailure", "system-out"]
    assert "broken" in (case.findtext("system-out") or "")
    with (out / "tests.csv").open(newline="") as fh:
        rows = {row["test_id"].split("::")[-1]: row for row in csv.DictReader(fh)}
    assert (rows["ok"]["status"], rows["bad"]["status"], rows["bad"]["attempts"]) == (
        "passed",
        "failed",
        "2",
    )
    assert (out / "cases.csv").read_text().splitlines()[0].startswith("test_id,classname,name")
    trace = json.loads((out / "trace.json").read_text())
    assert sum(e["ph"] == "X" and e["cat"] == "attempt" for e in trace["traceEvents"]) == 3


@pytest.mark.parametrize(
    ("target", "says"),
    [("/proc/parallel-orch-nope/r.xml", "cannot write the report"), ("out", "is a directory")],
    ids=["unwritable", "a-directory"],
)
def test_an_output_that_cannot_be_written_stops_the_run_before_it_starts(
    repo: GitRepo, target: str, says: str
) -> None:
    """Exit 3 with one line naming the path, and no session was run or recorded."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "ci.toml").write_text(PLAN)
    (repo.path / "out").mkdir()
    result = run_cli(["run", "plans", "--junit-xml", target], cwd=repo.path)
    assert result.returncode == 3, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (repo.path / ".parallel-orch" / "orch.sqlite3").exists()


def test_a_missing_output_folder_is_made(repo: GitRepo) -> None:
    """--markdown into folders that do not exist yet makes them and writes the file."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "ok.toml").write_text('[[test]]\nid = "ok"\nrun = "true"\n')
    result = run_cli(["run", "plans", "--markdown", "reports/ci/summary.md"], cwd=repo.path)
    assert result.returncode == 0, result.stderr
    assert (repo.path / "reports" / "ci" / "summary.md").read_text().startswith("## ")
