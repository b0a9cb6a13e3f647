"""``[tool.parallel-orch]`` in a repo's ``pyproject.toml``, read without the configuration.

:class:`~parallel_orch.config.ParallelTestConfig` reads it through this, and
so do the daemon's client commands, which must start without loading
pydantic-settings.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from parallel_orch.exceptions import ConfigError

STATE_DIR_NAME = ".parallel-orch"
PYPROJECT_TABLE = "parallel-orch"


def pyproject_table(repo: Path | None) -> dict[str, Any]:
    """The table's keys (``-`` read as ``_``); empty when there is no such file or table.

    :raises ConfigError: if the file cannot be read or is not TOML.
    """
    if repo is None:
        return {}
    path = repo / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read [tool.{PYPROJECT_TABLE}]: {exc}") from exc
    table = doc.get("tool", {}).get(PYPROJECT_TABLE, {})
    return {k.replace("-", "_"): v for k, v in table.items()} if isinstance(table, dict) else {}
