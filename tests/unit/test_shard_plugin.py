"""The bundled pytest plugin's split: balanced longest first, every case once, stable."""

from __future__ import annotations

import importlib.util
import json
import random
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
    shard_of = plugin().assign(keys, durations, 2)
    loads = [
        sum(durations[k] for k, s in zip(keys, shard_of, strict=True) if s == i) for i in (0, 1)
    ]
    assert sorted(loads) == [13.0, 17.0]


def test_unknown_cases_spread_evenly_and_every_case_lands_once() -> None:
    """With no history 100 cases split 34/33/33, each case in exactly one shard."""
    keys = [f"m::t{n:03}" for n in range(100)]
    shard_of = plugin().assign(keys, {}, 3)
    assert sorted(shard_of.count(s) for s in range(3)) == [33, 33, 34]
    assert len(shard_of) == 100


def test_the_split_is_stable_whatever_the_collection_order() -> None:
    """Every shard computes the same split: it does not depend on the order cases arrive."""
    keys = [f"m::t{n}" for n in range(20)]
    durations = {k: float(i % 7) for i, k in enumerate(keys)}
    forward = dict(zip(keys, plugin().assign(keys, durations, 4), strict=True))
    back = list(reversed(keys))
    backward = dict(zip(back, plugin().assign(back, durations, 4), strict=True))
    assert forward == backward


def test_a_module_stays_whole_when_it_fits_and_is_split_when_it_would_not() -> None:
    """Modules of 6, 4 and 2 s go whole (one shard imports each); one of 16 s in a suite of
    18 is split case by case, and the shards it is split over both import it."""
    make_plan = plugin().make_plan
    whole = {f"{m}::t{n}": w for m, w in (("a", 3.0), ("b", 2.0), ("c", 1.0)) for n in (0, 1)}
    plan = make_plan(whole, 2)
    assert [sorted(plan.holding(m)) for m in "abc"] == [[0], [1], [1]]
    assert plan.loads == [6.0, 6.0]
    big = {**{f"big::t{n}": 4.0 for n in range(4)}, "s::t0": 1.0, "s::t1": 1.0}
    plan = make_plan(big, 2)
    assert sorted(plan.holding("big")) == [0, 1] and plan.loads == [9.0, 9.0]


def test_a_modules_collection_time_counts_in_the_balance() -> None:
    """Two 5 s modules, one taking 3 s more to import: the two 1 s modules both go to the
    other shard, where without that time they would be spread."""
    make_plan = plugin().make_plan
    durations = {"a::t": 5.0, "b::t": 5.0, "c::t": 1.0, "d::t": 1.0}
    assert make_plan(durations, 2).shard_of == {"a::t": 0, "b::t": 1, "c::t": 0, "d::t": 1}
    plan = make_plan(durations, 2, {"a": 3.0})
    assert plan.shard_of == {"a::t": 0, "b::t": 1, "c::t": 1, "d::t": 1}
    assert plan.loads == [8.0, 7.0]


def suite(rng: random.Random) -> list[str]:
    """Node ids of a made-up suite: modules of functions and classes, some parametrized."""
    ids = []
    for m in range(rng.randint(1, 12)):
        for n in range(rng.randint(0, 15)):
            klass = f"TestK{n % 2}::" if rng.random() < 0.3 else ""
            ids.append(f"pkg/test_m{m}.py::{klass}test_{n}" + ("[x-1]" if n % 5 == 0 else ""))
    return ids


def test_every_case_runs_in_exactly_one_shard_whatever_each_shard_collects() -> None:
    """Random suites and histories (stale, partial, none, with collection times): each shard
    collects only the modules it holds, in its own order, and still every case runs once."""
    shard = plugin()
    for seed in range(300):
        rng = random.Random(seed)
        nodeids, total = suite(rng), rng.randint(2, 4)
        known = [n for n in nodeids if rng.random() < 0.7] + ["gone.test_old::test_x"]
        durations = {shard.junit_key(n): rng.choice([0.0, 0.01, rng.random() * 5]) for n in known}
        collect = {f"pkg.test_m{m}": rng.random() for m in range(12) if rng.random() < 0.5}
        plan = shard.make_plan(durations, total, collect)
        ran: list[str] = []
        for mine in range(total):
            collected = [n for n in nodeids if mine in plan.holding(shard.module_prefix(n))]
            rng.shuffle(collected)
            shard_of = shard.assign(collected, durations, total, plan)
            ran += [n for n, s in zip(collected, shard_of, strict=True) if s == mine]
        assert sorted(ran) == sorted(nodeids), f"seed {seed}"


