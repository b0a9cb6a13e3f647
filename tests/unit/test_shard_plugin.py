"""The bundled pytest plugin's split: balanced longest first, every case once, stable."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from parallel_orch.exceptions import PlanError
from parallel_orch.plans import load_plans
from parallel_orch.sharding import PLUGIN, PLUGIN_DIR


def plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location(PLUGIN, PLUGIN_DIR / f"{PLUGIN}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_known_durations_are_balanced_longest_first() -> None:
    """Cases of 8, 7, 6, 5, 4 s over two shards: 8+5+4 against 7+6, not by count."""
    keys = [f"m::t{n}" for n in range(5)]
    durations = {"m::t0": 8.0, "m::t1": 7.0, "m::t2": 6.0, "m::t3": 5.0, "m::t4": 4.0}
    shard_of = plugin().assign(keys, keys, durations, 2)
    loads = [
        sum(durations[k] for k, s in zip(keys, shard_of, strict=True) if s == i) for i in (0, 1)
    ]
    assert sorted(loads) == [13.0, 17.0]


def test_unknown_cases_spread_evenly_and_every_case_lands_once() -> None:
    """With no history 100 cases split 34/33/33, each case in exactly one shard."""
    keys = [f"m::t{n:03}" for n in range(100)]
    shard_of = plugin().assign(keys, keys, {}, 3)
    assert sorted(shard_of.count(s) for s in range(3)) == [33, 33, 34]
    assert len(shard_of) == 100


def test_the_split_is_stable_whatever_the_collection_order() -> None:
    """Every shard computes the same split: it does not depend on the order cases arrive."""
    keys = [f"m::t{n}" for n in range(20)]
    durations = {k: float(i % 7) for i, k in enumerate(keys)}
    forward = dict(zip(keys, plugin().assign(keys, keys, durations, 4), strict=True))
    back = list(reversed(keys))
    backward = dict(zip(back, plugin().assign(back, back, durations, 4), strict=True))
    assert forward == backward


def test_junit_keys_match_pytests_own_junit_names() -> None:
    """The key of a node id is the classname::name pytest's JUnit XML writes for it."""
    assert plugin().junit_key("tests/test_x.py::TestC::test_y[1-2]") == (
        "tests.test_x.TestC::test_y[1-2]"
    )


@pytest.mark.parametrize("value", ["0", "-2", "1.5", '"many"', "true"])
def test_a_bad_shard_count_is_a_plan_error(tmp_path: Path, value: str) -> None:
    """shards = 0, negative, fractional, a word or a boolean: rejected with the file and key."""
    (tmp_path / "p.toml").write_text(f'[[test]]\nid = "a"\nrun = "true"\nshards = {value}\n')
    with pytest.raises(PlanError, match="shards"):
        load_plans([tmp_path])


def test_plugin_folder_holds_only_the_plugin() -> None:
    """On PYTHONPATH it exposes one module: nothing of ours shadows the test's imports."""
    assert sorted(p.name for p in PLUGIN_DIR.glob("*.py")) == [f"{PLUGIN}.py"]
    assert str(PLUGIN_DIR) not in sys.path


def test_an_id_that_looks_like_a_shard_is_refused_unless_it_is_one() -> None:
    """`x[1/2]` is a shard's id: a request giving it without being that shard is invalid."""
    from pydantic import ValidationError

    from parallel_orch.models import TestRequest

    with pytest.raises(ValidationError, match="a shard's"):
        TestRequest(id="x[1/2]", command="true")
    with pytest.raises(ValidationError, match="does not name its shard"):
        TestRequest(id="x[1/2]", command="true", shard=(2, 2))
    shard = TestRequest(id="x", command="true", shards=2).split(4)[1]
    assert TestRequest.model_validate_json(shard.model_dump_json()) == shard
