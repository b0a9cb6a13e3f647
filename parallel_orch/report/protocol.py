"""The renderer seam: one module per output format."""

from __future__ import annotations

from typing import Protocol

from parallel_orch.report.model import ParallelTestReport


class Renderer(Protocol):
    def __call__(self, report: ParallelTestReport) -> str: ...
