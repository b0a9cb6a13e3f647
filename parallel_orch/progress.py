"""Live progress from the event stream: a bar with an ETA on a terminal, plain lines otherwise.

The ETA comes from an :data:`EtaSource` (the store's, or the daemon's ``status``),
read again every :data:`ETA_REFRESH_SECONDS` and counted down in between.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from parallel_orch.events import Event, EventType
from parallel_orch.models import FAILURE_STATUSES
from parallel_orch.report.renderers import words
from parallel_orch.report.renderers.words import STATUS_STYLE, label, seconds

REFRESH_PER_SECOND = 8
BAR_WIDTH = 20  # columns: the whole line fits 80
ETA_REFRESH_SECONDS = 1.0  # how often the ETA is read again from its source, at most
ETA_READ_SHARE = 5  # ... and never more than one fifth of the time (a read may be slow)

#: A session id -> seconds it has left (None: ended, or nothing to go on).
EtaSource = Callable[[str], Awaitable[float | None]]


class ProgressState:
    """Counts, per-worker activity and the ETA, folded from events."""

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self.total = 0
        self.finished: Counter[str] = Counter()
        self.running: dict[int, tuple[str, datetime]] = {}  # worker -> (what, since)
        self.retrying = 0
        self._eta: float | None = None
        self._eta_read = 0.0  # monotonic time the ETA was read

    @property
    def done(self) -> int:
        return sum(self.finished.values())

    @property
    def failed(self) -> int:
        return sum(self.finished[s.value] for s in FAILURE_STATUSES)

    @property
    def queued(self) -> int:
        return max(0, self.total - self.done - len(self.running))

    def apply(self, event: Event) -> None:
        if event.type is EventType.SESSION_STARTED:
            self.total += event.total or 0
        elif event.type is EventType.ATTEMPT_STARTED and event.worker is not None:
            self.running[event.worker] = (f"{event.test_id} (attempt {event.attempt})", event.at)
        elif event.type is EventType.ATTEMPT_FINISHED and event.worker is not None:
            self.running.pop(event.worker, None)
        elif event.type is EventType.TEST_RETRYING:
            self.retrying += 1
        elif event.type is EventType.TEST_FINISHED and event.status:
            self.finished[event.status] += 1

    def set_eta(self, seconds_left: float | None) -> None:
        self._eta = seconds_left
        self._eta_read = time.monotonic()

    def eta(self) -> float | None:
        """Seconds left: as last read, less the time since."""
        if self._eta is None:
            return None
        return max(0.0, self._eta - (time.monotonic() - self._eta_read))

    def eta_text(self) -> str:
        left = self.eta()
        return "" if left is None else words.eta(left)

    def counts(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"passed {self.finished['passed']}", style="green")
        if self.failed:
            text.append(f"  failed {self.failed}", style="red")
        text.append(f"  running {len(self.running)}  queued {self.queued}")
        if self.retrying:
            text.append(f"  retries {self.retrying}", style="yellow")
        return text

    def workers(self) -> Table:
        now = datetime.now(UTC)
        table = Table(show_header=True, box=None, pad_edge=False)
        table.add_column("worker", justify="right")
        table.add_column("running")
        table.add_column("for", justify="right")
        for worker in range(max(self.num_workers, max(self.running, default=-1) + 1)):
            what, since = self.running.get(worker, ("-", None))
            took = seconds(max(0.0, (now - since).total_seconds())) if since else ""
            table.add_row(str(worker), Text(what), took)  # ids are user text: never markup
        return table

    def line_suffix(self) -> str:
        """``[3/10, ETA 40s]``: where a plain line's session stands."""
        eta = self.eta_text()
        return f"[{self.done}/{self.total}{', ' + eta if eta else ''}]"


class _Counts(ProgressColumn):
    def __init__(self, state: ProgressState) -> None:
        super().__init__()
        self.state = state

    def render(self, task: Task) -> Text:
        return self.state.counts()


class _Eta(_Counts):
    def render(self, task: Task) -> Text:
        return Text(self.state.eta_text(), style="cyan", no_wrap=True)


