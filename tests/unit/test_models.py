"""The shared vocabulary: request validation, session status, safe log names."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from parallel_orch import ExecutionStatus, SessionStatus, TestRequest
from parallel_orch.models import session_status_for
from parallel_orch.names import safe_name

E = ExecutionStatus


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], SessionStatus.NO_TESTS),
        ([E.PASSED, E.PASSED], SessionStatus.COMPLETE),
        ([E.PASSED, E.SKIPPED], SessionStatus.COMPLETE),
        ([E.PASSED, E.FAILED], SessionStatus.PARTIAL_SUCCESS),
        ([E.PASSED, E.TIMED_OUT, E.ERROR], SessionStatus.PARTIAL_SUCCESS),
        ([E.FAILED, E.ERROR], SessionStatus.FAILED),
        ([E.PASSED, E.CANCELLED], SessionStatus.CANCELLED),
        ([E.PASSED, E.INTERRUPTED, E.CANCELLED], SessionStatus.INTERRUPTED),
    ],
)
def test_session_status_follows_its_executions(
    statuses: list[ExecutionStatus], expected: SessionStatus
) -> None:
    """complete if all passed, partial_success if some, failed if none; cancel/interrupt win."""
    assert session_status_for(Counter(s.value for s in statuses)) is expected


def test_failures_are_failed_timed_out_and_error() -> None:
    """Only failed, timed_out and error count as failures (max_failures, retries)."""
    assert {s for s in ExecutionStatus if s.is_failure} == {E.FAILED, E.TIMED_OUT, E.ERROR}
    assert {s for s in ExecutionStatus if not s.is_final} == {E.PENDING, E.RUNNING}


@pytest.mark.parametrize("test_id", ["has space", "../up", "/abs", "a/../b", "semi;colon", ""])
def test_request_rejects_unsafe_ids(test_id: str) -> None:
    """A TestRequest id with unsafe characters or path climbing is refused."""
    with pytest.raises(ValidationError):
        TestRequest(id=test_id, command="true")


@pytest.mark.parametrize(
    ("field", "value"),
    [("command", ""), ("command", ()), ("cwd", "../x"), ("cwd", "/tmp"), ("timeout_seconds", 0)],
)
def test_request_rejects_bad_fields(field: str, value: object) -> None:
    """Empty commands, escaping cwd and non-positive timeouts are refused."""
    fields: dict[str, object] = {"id": "t", "command": "true", field: value}
    with pytest.raises(ValidationError):
        TestRequest.model_validate(fields)


def test_request_is_frozen_and_round_trips_through_json() -> None:
    """A TestRequest is immutable and survives JSON (how the store keeps it)."""
    request = TestRequest(
        id="a::b@main#2", command=("python", "-V"), env={"A": "1"}, keep=(".venv/",)
    )
    assert TestRequest.model_validate_json(request.model_dump_json()) == request
    with pytest.raises(ValidationError):
        request.id = "other"


@pytest.mark.parametrize("test_id", ["a/b/c", "..", "...", "x::y@feature/x#2", "a" * 300, "日本"])
def test_safe_names_stay_in_their_folder(test_id: str) -> None:
    """File names derived from ids have no separators, no leading dot and a bounded length."""
    name = safe_name(test_id)
    assert "/" not in name
    assert not name.startswith(".")
    assert len(name) <= 100


def test_safe_names_are_unique_per_id() -> None:
    """Ids that sanitise alike still get different file names."""
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name("x::y") != safe_name("x__y")
