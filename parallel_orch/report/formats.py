"""The report formats by name, and where each one's renderer is.

A renderer's module is imported when first used, so a command that renders
nothing pays for none of them. This module imports no other of the package:
the report model can offer ``report.render(fmt)`` through it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RENDERERS = "parallel_orch.report.renderers"


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    module: str  # under parallel_orch.report.renderers
    function: str
    flag: str  # the CLI option that writes it to a file
    description: str
    title: str = ""  # what the CLI calls the file it wrote


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "text", "text", "render", "", "the terminal report, as plain text", "terminal report"
        ),
        Format("json", "json", "render", "--report-json", "the report's own JSON", "JSON report"),
        Format(
            "junit",
            "junit",
            "render",
            "--junit-xml",
            "JUnit XML for CI test reporters",
            "JUnit XML",
        ),
        Format(
            "markdown",
            "markdown",
            "render",
            "--markdown",
            "Markdown: a step summary",
            "Markdown summary",
        ),
        Format("html", "html", "render", "--html", "one self-contained HTML page", "HTML report"),
        Format("csv", "csv", "render", "--csv", "CSV, one row per execution", "CSV of tests"),
        Format(
            "csv-cases",
            "csv",
            "render_cases",
            "--csv-cases",
            "CSV, one row per case",
            "CSV of cases",
        ),
        Format(
            "trace", "trace", "render", "--trace", "Chrome trace of the attempts", "Chrome trace"
        ),
    )
}


class UnknownFormatError(ValueError):
    pass


def renderer(name: str) -> Callable[[Any], str]:
    """The renderer of format ``name``.

    :raises UnknownFormatError: if there is no such format; the message lists them.
    """
    found = FORMATS.get(name)
    if found is None:
        raise UnknownFormatError(
            f"no report format {name!r}; formats: {', '.join(sorted(FORMATS))}"
        )
    module = importlib.import_module(f"{RENDERERS}.{found.module}")
    function: Callable[[Any], str] = getattr(module, found.function)
    return function