def bar(state: ProgressState, console: Console) -> Progress:
    """The progress bar: done of total, counts, time elapsed and the ETA (all read live)."""
    return Progress(
        BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(),
        _Eta(state),
        TimeElapsedColumn(),
        _Counts(state),
        console=console,
        auto_refresh=False,
    )


def event_line(event: Event, where: str = "") -> str | None:
    """One plain line per finished or retrying test (for logs and pipes); ``where`` the
    session stands goes after a finished test's time, before its error."""
    if event.type is EventType.TEST_FINISHED:
        took = f" {event.duration_seconds:.2f}s" if event.duration_seconds is not None else ""
        flaky = " (flaky)" if event.flaky else ""
        where = f"  {where}" if where else ""
        detail = f"  {event.error}" if event.error and event.status != "passed" else ""
        return f"{label(event.status or '?'):<11} {event.test_id}{took}{flaky}{where}{detail}"
    if event.type is EventType.TEST_RETRYING:
        delay = event.delay_seconds or 0.0
        why = f"{event.status}; attempt {event.attempt} in {delay:.1f}s"
        return f"{'RETRY':<11} {event.test_id} ({why})"
    return None


async def show(
    events: AsyncIterator[Event],
    console: Console,
    num_workers: int,
    *,
    quiet: bool,
    eta: EtaSource | None = None,
) -> None:
    """Render events until the stream ends; with ``eta``, the session's ETA too."""
    state = ProgressState(num_workers)
    if quiet:
        async for event in events:
            state.apply(event)
        return
    async with anyio.create_task_group() as tg:
        render = _live if console.is_terminal else _lines
        async with aclosing(_with_eta(events, state, eta, tg)) as applied:
            await render(applied, state, console)
        tg.cancel_scope.cancel()


async def _with_eta(
    events: AsyncIterator[Event],
    state: ProgressState,
    eta: EtaSource | None,
    tg: anyio.abc.TaskGroup,
) -> AsyncGenerator[Event, None]:
    """``events``, each applied to ``state``; the ETA followed from the session's start."""
    following = False
    async for event in events:
        state.apply(event)
        if eta is not None and not following and event.type is EventType.SESSION_STARTED:
            following = True
            tg.start_soon(_follow_eta, state, eta, event.session_id)
        yield event


async def _follow_eta(state: ProgressState, source: EtaSource, session_id: str) -> None:
    """Read the ETA again and again; a slow read (a huge session) is made less often."""
    while True:
        asked = time.monotonic()
        state.set_eta(await source(session_id))
        took = time.monotonic() - asked
        await anyio.sleep(max(ETA_REFRESH_SECONDS, ETA_READ_SHARE * took))


async def _lines(events: AsyncIterator[Event], state: ProgressState, console: Console) -> None:
    """Not a terminal: one plain line per finished or retrying test, no bar."""
    async for event in events:
        line = event_line(event, state.line_suffix())
        if line is not None:
            console.print(line, highlight=False, markup=False, soft_wrap=True)


async def _live(events: AsyncIterator[Event], state: ProgressState, console: Console) -> None:
    """A terminal: the workers and a bar, redrawn; tests that did not pass printed above."""
    board = _Board(state, bar(state, console))
    with Live(
        board, console=console, refresh_per_second=REFRESH_PER_SECOND, transient=True
    ) as live:
        async for event in events:
            line = event_line(event)
            if line is not None and event.status != "passed":
                live.console.print(Text(line, style=STATUS_STYLE.get(event.status or "", "")))
            board.update()


class _Board:
    """The workers above the bar, drawn afresh at each refresh (times and ETA run on)."""

    def __init__(self, state: ProgressState, progress: Progress) -> None:
        self.state = state
        self.progress = progress
        self.task = progress.add_task("tests", total=None)

    def update(self) -> None:
        self.progress.update(self.task, total=self.state.total or None, completed=self.state.done)

    def __rich__(self) -> Group:
        return Group(self.state.workers(), self.progress)
