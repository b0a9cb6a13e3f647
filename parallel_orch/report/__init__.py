"""The session report: model, builder, renderers (imported when first used)."""

from typing import TYPE_CHECKING

from parallel_orch.lazy import exports

if TYPE_CHECKING:
    from parallel_orch.report.build import build_report, load_report
    from parallel_orch.report.model import ParallelTestReport, TestResult

__all__ = ["ParallelTestReport", "TestResult", "build_report", "load_report"]

__getattr__ = exports(
    __name__,
    {
        "ParallelTestReport": "parallel_orch.report.model",
        "TestResult": "parallel_orch.report.model",
        "build_report": "parallel_orch.report.build",
        "load_report": "parallel_orch.report.build",
    },
)
