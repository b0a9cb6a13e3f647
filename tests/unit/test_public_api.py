"""The Python API's entry points explain themselves: ``help()`` on them says what each does."""

from __future__ import annotations

import inspect

import pytest

from parallel_orch import ParallelTestOrchestrator
from parallel_orch.client import DaemonClient


def _public(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties ``cls`` defines or inherits from this package."""
    return [
        (name, member)
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_")
        and (inspect.isfunction(member) or isinstance(member, property))
        and (member.fget if isinstance(member, property) else member).__module__.startswith(
            "parallel_orch"
        )
    ]


@pytest.mark.parametrize("cls", [ParallelTestOrchestrator, DaemonClient])
def test_every_public_method_has_help_text(cls: type) -> None:
    """Each public method and property of the orchestrator and the daemon client has a
    docstring (one written after an import in the body is none: ``help()`` shows nothing)."""
    assert _public(cls), "no public methods found: the check would pass on anything"
    missing = [name for name, member in _public(cls) if not inspect.getdoc(member)]
    assert missing == [], f"{cls.__name__}: no docstring on {missing}"
