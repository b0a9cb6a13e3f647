"""Live progress from the event stream: a rich display on a terminal, plain lines otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from parallel_orch.events import Event, EventType
from parallel_orch.models import FAILURE_STATUSES
from parallel_orch.report.renderers.text import STATUS_STYLE

REFRESH_PER_SECOND = 8


class ProgressState:
    """Counts and per-worker activity, folded from events."""

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self.total = 0
        self.finished: Counter[str] = Counter()
        self.running: dict[int, str] = {}
        self.retrying = 0

    @property
    def done(self) -> int:
        return sum(self.finished.values())

    @property
    def queued(self) -> int:
        return max(0, self.total - self.done - len(self.running))

    def apply(self, event: Event) -> None:
        if event.type is EventType.SESSION_STARTED:
            self.total += event.total or 0
        elif event.type is EventType.ATTEMPT_STARTED and event.worker is not None:
            self.running[event.worker] = f"{event.test_id} (attempt {event.attempt})"
        elif event.type is EventType.ATTEMPT_FINISHED and event.worker is not None:
            self.running.pop(event.worker, None)
        elif event.type is EventType.TEST_RETRYING:
            self.retrying += 1
        elif event.type is EventType.TEST_FINISHED and event.status:
            self.finished[event.status] += 1

    def summary(self) -> Text:
        text = Text()
        text.append(f"{self.done}/{self.total} done  ")
        text.append(f"running {len(self.running)}  ")
        text.append(f"passed {self.finished['passed']}  ", style="green")
        failed = sum(self.finished[s.value] for s in FAILURE_STATUSES)
        text.append(f"failed {failed}  ", style="red" if failed else "")
        text.append(f"queued {self.queued}")
        if self.retrying:
            text.append(f"  retries {self.retrying}", style="yellow")
        return text

    def renderable(self) -> Group:
        table = Table(show_header=True, box=None, pad_edge=False)
        table.add_column("worker", justify="right")
        table.add_column("running")
        for worker in range(self.num_workers):
            table.add_row(str(worker), self.running.get(worker, "-"))
        return Group(table, self.summary())


def event_line(event: Event) -> str | None:
    """One plain line per finished or retrying test (for logs and pipes)."""
    if event.type is EventType.TEST_FINISHED:
        took = f" {event.duration_seconds:.2f}s" if event.duration_seconds is not None else ""
        flaky = " (flaky)" if event.flaky else ""
        detail = f"  {event.error}" if event.error and event.status != "passed" else ""
        return f"{(event.status or '?').upper():<11} {event.test_id}{took}{flaky}{detail}"
    if event.type is EventType.TEST_RETRYING:
        delay = event.delay_seconds or 0.0
        why = f"{event.status}; attempt {event.attempt} in {delay:.1f}s"
        return f"{'RETRY':<11} {event.test_id} ({why})"
    return None


async def show(
    events: AsyncIterator[Event], console: Console, num_workers: int, *, quiet: bool
) -> None:
    """Render events until the stream ends."""
    state = ProgressState(num_workers)
    if quiet:
        async for event in events:
            state.apply(event)
        return
    if not console.is_terminal:
        async for event in events:
            state.apply(event)
            line = event_line(event)
            if line is not None:
                console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    with Live(
        state.renderable(), console=console, refresh_per_second=REFRESH_PER_SECOND, transient=True
    ) as live:
        async for event in events:
            state.apply(event)
            line = event_line(event)
            if line is not None and event.status != "passed":
                style = STATUS_STYLE.get(event.status or "", "")
                live.console.print(Text(line, style=style))
            live.update(state.renderable())
