"""Package exports imported on first use (PEP 562), so importing a package costs nothing.

``parallel-orch --help`` and the daemon's client commands must start at once:
they cannot pay for SQLAlchemy, SQLModel and pydantic-settings that only the
engine needs. A package lists what it exports and where each lives; a name
is imported when first read, then kept in the package's namespace.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from ``where[name]``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
