"""The session report: model, builder, renderers."""

from parallel_orch.report.build import build_report, load_report
from parallel_orch.report.model import ParallelTestReport, TestResult

__all__ = ["ParallelTestReport", "TestResult", "build_report", "load_report"]
