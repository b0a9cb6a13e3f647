"""Sharding inside a suite: a plan test's ``shards = N`` run as N requests (DESIGN §3).

Each shard is told its part by Bazel's test sharding protocol
(``TEST_TOTAL_SHARDS``, ``TEST_SHARD_INDEX``, ``TEST_SHARD_STATUS_FILE``), so
existing Bazel-aware wrappers work unchanged; a pytest suite gets the bundled
plugin (:mod:`parallel_orch.pytest_plugins.parallel_orch_shard`) through
``PYTEST_PLUGINS`` and ``PYTHONPATH``. The durations that balance the split
are written once per session and test, when it is submitted, so every shard
and every retry of one reads the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from parallel_orch.models import TestRequest
from parallel_orch.names import safe_name

PLUGIN_DIR = Path(__file__).parent / "pytest_plugins"
PLUGIN = "parallel_orch_shard"


def durations_path(state_dir: Path, session_id: str, base_id: str) -> Path:
    """Where a sharded test's case durations for one session are."""
    return state_dir / "shards" / session_id / f"{safe_name(base_id)}.durations.json"


def write_durations(path: Path, durations: Mapping[str, float]) -> None:
    """The durations, whole or not at all; a file already there is kept (retries read it)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(durations), sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def shard_env(
    request: TestRequest, env: Mapping[str, str], *, status_file: Path, durations: Path
) -> dict[str, str]:
    """The variables that tell a shard its part, and load the pytest plugin."""
    assert request.shard is not None
    index, total = request.shard
    plugins = [p for p in env.get("PYTEST_PLUGINS", "").split(",") if p.strip()]
    path = [str(PLUGIN_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "TEST_TOTAL_SHARDS": str(total),
        "TEST_SHARD_INDEX": str(index - 1),  # Bazel counts from 0
        "TEST_SHARD_STATUS_FILE": str(status_file),
        "PARALLEL_ORCH_SHARD_DURATIONS": str(durations),
        "PYTEST_PLUGINS": ",".join([*plugins, PLUGIN] if PLUGIN not in plugins else plugins),
        "PYTHONPATH": os.pathsep.join(path),
    }
