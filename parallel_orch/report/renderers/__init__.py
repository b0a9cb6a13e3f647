"""The report's renderers: one module per format behind one protocol.

Each module has a ``render(report) -> str`` (``csv`` also ``render_cases``);
:mod:`parallel_orch.report.formats` names them and imports each when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from parallel_orch.report.formats import FORMATS, UnknownFormatError, renderer

if TYPE_CHECKING:
    from parallel_orch.report.model import ParallelTestReport

__all__ = ["FORMATS", "Renderer", "UnknownFormatError", "render", "renderer"]


class Renderer(Protocol):
    """Renders a report as one text document."""

    def __call__(self, report: ParallelTestReport, /) -> str: ...


def render(report: ParallelTestReport, name: str) -> str:
    """``report`` in format ``name``; see :data:`FORMATS`.

    :raises UnknownFormatError: if there is no such format; the message lists them.
    """
    function: Renderer = renderer(name)
    return function(report)
