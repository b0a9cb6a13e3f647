"""A session's plan set, named one way: what groups sessions for comparisons."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path


def canonical_plan_paths(repo: Path, plan_paths: Iterable[str | Path]) -> list[str]:
    """Plan paths spelled one way: resolved (relative ones against the current directory),
    then relative to ``repo`` when inside it (``.`` for the repo itself), else absolute;
    sorted, each once. ``plans``, ``./plans/`` and ``/abs/repo/plans`` are all ``plans``.
    """
    spelled: set[str] = set()
    for raw in plan_paths:
        path = Path(raw).expanduser().resolve()
        spelled.add(path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path))
    return sorted(spelled)


def plan_key(plan_paths: Iterable[str], request_ids: Iterable[str]) -> str:
    """Groups sessions of the same plan set, for comparisons with the previous session.

    Give it :func:`canonical_plan_paths`: the key is of the paths as given. The
    tests in those plans are not part of it, so a test added to or removed from
    a plan shows as added or removed against the last session. Requests given
    inline (no plan paths) are keyed by their ids.
    """
    paths = sorted(plan_paths)
    material = json.dumps(["plans", paths] if paths else ["requests", sorted(request_ids)])
    return hashlib.sha256(material.encode()).hexdigest()[:16]
