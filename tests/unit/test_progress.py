"""Live progress: the ETA's arithmetic, a bar on a terminal, plain lines in a pipe."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from rich.console import Console

from parallel_orch import events, progress
from parallel_orch.eta import estimate
from parallel_orch.events import Event


@pytest.mark.parametrize(
    ("queued", "running", "workers", "expected"),
    [
        ([], [], 4, 0.0),
        ([10, 10], [4], 2, 12.0),  # 24 s of work over two workers
        ([10, 10, 10, 10], [], 4, 10.0),
        ([60], [1, 1], 4, 60.0),  # one long test is not shared: it bounds the rest
        ([3], [], 0, 3.0),  # no workers counts as one
    ],
)
def test_eta_is_the_work_left_over_the_workers_never_less_than_the_longest_part(
    queued: list[float], running: list[float], workers: int, expected: float
) -> None:
    """ETA = max(sum of work left / workers, longest single part)."""
    assert estimate(queued, running, workers) == expected


def session(total: int) -> list[Event]:
    """A session of ``total`` tests: one retried then failed, the others passed."""
    sid = "s1"
    started = events.attempt_started(
        sid, test_id="unit::b", execution_id=2, attempt=1, worker=0, worktree=None, log_path="/l"
    )
    out = [events.session_started(sid, total), started]
    out.append(
        events.attempt_finished(
            started, status="failed", exit_code=1, duration_seconds=1.0, error=None
        )
    )
    out.append(
        events.test_retrying(
            sid,
            test_id="unit::b",
            execution_id=2,
            attempt=2,
            status="failed",
            delay_seconds=0.5,
            error=None,
        )
    )
    out.append(
        events.test_finished(
            sid, test_id="unit::a", execution_id=1, status="passed", duration_seconds=2.0
        )
    )
    out.append(
        events.test_finished(
            sid,
            test_id="unit::b",
            execution_id=2,
            status="failed",
            duration_seconds=1.0,
            error="exit code 1",
        )
    )
    return out


class EtaSource:
    """Answers a fixed ETA, and records which sessions it was asked about."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.asked: list[str] = []
        self.answered = anyio.Event()

    async def __call__(self, session_id: str) -> float | None:
        self.asked.append(session_id)
        self.answered.set()
        return self.seconds


async def stream(items: list[Event], source: EtaSource) -> AsyncIterator[Event]:
    """The events, the rest only once the ETA has been read after the first."""
    yield items[0]
    with anyio.fail_after(5):
        await source.answered.wait()
    await anyio.lowlevel.checkpoint()  # the answer is stored once the source returns
    for item in items[1:]:
        yield item


async def test_in_a_pipe_each_finished_test_is_a_plain_line_with_where_the_session_stands() -> None:
    """No bar off a terminal: one line per finished or retried test, ``[done/total]`` after it."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=40)
    source = EtaSource(None)
    await progress.show(stream(session(3), source), console, 2, quiet=False, eta=source)
    assert out.getvalue().splitlines() == [
        "RETRY       unit::b (failed; attempt 2 in 0.5s)",
        "PASSED      unit::a 2.00s  [1/3]",
        "FAILED      unit::b 1.00s  [2/3]  exit code 1",
    ]
    assert source.asked[:1] == ["s1"]


async def test_on_a_terminal_a_bar_shows_done_of_total_and_the_eta() -> None:
    """A terminal gets a redrawn bar with done/total and the ETA its source gives."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    source = EtaSource(42.0)
    await progress.show(stream(session(3), source), console, 2, quiet=False, eta=source)
    drawn = out.getvalue()
    assert "━" in drawn and "2/3" in drawn
    assert re.search(r"ETA 4[12]s", drawn)
    assert "FAILED      unit::b 1.00s  exit code 1" in drawn  # a failure stays above the bar


def test_the_eta_counts_down_between_reads() -> None:
    """Between two reads of its source the ETA runs down with the clock, never below zero."""
    state = progress.ProgressState(2)
    assert state.eta() is None and state.eta_text() == ""
    state.set_eta(30.0)
    left = state.eta()
    assert left is not None and 29.0 < left <= 30.0
    state.set_eta(0.0)
    assert state.eta() == 0.0 and state.eta_text() == "ETA <1s"
    for event in session(3):
        state.apply(event)
    assert (state.done, state.failed, state.queued, state.retrying) == (2, 1, 1, 1)
    assert state.line_suffix() == "[2/3, ETA <1s]"