def test_the_history_file_is_read_in_either_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durations alone (as first written) or with the modules' collection times and the
    measured cost a case; pytest's usual cost a case where none was measured."""
    path = tmp_path / "d.json"
    monkeypatch.setenv("PARALLEL_ORCH_SHARD_DURATIONS", str(path))
    prior = plugin().PER_CASE_SECONDS
    path.write_text(json.dumps({"m::t": 1.5, "bad": "x"}))
    assert plugin()._history() == ({"m::t": 1.5}, {}, prior)
    path.write_text(json.dumps({"cases": {"m::t": 1.5}, "collect": {"m": 0.25, "n": -1}}))
    assert plugin()._history() == ({"m::t": 1.5}, {"m": 0.25}, prior)
    path.write_text(json.dumps({"cases": {}, "collect": {}, "per_case": 0.002}))
    assert plugin()._history() == ({}, {}, 0.002)
    path.write_text(json.dumps({"cases": {}, "collect": {}, "per_case": "x"}))
    assert plugin()._history() == ({}, {}, prior)
    path.write_text("not json")
    assert plugin()._history() == ({}, {}, prior)


def test_cases_recorded_as_taking_no_time_still_weigh_their_cost() -> None:
    """JUnit records most fast cases as 0.000 s: a module of 1,000 such cases is not put
    in a shard beside 100 cases of 5 ms as if it cost nothing; counted at 1 ms a case, it
    is split so each shard runs about 1.1 s."""
    make_plan = plugin().make_plan
    durations = {f"fast::t{n}": 0.0 for n in range(1000)}
    durations.update({f"slow::t{n}": 0.005 for n in range(100)})
    blind = make_plan(durations, 2)
    assert max(blind.counts) > 1000  # the 0.000s weigh nothing: one shard gets them all
    plan = make_plan(durations, 2, per_case=0.001)
    cost = [0.0, 0.0]
    for key, shard in plan.shard_of.items():
        cost[shard] += durations[key] + 0.001
    assert abs(cost[0] - cost[1]) < 0.05, cost
    assert plan.loads == pytest.approx(cost)


def test_junit_keys_match_pytests_own_junit_names() -> None:
    """The key of a node id is the classname::name pytest's JUnit XML writes for it."""
    assert plugin().junit_key("tests/test_x.py::TestC::test_y[1-2]") == (
        "tests.test_x.TestC::test_y[1-2]"
    )


@pytest.mark.parametrize("value", ["0", "-2", "1.5", '"many"', "true", "1001", "1000000000"])
def test_a_bad_shard_count_is_a_plan_error(tmp_path: Path, value: str) -> None:
    """shards = 0, negative, fractional, a word, a boolean or over 1,000: one line saying
    what shards may be, at the key's line."""
    (tmp_path / "p.toml").write_text(f'[[test]]\nid = "a"\nrun = "true"\nshards = {value}\n')
    with pytest.raises(PlanError) as caught:
        load_plans([tmp_path])
    message = str(caught.value)
    assert "shards must be a whole number from 1 to 1000 or 'auto'" in message
    assert "Value error" not in message and "\n" not in message
    assert caught.value.line == 4


def test_a_request_with_too_many_shards_is_refused() -> None:
    """Over the wire or from Python, a request's shards are bounded as a plan's are."""
    from pydantic import ValidationError

    from parallel_orch.models import TestRequest

    assert TestRequest(id="a", command="true", shards=1000).shards == 1000
    with pytest.raises(ValidationError, match="from 1 to 1000"):
        TestRequest(id="a", command="true", shards=10**9)


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


def test_collection_times_are_kept_only_where_the_next_session_reads_them(tmp_path: Path) -> None:
    """A local shard is told where to write its modules' times; a fleet node's copy of the
    durations (no session folder) is not, as nothing there would read them back."""
    from parallel_orch.models import TestRequest
    from parallel_orch.sharding import COLLECT_TIMES_ENV, durations_path, shard_env

    shard = TestRequest(id="suite", command="true", shards=2).split(2)[1]
    local = durations_path(tmp_path, "0123abcd", "suite")
    env = shard_env(shard, {}, status_file=tmp_path / "s", durations=local)
    name = local.name.removesuffix(".durations.json")  # the test's id, made safe for a path
    assert env[COLLECT_TIMES_ENV] == str(tmp_path / "shards" / "collect" / name / "2.json")
    node = tmp_path / "node-state" / "shards" / "attempt-key.json"
    assert COLLECT_TIMES_ENV not in shard_env(shard, {}, status_file=tmp_path, durations=node)


def test_a_stored_request_reloads_under_todays_bounds() -> None:
    """A request admitted before the bounds (5,000 shards, a pattern input) still loads from
    the store, so a resume after an upgrade does not fail; as new input it is refused."""
    from pydantic import ValidationError

    from parallel_orch.models import STORED, TestRequest

    old = '{"id": "t", "command": "true", "shards": 5000, "setup": "make",'
    old += ' "setup_inputs": ["*.lock"]}'
    request = TestRequest.model_validate_json(old, context={STORED: True})
    assert (request.shards, request.setup_inputs) == (5000, ("*.lock",))
    with pytest.raises(ValidationError):
        TestRequest.model_validate_json(old)


@pytest.mark.parametrize("value", [2, 2.0, "2"])
def test_a_whole_number_of_shards_is_taken_however_it_is_written(value: object) -> None:
    """Over the wire, JSON clients may send 2, 2.0 or "2": all mean two shards."""
    from parallel_orch.models import TestRequest

    assert TestRequest.model_validate({"id": "t", "command": "true", "shards": value}).shards == 2
