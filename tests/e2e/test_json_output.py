"""Every `--json` output gives its times as the protocol does: ISO 8601, UTC, with `Z`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cli import run_cli
from tests.e2e.conftest import StartDaemon, write_plan
from tests.helpers import GitRepo

ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
LOOKS_LIKE_A_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")
PLAN = '[[test]]\nid = "ok"\nrun = "true"\n[[test]]\nid = "bad"\nrun = "exit 3"\n'


def times(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in ``value`` that looks like a date and time, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from times(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from times(item, f"{path}[{index}]")
    elif isinstance(value, str) and LOOKS_LIKE_A_TIME.match(value):
        yield path, value


def json_of(args: list[str], repo: GitRepo) -> Any:
    result = run_cli(args, cwd=repo.path)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def assert_iso_z(value: Any, *, at_least: int) -> None:
    found = list(times(value))
    assert len(found) >= at_least, found
    wrong = [(where, text) for where, text in found if not ISO_Z.fullmatch(text)]
    assert wrong == []


def test_sessions_and_show_give_times_in_utc_with_z(repo: GitRepo) -> None:
    """`sessions --json` (it used to print '2026-01-01 00:00:00+00:00'), `show --json`, the
    report file: every time is ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    write_plan(repo.path, "mixed.toml", PLAN)
    assert run_cli(["run", "plans", "-q", "--report-json", "r.json"], cwd=repo.path).returncode == 1
    rows = json_of(["sessions", "--json"], repo)
    assert_iso_z(rows, at_least=2)  # created_at and completed_at
    assert_iso_z(json_of(["show", rows[0]["session_id"], "--json"], repo), at_least=6)
    assert_iso_z(json.loads((repo.path / "r.json").read_text()), at_least=6)


@pytest.mark.slow
def test_the_daemon_commands_give_times_in_utc_with_z(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`status ID --json`, `report ID --json` and `sessions --json --socket` alike."""
    write_plan(repo.path, "mixed.toml", PLAN)
    daemon = start_daemon(repo.path)
    sock = ["--socket", str(daemon.socket)]
    submitted = run_cli(["submit", "plans", "--wait", *sock], cwd=repo.path)
    session_id = submitted.stdout.splitlines()[0]
    assert_iso_z(json_of(["status", session_id, "--json", *sock], repo), at_least=2)
    assert_iso_z(json_of(["report", session_id, "--json", *sock], repo), at_least=6)
    assert_iso_z(json_of(["sessions", "--json", *sock], repo), at_least=2)
    assert_iso_z(json_of(["status", "--json", *sock], repo), at_least=0)
