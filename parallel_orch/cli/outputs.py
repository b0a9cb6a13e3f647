"""What every way to a report offers: files in each format, the step summary, gates.

``run``, ``submit --wait``, ``report`` and ``show`` take the same options.
Output paths are checked before anything runs (exit 3 when one cannot be
written); gate specs are checked before anything runs (exit 2 when bad).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from parallel_orch.cli.app import err_console, validation_problems
from parallel_orch.cli.options import STEP_SUMMARY_ENV
from parallel_orch.exceptions import ConfigError, StateDirError
from parallel_orch.report.formats import FORMATS
from parallel_orch.report.options import (
    FLAG_SPELLING,
    Gates,
    ReportOptions,
    check_notify_url,
)

if TYPE_CHECKING:  # the report and its renderers are imported when one is written
    from parallel_orch.report.model import ParallelTestReport


@dataclass(frozen=True)
class Outputs:
    """Report files to write, by format, and whether to append the step summary."""

    files: dict[str, Path] = field(default_factory=dict)
    step_summary: Path | None = None

    @classmethod
    def from_flags(
        cls,
        *,
        report_json: Path | None = None,
        junit_xml: Path | None = None,
        markdown: Path | None = None,
        html: Path | None = None,
        csv: Path | None = None,
        csv_cases: Path | None = None,
        trace: Path | None = None,
        no_step_summary: bool = False,
    ) -> Outputs:
        given = {
            "json": report_json,
            "junit": junit_xml,
            "markdown": markdown,
            "html": html,
            "csv": csv,
            "csv-cases": csv_cases,
            "trace": trace,
        }
        summary = os.environ.get(STEP_SUMMARY_ENV)
        return cls(
            files={k: v for k, v in given.items() if v is not None},
            step_summary=Path(summary) if summary and not no_step_summary else None,
        )

    def check(self) -> None:
        """Each path can be written: before anything runs.

        :raises StateDirError: (exit 3) naming the first that cannot.
        """
        for path in [*self.files.values(), *([self.step_summary] if self.step_summary else [])]:
            _check_writable(path)

    def write(self, report: ParallelTestReport) -> None:
        """Each file, whole or not at all, and the step summary; their paths on stderr."""
        for name, path in self.files.items():
            _write_atomically(path, report.render(name))
            err_console.print(f"wrote the {FORMATS[name].title}: {path}", highlight=False)
        if self.step_summary is not None:
            _append_step_summary(self.step_summary, report)


def _append_step_summary(path: Path, report: ParallelTestReport) -> None:
    from parallel_orch.report.renderers import markdown

    """The Markdown summary after what the step wrote there before, in what GitHub's
    1 MiB limit on a step's summary leaves of it."""
    try:
        held = path.stat().st_size if path.exists() else 0
        gap = "\n" if held else ""  # what came before may not have ended its last line
        text = markdown.render(report, limit_bytes=markdown.MAX_BYTES - held - len(gap))
        if not text:
            err_console.print(
                f"warning: ${STEP_SUMMARY_ENV} ({path}) already holds {held} bytes of GitHub's"
                f" {markdown.MAX_BYTES}: the summary was not appended",
                highlight=False,
            )
            return
        with path.open("a", encoding="utf-8") as fh:
            fh.write(gap + text)
    except OSError as exc:
        raise StateDirError(
            f"cannot append to ${STEP_SUMMARY_ENV} ({path}): {exc.strerror}"
        ) from exc
    err_console.print(f"step summary: appended to ${STEP_SUMMARY_ENV}", highlight=False)


def _check_writable(path: Path) -> None:
    """``path`` can be written: its folder is made if missing, and a file is written in it."""
    where = path.parent if path.parent != Path("") else Path(".")
    problem = None
    if path.is_dir():
        problem = "it is a directory"
    else:
        try:  # a real write: access() says yes to root on a read-only mount
            where.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=where, prefix=".parallel-orch-probe-"):
                pass
            if path.exists():
                with path.open("ab"):
                    pass
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if problem is not None:
        raise StateDirError(f"cannot write the report to {path}: {problem}")


def _write_atomically(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temporary file beside it: never half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateDirError(f"cannot write the report to {path}: {exc.strerror}") from exc


def gates_from_flags(
    base: Gates,
    *,
    min_pass_rate: float | None = None,
    gate: list[str] | None = None,
    max_flaky: int | None = None,
    max_duration: float | None = None,
    min_coverage: float | None = None,
    no_new_failures: bool = False,
) -> Gates:
    """The configured gates with the flags' on top.

    :raises ConfigError: (exit 2) for a bad spec: ``unit=abc``, a rate above 1, ...
    """
    values = base.model_dump()
    categories = dict(values.pop("categories"))
    for spec in gate or []:
        name, sep, rate = spec.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--gate {spec!r}: expected CATEGORY=RATE, e.g. unit=1.0")
        try:
            categories[name.strip()] = float(rate)
        except ValueError:
            raise ConfigError(
                f"--gate {spec!r}: {rate!r} is not a number; a pass rate is 0 to 1"
            ) from None
    flags = {
        "min_pass_rate": min_pass_rate,
        "max_flaky": max_flaky,
        "max_duration": max_duration,
        "min_coverage": min_coverage,
        "no_new_failures": no_new_failures or None,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Gates.model_validate({**values, "categories": categories}, context=FLAG_SPELLING)
    except ValidationError as exc:
        raise ConfigError(f"bad gate: {validation_problems(exc)}") from None


def warn_unknown_categories(gates: Gates, categories: set[str]) -> None:
    """A gate on a category no test has is a warning, not an error."""
    for name in sorted(set(gates.categories) - categories):
        known = ", ".join(sorted(categories)) or "none"
        err_console.print(
            f"warning: gate on category {name!r}, which no test has (categories: {known})",
            highlight=False,
        )


_OUTPUT_FLAGS = ("report_json", "junit_xml", "markdown", "html", "csv", "csv_cases", "trace")
_GATE_FLAGS = ("min_pass_rate", "gate", "max_flaky", "max_duration", "min_coverage")


@dataclass(frozen=True)
class ReportFlags:
    """The report options of one command line: files to write, gates, baseline, webhook."""

    outputs: Outputs
    gates: Gates
    compare_to: str | None = None
    notify_url: str | None = None

    @classmethod
    def parse(cls, flags: dict[str, Any], base: Gates | None = None) -> ReportFlags:
        """From a command's parameters (its ``locals()``), gates on top of ``base``.

        :raises ConfigError: (exit 2) for a bad gate spec or webhook URL.
        """
        outputs = Outputs.from_flags(
            **{k: flags.get(k) for k in _OUTPUT_FLAGS},
            no_step_summary=bool(flags.get("no_step_summary")),
        )
        gates = gates_from_flags(
            base or Gates(),
            **{k: flags.get(k) for k in _GATE_FLAGS},
            no_new_failures=bool(flags.get("no_new_failures")),
        )
        notify_url = flags.get("notify_url")
        if notify_url is not None:
            try:
                check_notify_url(notify_url)
            except ValueError as exc:
                raise ConfigError(f"--notify-url {exc}") from None
        return cls(outputs, gates, flags.get("compare_to"), notify_url)

    @property
    def judged(self) -> bool:
        """Whether this command line asks for a verdict of its own."""
        return self.gates.any or self.compare_to is not None or self.notify_url is not None

    def options(self) -> ReportOptions:
        return ReportOptions(
            gates=self.gates, compare_to=self.compare_to, notify_url=self.notify_url
        )
