"""The client commands find the daemon's socket without loading the configuration, and
find the same one it would."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel_orch.config import ParallelTestConfig
from parallel_orch.daemon.paths import socket_path_for, socket_path_light
from tests.helpers import GitRepo

CASES = [
    ({}, ""),
    ({"PARALLEL_ORCH_STATE_DIR": "elsewhere/state"}, ""),
    ({"parallel_orch_socket_path": "rel.sock"}, ""),
    ({}, '[tool.parallel-orch]\nstate-dir = "from-pyproject"\n'),
    ({}, '[tool.parallel-orch]\nsocket_path = "/tmp/po-test.sock"\n'),
    ({"PARALLEL_ORCH_STATE_DIR": "env-wins"}, '[tool.parallel-orch]\nstate_dir = "loses"\n'),
]


@pytest.mark.parametrize(("env", "pyproject"), CASES)
def test_the_light_lookup_matches_the_configuration(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pyproject: str
) -> None:
    """Environment (any case), then pyproject, then the default: as ParallelTestConfig reads."""
    sub = repo.path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if pyproject:
        (repo.path / "pyproject.toml").write_text(pyproject)
    expected = socket_path_for(ParallelTestConfig(num_workers=1))
    assert socket_path_light() == expected


def test_flags_win_over_everything(repo: GitRepo, tmp_path: Path) -> None:
    """--socket is the socket; --repo and --state-dir locate the default one."""
    assert socket_path_light(socket=tmp_path / "s.sock") == tmp_path / "s.sock"
    state = tmp_path / "st"
    expected = socket_path_for(ParallelTestConfig(repo=repo.path, state_dir=state, num_workers=1))
    assert socket_path_light(repo=repo.path, state_dir=state) == expected
