"""The options every way to a report takes (`run`, `submit`, `report`, `show`).

Only typer here: a command's options are read when the app is built, for
``--help`` too, so they must cost nothing to import. What they do is
:mod:`parallel_orch.cli.outputs`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

JUnitOpt = Annotated[
    Path | None, typer.Option("--junit-xml", help="Write JUnit XML here (for CI reporters).")
]
MarkdownOpt = Annotated[Path | None, typer.Option("--markdown", help="Write Markdown here.")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page.")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Write CSV, one row per test.")]
CsvCasesOpt = Annotated[
    Path | None, typer.Option("--csv-cases", help="Write CSV, one row per JUnit case.")
]
TraceOpt = Annotated[
    Path | None, typer.Option("--trace", help="Write a Chrome trace (Perfetto, chrome://tracing).")
]
ReportJsonOpt = Annotated[
    Path | None, typer.Option("--report-json", help="Write the report as JSON here.")
]
NoStepSummaryOpt = Annotated[
    bool,
    typer.Option(
        "--no-step-summary", help=f"Do not append the Markdown summary to ${STEP_SUMMARY_ENV}."
    ),
]
MinPassRateOpt = Annotated[
    float | None, typer.Option("--min-pass-rate", help="Gate: fail below this pass rate (0-1).")
]
GateOpt = Annotated[
    list[str] | None,
    typer.Option("--gate", help="Gate: a category's minimum pass rate, e.g. unit=1.0 (repeat)."),
]
MaxFlakyOpt = Annotated[
    int | None, typer.Option("--max-flaky", help="Gate: fail with more flaky tests than this.")
]
MaxDurationOpt = Annotated[
    float | None, typer.Option("--max-duration", help="Gate: fail when the wall time (s) exceeds.")
]
MinCoverageOpt = Annotated[
    float | None, typer.Option("--min-coverage", help="Gate: fail below this coverage (percent).")
]
NoNewFailuresOpt = Annotated[
    bool,
    typer.Option("--no-new-failures", help="Gate: fail on a test failing that did not before."),
]
CompareToOpt = Annotated[
    str | None,
    typer.Option("--compare-to", help="Compare with this session (default: the previous one)."),
]
NotifyUrlOpt = Annotated[
    str | None, typer.Option("--notify-url", help="POST the report's JSON here when it ends.")
]
