"""How a session's report is judged and sent: gates, the baseline to compare with, a webhook.

Given by flags, ``PARALLEL_ORCH_*`` or ``[tool.parallel-orch]`` in pyproject,
and stored with the session, so that a report rebuilt later is judged the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

_NAMED = {"min_pass_rate", "categories", "max_flaky", "max_duration", "min_coverage"}
_NAMED |= {"no_new_failures"}

#: What each gate's value may be, as a check and as the rule a user is told.
_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "min_pass_rate": (lambda v: 0 <= v <= 1, "a pass rate is between 0 and 1"),
    "max_flaky": (lambda v: v >= 0, "a number of flaky tests is 0 or more"),
    "max_duration": (lambda v: v > 0, "a wall time is more than 0 seconds"),
    "min_coverage": (lambda v: 0 <= v <= 100, "a coverage is 0 to 100 (percent)"),
}
#: Validation context that names gates as the command line spells them.
FLAG_SPELLING = {"spelling": "flags"}


class Gates(BaseModel):
    """Targets that turn a report into an exit code (DESIGN §6).

    Any other key is a category's minimum pass rate: ``unit = 1.0``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    min_pass_rate: float | None = None  # 0 to 1
    categories: dict[str, float] = Field(default_factory=dict)  # category -> minimum pass rate
    max_flaky: int | None = None
    max_duration: float | None = None  # seconds of wall time
    min_coverage: float | None = None  # percent
    no_new_failures: bool = False  # against the comparison's baseline

    @model_validator(mode="before")
    @classmethod
    def _category_keys(cls, data: Any) -> Any:
        """``unit = 1.0`` beside the named gates is ``categories.unit``."""
        if not isinstance(data, dict):
            return data
        named = {k: v for k, v in data.items() if k in _NAMED}
        extra = {k: v for k, v in data.items() if k not in _NAMED}
        if extra:
            named["categories"] = {**dict(named.get("categories") or {}), **extra}
        return named

    @model_validator(mode="after")
    def _in_range(self, info: ValidationInfo) -> Gates:
        """Each value within its rule; the error names it as flags or config spell it."""
        flags = (info.context or {}).get("spelling") == "flags"
        given: list[tuple[str, str, float]] = [
            (f"--{key.replace('_', '-')} " if flags else f"{key} = ", key, value)
            for key in _RULES
            if (value := getattr(self, key)) is not None
        ]
        given += [
            (f"--gate {name}=" if flags else f"{name} = ", "min_pass_rate", rate)
            for name, rate in self.categories.items()
        ]
        for label, rule, value in given:
            check, text = _RULES[rule]
            if not check(value):
                raise ValueError(f"{label}{value}: {text}")
        return self

    @property
    def any(self) -> bool:
        return self != Gates()


class ReportOptions(BaseModel):
    """What a session's report is judged by and sent to; stored with the session."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    gates: Gates = Field(default_factory=Gates)
    compare_to: str | None = None  # a session id; default the previous of the same plan set
    notify_url: str | None = None  # POST the report's JSON here when the session ends

    @field_validator("notify_url")
    @classmethod
    def _webhook(cls, url: str | None) -> str | None:
        return check_notify_url(url) if url is not None else None


def check_notify_url(url: str) -> str:
    """``url`` if a report can be POSTed to it: ``http://`` or ``https://`` with a host.

    :raises ValueError: saying what is wrong with it.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what checks it
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: a webhook is an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"{url!r} has spaces or control characters in it")
    return url
