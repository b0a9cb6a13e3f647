"""JSON rendering: the report's own model, indented."""

from __future__ import annotations

from parallel_orch.report.model import ParallelTestReport


def render(report: ParallelTestReport) -> str:
    return report.model_dump_json(indent=2) + "\n"
