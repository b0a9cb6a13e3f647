"""How a session's report is judged and sent: gates, the baseline to compare with, a webhook.

Given by flags, ``PARALLEL_ORCH_*`` or ``[tool.parallel-orch]`` in pyproject,
and stored with the session, so that a report rebuilt later is judged the same.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_NAMED = {"min_pass_rate", "categories", "max_flaky", "max_duration", "min_coverage"}
_NAMED |= {"no_new_failures"}


class Gates(BaseModel):
    """Targets that turn a report into an exit code (DESIGN §6).

    Any other key is a category's minimum pass rate: ``unit = 1.0``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_pass_rate: float | None = Field(default=None, ge=0, le=1)
    categories: dict[str, float] = Field(default_factory=dict)  # category -> minimum pass rate
    max_flaky: int | None = Field(default=None, ge=0)
    max_duration: float | None = Field(default=None, gt=0)  # seconds of wall time
    min_coverage: float | None = Field(default=None, ge=0, le=100)  # percent
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
    def _rates(self) -> Gates:
        for name, rate in self.categories.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"gate {name}={rate}: a pass rate is between 0 and 1")
        return self

    @property
    def any(self) -> bool:
        return self != Gates()


class ReportOptions(BaseModel):
    """What a session's report is judged by and sent to; stored with the session."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    gates: Gates = Field(default_factory=Gates)
    compare_to: str | None = None  # a session id; default the previous of the same plan set
    notify_url: str | None = None  # POST the report's JSON here when the session ends
