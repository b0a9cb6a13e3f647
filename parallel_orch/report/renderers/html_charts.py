"""The HTML page's duration histogram, laid out for an inline SVG.

The bins are computed here and drawn by the template, so the chart reads
without script. Durations that span more than two orders of magnitude (a
session of 0.01 s unit tests and 10-minute suites) get logarithmic bins, else
the bins are linear from zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from parallel_orch.report.model import TestResult

BINS = 24  # at most; fewer for a few tests (twice the square root of their number)
MIN_BINS = 6
LOG_RATIO = 100.0  # max / min duration above which the bins are logarithmic
WIDTH, HEIGHT = 560, 210  # the SVG's user units
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 38
_FAILING = frozenset({"failed", "timed_out", "error", "interrupted"})
GROUPS = ("passed", "failing", "other")  # stacked bottom to top


@dataclass(frozen=True, slots=True)
class Segment:
    group: str
    y: float
    height: float
    count: int


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    low: float  # seconds
    high: float
    count: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # user units along its axis
    label: float  # seconds (x axis) or tests (y axis)


@dataclass(frozen=True, slots=True)
class Histogram:
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    logarithmic: bool
    count: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: float = HEIGHT - BOTTOM  # the x axis's y
    right: float = WIDTH - RIGHT


def _group(status: str) -> str:
    if status == "passed":
        return "passed"
    return "failing" if status in _FAILING else "other"


def edges(durations: Sequence[float], bins: int = BINS) -> tuple[list[float], bool]:
    """``bins + 1`` bin edges over ``durations``, and whether they are logarithmic."""
    high = max(durations)
    if high <= 0:
        return [0.0, 1.0], False
    positive = [d for d in durations if d > 0]
    smallest = min(positive)
    if high / smallest > LOG_RATIO:
        step = math.log(high / smallest) / bins
        return [smallest * math.exp(step * i) for i in range(bins + 1)], True
    return [high * i / bins for i in range(bins + 1)], False


def _bin(value: float, bounds: Sequence[float], logarithmic: bool) -> int:
    last = len(bounds) - 2
    if value <= bounds[0]:
        return 0
    if logarithmic:
        position = math.log(value / bounds[0]) / math.log(bounds[-1] / bounds[0]) * (last + 1)
    else:
        position = (value - bounds[0]) / (bounds[-1] - bounds[0]) * (last + 1)
    return min(int(position), last)


def histogram(tests: Iterable[TestResult], bins: int = BINS) -> Histogram:
    """The tests' durations (all attempts together) binned and stacked by outcome."""
    timed = [
        (t.duration_seconds, _group(t.status)) for t in tests if t.duration_seconds is not None
    ]
    if not timed:
        return Histogram(bars=(), x_ticks=(), y_ticks=(), logarithmic=False, count=0)
    bins = min(bins, max(MIN_BINS, round(2 * math.sqrt(len(timed)))))
    bounds, logarithmic = edges([d for d, _ in timed], bins)
    counts = [dict.fromkeys(GROUPS, 0) for _ in bounds[:-1]]
    for duration, group in timed:
        counts[_bin(duration, bounds, logarithmic)][group] += 1
    tallest = max(sum(c.values()) for c in counts)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / len(counts)
    bars = []
    for index, count in enumerate(counts):
        y = float(HEIGHT - BOTTOM)
        segments = []
        for group in GROUPS:
            height = count[group] / tallest * plot_height
            y -= height
            if count[group]:
                segments.append(Segment(group, round(y, 2), round(height, 2), count[group]))
        bars.append(
            Bar(
                x=round(LEFT + index * slot + 1, 2),
                width=round(max(slot - 2, 1), 2),
                low=bounds[index],
                high=bounds[index + 1],
                count=sum(count.values()),
                segments=tuple(segments),
            )
        )
    x_ticks = tuple(
        Tick(at=round(LEFT + edge * slot, 2), label=bounds[edge])
        for edge in sorted({round(i * len(counts) / 4) for i in range(5)})
    )
    y_ticks = tuple(
        Tick(at=round(HEIGHT - BOTTOM - plot_height * n / tallest, 2), label=n)
        for n in sorted({0, math.ceil(tallest / 2), tallest})
    )
    return Histogram(tuple(bars), x_ticks, y_ticks, logarithmic, count=len(timed))
