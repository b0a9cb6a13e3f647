"""What a fleet worker sends back of an attempt's files, and how it lands here."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from parallel_orch.executors import fleet_disk
from parallel_orch.executors.fleet_wire import FleetSettings, RemoteResult
from parallel_orch.executors.protocol import AttemptResult, AttemptSpec
from parallel_orch.models import ExecutionStatus, TestRequest


def _spec(tmp_path: Path) -> AttemptSpec:
    return AttemptSpec(
        session_id="s",
        execution_id=1,
        request=TestRequest(id="t", command="true", junit=True),
        sha="0" * 40,
        attempt=1,
        worker=0,
        log_path=tmp_path / "logs" / "t.1.log",
        junit_path=tmp_path / "junit" / "t.1.xml",
    )


def test_a_worker_sends_back_the_end_of_a_long_log_and_how_much_it_left(tmp_path: Path) -> None:
    """A log over the bound: its last bytes travel, with the count of those left behind."""
    path = tmp_path / "t.log"
    path.write_bytes(b"x" * 1000 + b"the end\n")
    assert fleet_disk.read_end(path, 8) == (b"the end\n", 1000)
    assert fleet_disk.read_end(path, 10_000) == (path.read_bytes(), 0)


def test_a_landed_log_says_what_stayed_on_the_worker_and_the_junit_file_is_whole(
    tmp_path: Path,
) -> None:
    """The state dir gets the log with a first line naming the bytes left, and the JUnit file."""
    spec = _spec(tmp_path)
    result = AttemptResult(ExecutionStatus.PASSED, 0, datetime.now(UTC), 0.1)
    remote = RemoteResult(result, log=b"last line\n", log_dropped=123, junit_xml=b"<testsuite/>")
    fleet_disk.write_files(spec, remote)
    assert spec.log_path.read_text() == (
        "parallel-orch: the first 123 bytes of this log stayed on the worker\nlast line\n"
    )
    assert spec.junit_path.read_bytes() == b"<testsuite/>"


def test_one_plugin_per_repo_and_settings_and_one_folder_per_repo() -> None:
    """Same settings: same plugin (workers' pools stay warm); another repo: its own folder."""
    a, b = FleetSettings(repo_url="/srv/app.git"), FleetSettings(repo_url="/srv/app.git")
    other = FleetSettings(repo_url="/srv/lib")
    assert a.plugin_name == b.plugin_name != other.plugin_name
    assert a.repo_dir_name.startswith("app-") and other.repo_dir_name.startswith("lib-")
    assert a.repo_dir_name != FleetSettings(repo_url="/elsewhere/app.git").repo_dir_name
