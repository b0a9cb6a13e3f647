"""Sharding inside a suite: a plan test's ``shards = N`` run as N requests (DESIGN §3).

Each shard is told its part by Bazel's test sharding protocol
(``TEST_TOTAL_SHARDS``, ``TEST_SHARD_INDEX``, ``TEST_SHARD_STATUS_FILE``), so
existing Bazel-aware wrappers work unchanged; a pytest suite gets the bundled
plugin (:mod:`parallel_orch.pytest_plugins.parallel_orch_shard`) through
``PYTEST_PLUGINS`` and ``PYTHONPATH``. The durations that balance the split
are written once per session and test, when it is submitted, so every shard
and every retry of one reads the same; with them go the times each test
module took to import and collect in the shards that last collected it
(a shard skips the modules holding none of its cases, so that time is part
of its balance), which the plugin writes back per shard for the next session.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping
from pathlib import Path

from parallel_orch.models import TestRequest
from parallel_orch.names import safe_name

PLUGIN_DIR = Path(__file__).parent / "pytest_plugins"
PLUGIN = "parallel_orch_shard"
COLLECT_TIMES_ENV = "PARALLEL_ORCH_SHARD_COLLECT_TIMES"  # where a shard writes its modules' times


DURATIONS_SUFFIX = ".durations.json"
COLLECT_DIR = "collect"  # beside the sessions' folders: session ids are hex


def durations_path(state_dir: Path, session_id: str, base_id: str) -> Path:
    """Where a sharded test's case durations for one session are."""
    return state_dir / "shards" / session_id / f"{safe_name(base_id)}{DURATIONS_SUFFIX}"


def collect_times_dir(durations: Path) -> Path | None:
    """Where the shards of the test whose durations file this is write their modules'
    collection times, across sessions; None outside the layout of :func:`durations_path`
    (a fleet node's copy: nothing there reads them back)."""
    if durations.parent.parent.name != "shards" or not durations.name.endswith(DURATIONS_SUFFIX):
        return None
    return durations.parent.parent / COLLECT_DIR / durations.name.removesuffix(DURATIONS_SUFFIX)


def _shard_files(folder: Path | None) -> list[dict[str, object]]:
    """What the shards last wrote to ``folder``: ``{"modules": ..., "per_case": ...}`` each
    (a file of module times alone, as first written, is read as its ``modules``)."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder is not None else ():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append(data if "modules" in data else {"modules": data})
    return found


def collect_times(folder: Path | None) -> dict[str, float]:
    """The modules' collection times the shards last wrote (the shortest where several did)."""
    merged: dict[str, float] = {}
    for data in _shard_files(folder):
        modules = data["modules"]
        for module, seconds in modules.items() if isinstance(modules, dict) else ():
            if isinstance(seconds, int | float) and seconds >= 0:
                merged[str(module)] = min(float(seconds), merged.get(str(module), float("inf")))
    return merged


def per_case_seconds(folder: Path | None) -> float | None:
    """pytest's own cost of a case beyond its recorded time, as the shards last measured it
    (the median of theirs); None when none has."""
    found = [
        float(value)
        for data in _shard_files(folder)
        if isinstance(value := data.get("per_case"), int | float) and 0 <= value < 1
    ]
    return statistics.median(found) if found else None


def write_durations(path: Path, durations: Mapping[str, float]) -> None:
    """The durations, the collection times and the cost a case, whole or not at all; a file
    already there is kept (retries read it)."""
    if path.exists():
        return
    folder = collect_times_dir(path)
    content: dict[str, object] = {"cases": dict(durations), "collect": collect_times(folder)}
    per_case = per_case_seconds(folder)
    if per_case is not None:
        content["per_case"] = per_case
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def shard_env(
    request: TestRequest, env: Mapping[str, str], *, status_file: Path, durations: Path
) -> dict[str, str]:
    """The variables that tell a shard its part, and load the pytest plugin."""
    assert request.shard is not None
    index, total = request.shard
    plugins = [p for p in env.get("PYTEST_PLUGINS", "").split(",") if p.strip()]
    path = [str(PLUGIN_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    collect = collect_times_dir(durations)
    where = {} if collect is None else {COLLECT_TIMES_ENV: str(collect / f"{index}.json")}
    return {
        **where,
        "TEST_TOTAL_SHARDS": str(total),
        "TEST_SHARD_INDEX": str(index - 1),  # Bazel counts from 0
        "TEST_SHARD_STATUS_FILE": str(status_file),
        "PARALLEL_ORCH_SHARD_DURATIONS": str(durations),
        "PYTEST_PLUGINS": ",".join([*plugins, PLUGIN] if PLUGIN not in plugins else plugins),
        "PYTHONPATH": os.pathsep.join(path),
    }
