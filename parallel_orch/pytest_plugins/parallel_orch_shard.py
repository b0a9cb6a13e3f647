"""A pytest plugin that keeps one shard's share of the collected cases (Bazel's protocol).

parallel-orch loads it into the test's own interpreter for a sharded plan
test, through ``PYTEST_PLUGINS`` and this folder on ``PYTHONPATH``: nothing is
installed into the test's venv, and this module imports nothing but pytest.

With ``TEST_TOTAL_SHARDS`` and ``TEST_SHARD_INDEX`` set, it touches
``TEST_SHARD_STATUS_FILE`` (saying "this runner shards", as Bazel asks) and
deselects every case that is not this shard's. The split is balanced longest
first by each case's recorded duration (``PARALLEL_ORCH_SHARD_DURATIONS``, a
JSON object of ``"<classname>::<name>"`` to seconds, the names JUnit XML
gives them), unknown cases weighed as the median known one so they spread
evenly; ties go by node id. Every shard computes the same split from the same
collection and durations, so every case runs in exactly one shard.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

UNKNOWN_SECONDS = 1.0  # the weight of every case when none has a recorded duration


def junit_key(nodeid: str) -> str:
    """The ``classname::name`` pytest's JUnit XML gives the case with this node id."""
    from _pytest.junitxml import mangle_test_address

    names = mangle_test_address(nodeid)
    return f"{'.'.join(names[:-1])}::{names[-1]}"


def assign(
    keys: Sequence[str], nodeids: Sequence[str], durations: Mapping[str, float], total: int
) -> list[int]:
    """The shard (0-based) of each case: longest first onto the least loaded shard."""
    known = [durations[k] for k in keys if k in durations]
    fallback = statistics.median(known) if known else UNKNOWN_SECONDS
    weights = [durations.get(k, fallback) for k in keys]
    order = sorted(range(len(keys)), key=lambda i: (-weights[i], nodeids[i]))
    loads = [0.0] * total
    counts = [0] * total
    shard_of = [0] * len(keys)
    for i in order:
        shard = min(range(total), key=lambda s: (loads[s], counts[s], s))
        shard_of[i] = shard
        loads[shard] += weights[i]
        counts[shard] += 1
    return shard_of


def _durations() -> dict[str, float]:
    path = os.environ.get("PARALLEL_ORCH_SHARD_DURATIONS")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and v >= 0}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    total = int(os.environ.get("TEST_TOTAL_SHARDS", "0") or 0)
    if total <= 1:
        return
    index = int(os.environ.get("TEST_SHARD_INDEX", "0") or 0)
    status = os.environ.get("TEST_SHARD_STATUS_FILE")
    if status:
        Path(status).touch()
    nodeids = [item.nodeid for item in items]
    shard_of = assign([junit_key(n) for n in nodeids], nodeids, _durations(), total)
    keep = [item for item, shard in zip(items, shard_of, strict=True) if shard == index]
    dropped = [item for item, shard in zip(items, shard_of, strict=True) if shard != index]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    config.stash[_EMPTY_SHARD] = bool(dropped) and not keep


_EMPTY_SHARD = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A shard whose share is empty (fewer cases than shards) passed, as in Bazel: pytest
    would exit 5, "no tests collected", and the test would look failed."""
    if (
        session.config.stash.get(_EMPTY_SHARD, False)
        and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED
    ):
        session.exitstatus = pytest.ExitCode.OK
