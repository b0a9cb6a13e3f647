"""A pytest plugin that keeps one shard's share of the collected cases (Bazel's protocol).

parallel-orch loads it into the test's own interpreter for a sharded plan
test, through ``PYTEST_PLUGINS`` and this folder on ``PYTHONPATH``: nothing is
installed into the test's venv, and this module imports nothing but pytest.

With ``TEST_TOTAL_SHARDS`` and ``TEST_SHARD_INDEX`` set, it touches
``TEST_SHARD_STATUS_FILE`` (saying "this runner shards", as Bazel asks) and
deselects every case that is not this shard's.

The split is planned from the recorded durations alone
(``PARALLEL_ORCH_SHARD_DURATIONS``, a JSON object of ``"<classname>::<name>"``
to seconds, the names JUnit XML gives them), so every shard computes the same
one: longest first onto the least loaded shard, a module's cases kept
together while they fit (its classes' included), split case by case when
they would not. A shard then does not import a test module none of whose
recorded cases is its: that import and collection is most of a shard's
start-up a pytest-xdist worker, which collects everything, cannot save.
``PARALLEL_ORCH_SHARD_COLLECT=all`` collects every module (for a suite whose
tests rely on another module having been imported), as does naming a case
(``file.py::test``) on the command line; the split is the same either way.

A case with no recorded duration goes to a shard that collects its module:
in a module every shard collects (one the history does not know, or one
split across all), onto the least loaded shard as heavy as the median known
case, by node id; in a module only some shards collect, round robin over
those, by node id. Either way every shard that collects a module sees the
same cases in it and decides the same, so every case runs in exactly one
shard.
"""

from __future__ import annotations

import heapq
import json
import os
import statistics
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

UNKNOWN_SECONDS = 1.0  # the weight of every case when none has a recorded duration
#: pytest's own cost of a case beyond the time JUnit records for it (its hooks, reports, the
#: XML), until a shard has measured it: 64,000 cases recorded as 0.000 s still take a minute.
PER_CASE_SECONDS = 0.0005
SLACK = 0.02  # a module is kept whole if it leaves its shard at most this far over an even share
COLLECT_ENV = "PARALLEL_ORCH_SHARD_COLLECT"
COLLECT_TIMES_ENV = "PARALLEL_ORCH_SHARD_COLLECT_TIMES"


def junit_key(nodeid: str) -> str:
    """The ``classname::name`` pytest's JUnit XML gives the case with this node id."""
    from _pytest.junitxml import mangle_test_address

    names = mangle_test_address(nodeid)
    return f"{'.'.join(names[:-1])}::{names[-1]}"


def module_prefix(nodeid: str) -> str:
    """The dotted name JUnit classnames of the cases in this node's file start with."""
    from _pytest.junitxml import mangle_test_address

    return mangle_test_address(nodeid.split("::", 1)[0])[0]


def group_of(classname: str) -> str:
    """The cases kept together when they fit: a module's. A trailing part of the classname
    starting with a capital letter is taken for a class (a wrong guess costs only balance)."""
    parts = classname.split(".")
    while len(parts) > 1 and parts[-1][:1].isupper():
        parts.pop()
    return ".".join(parts)


class Plan(NamedTuple):
    """The split of the recorded cases, the same in every shard."""

    total: int
    shard_of: dict[str, int]  # recorded case key -> its shard
    loads: list[float]
    counts: list[int]
    holders: dict[str, frozenset[int]]  # dotted prefix of a recorded classname -> shards
    per_case: float = 0.0  # added to every case's recorded seconds

    def holding(self, prefix: str) -> frozenset[int]:
        """The shards that collect the module with this prefix: those holding any of its
        recorded cases, or all of them when the history knows none."""
        return self.holders.get(prefix) or frozenset(range(self.total))


def make_plan(
    durations: Mapping[str, float],
    total: int,
    collect: Mapping[str, float] | None = None,
    per_case: float = 0.0,
) -> Plan:
    """Modules longest first onto the least loaded shard, split into cases when whole they
    would leave it over an even share (plus ``SLACK``); ties by name. A case weighs its
    recorded seconds plus ``per_case`` (pytest's own cost of running one); a module's
    ``collect`` time (its import and collection) counts once in each shard that holds any
    of its cases."""
    collect = collect or {}
    cost = {key: seconds + per_case for key, seconds in durations.items()}
    groups: dict[str, list[str]] = {}
    for key in durations:
        groups.setdefault(group_of(key.split("::", 1)[0]), []).append(key)
    weights = {g: sum(cost[k] for k in ks) + collect.get(g, 0.0) for g, ks in groups.items()}
    target = sum(weights.values()) / total * (1 + SLACK)
    heap = [(-weights[g], 0, g, sorted(ks)) for g, ks in groups.items()]
    heapq.heapify(heap)
    loads, counts = [0.0] * total, [0] * total
    shard_of: dict[str, int] = {}
    charged: set[tuple[str, int]] = set()  # (module, shard): its collection counted there
    while heap:
        weight, kind, name, keys = heapq.heappop(heap)
        shard = min(range(total), key=lambda s: (loads[s], counts[s], s))
        if kind == 0 and len(keys) > 1 and loads[shard] - weight > target:
            for key in keys:
                heapq.heappush(heap, (-cost[key], 1, key, [key]))
            continue
        group = name if kind == 0 else group_of(name.split("::", 1)[0])
        extra = 0.0 if kind == 0 or (group, shard) in charged else collect.get(group, 0.0)
        charged.add((group, shard))
        for key in keys:
            shard_of[key] = shard
        loads[shard] += extra - weight
        counts[shard] += len(keys)
    return Plan(total, shard_of, loads, counts, _holders(shard_of), per_case)


def _holders(shard_of: Mapping[str, int]) -> dict[str, frozenset[int]]:
    """Every dotted prefix of a recorded classname: the shards holding a case under it."""
    holders: dict[str, set[int]] = {}
    for key, shard in shard_of.items():
        parts = key.split("::", 1)[0].split(".")
        for n in range(1, len(parts) + 1):
            holders.setdefault(".".join(parts[:n]), set()).add(shard)
    return {prefix: frozenset(shards) for prefix, shards in holders.items() if prefix}


def assign(
    nodeids: Sequence[str],
    durations: Mapping[str, float],
    total: int,
    plan: Plan | None = None,
) -> list[int]:
    """The shard (0-based) of each collected case; see the module docstring. ``plan`` is
    ``make_plan(durations, total)``, when already made."""
    plan = plan or make_plan(durations, total)
    shard_of = [plan.shard_of.get(junit_key(n), -1) for n in nodeids]
    everyone: list[int] = []
    by_module: dict[str, list[int]] = {}
    for i, nodeid in enumerate(nodeids):
        if shard_of[i] < 0:
            prefix = module_prefix(nodeid)
            if len(plan.holding(prefix)) == total:
                everyone.append(i)
            else:
                by_module.setdefault(prefix, []).append(i)
    weight = statistics.median(durations.values()) + plan.per_case if durations else UNKNOWN_SECONDS
    loads, counts = list(plan.loads), list(plan.counts)
    for i in sorted(everyone, key=lambda i: nodeids[i]):
        shard = min(range(total), key=lambda s: (loads[s], counts[s], s))
        shard_of[i] = shard
        loads[shard] += weight
        counts[shard] += 1
    for prefix, cases in by_module.items():
        holding = sorted(plan.holding(prefix))
        start = zlib.crc32(prefix.encode())
        for n, i in enumerate(sorted(cases, key=lambda i: nodeids[i])):
            shard_of[i] = holding[(start + n) % len(holding)]
    return shard_of


class _History(NamedTuple):
    durations: dict[str, float]  # recorded case durations
    collect: dict[str, float]  # the modules' collection times
    per_case: float  # pytest's own cost a case, as a shard last measured it


def _history() -> _History:
    """What the recorded sessions say; see :class:`_History`."""
    path = os.environ.get("PARALLEL_ORCH_SHARD_DURATIONS")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        return _History({}, {}, PER_CASE_SECONDS)
    if "cases" not in data:  # a file of durations alone, as first written
        return _History(_seconds(data), {}, PER_CASE_SECONDS)
    per_case = data.get("per_case")
    if not isinstance(per_case, int | float) or not 0 <= per_case < 1:
        per_case = PER_CASE_SECONDS
    return _History(_seconds(data.get("cases")), _seconds(data.get("collect")), float(per_case))


def _seconds(data: object) -> dict[str, float]:
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and v >= 0}


class _Shard(NamedTuple):
    mine: int  # this shard, from 0
    total: int
    durations: dict[str, float]
    plan: Plan
    skips: bool  # whether modules holding none of this shard's cases go uncollected


_SHARD = pytest.StashKey[_Shard | None]()
_EMPTY_SHARD = pytest.StashKey[bool]()
_SKIPPED = pytest.StashKey[set[str]]()  # node ids of the modules not collected


def _shard(config: pytest.Config) -> _Shard | None:
    """This process's shard, planned once; None when it is not one of several."""
    if _SHARD not in config.stash:
        total = int(os.environ.get("TEST_TOTAL_SHARDS", "0") or 0)
        shard = None
        if total > 1:
            index = int(os.environ.get("TEST_SHARD_INDEX", "0") or 0)
            known = _history()
            skips = os.environ.get(COLLECT_ENV, "") != "all" and not any(
                "::" in str(arg) for arg in config.args
            )
            plan = make_plan(known.durations, total, known.collect, known.per_case)
            shard = _Shard(index, total, known.durations, plan, skips)
        config.stash[_SHARD] = shard
    return config.stash[_SHARD]


@pytest.hookimpl(tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport | None:
    """A test module none of whose recorded cases is this shard's: not imported, no cases."""
    if not isinstance(collector, pytest.Module):
        return None
    shard = _shard(collector.config)
    if shard is None or not shard.skips:
        return None
    if shard.mine in shard.plan.holding(module_prefix(collector.nodeid)):
        return None
    collector.config.stash.setdefault(_SKIPPED, set()).add(collector.nodeid)
    return pytest.CollectReport(collector.nodeid, "passed", None, [])


class _Timer:
    """Times each module's import and collection in this shard, and pytest's own cost a case
    (its run less the time of its phases, which is what JUnit records), and writes them to
    ``PARALLEL_ORCH_SHARD_COLLECT_TIMES`` when the session ends (the next session's balance
    counts them). A module given on the command line is collected twice (imported the first
    time) with no report after the first: its time runs from each of its ``collectstart``
    to the next collection event."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config, self.path = config, path
        self.open: tuple[str, float] | None = None  # the module being collected, since when
        self.times: dict[str, float] = {}
        self.cases = 0
        self.running = 0.0  # seconds in the run protocol of this shard's cases
        self.phases = 0.0  # of which in their setup, call and teardown

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> object:
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            self.running += time.perf_counter() - started
            self.cases += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.phases += report.duration

    def _close(self) -> None:
        if self.open is not None:
            nodeid, started = self.open
            self.open = None
            if nodeid not in self.config.stash.get(_SKIPPED, ()):
                prefix = module_prefix(nodeid)
                self.times[prefix] = self.times.get(prefix, 0.0) + time.perf_counter() - started

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        self._close()
        if isinstance(collector, pytest.Module):
            self.open = (collector.nodeid, time.perf_counter())

    def pytest_collectreport(self) -> None:
        self._close()

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self) -> None:
        self._close()

    def pytest_sessionfinish(self) -> None:
        if not self.times and not self.cases:
            return
        times = {prefix: round(seconds, 3) for prefix, seconds in self.times.items()}
        found: dict[str, object] = {"modules": times}
        if self.cases:
            found["per_case"] = round(max(0.0, self.running - self.phases) / self.cases, 6)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(found, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # only a hint for the next session's balance


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(COLLECT_TIMES_ENV)
    if path and _shard(config) is not None:
        config.pluginmanager.register(_Timer(config, Path(path)), "parallel_orch_shard_timer")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = _shard(config)
    if shard is None:
        return
    status = os.environ.get("TEST_SHARD_STATUS_FILE")
    if status:
        Path(status).touch()
    nodeids = [item.nodeid for item in items]
    shard_of = assign(nodeids, shard.durations, shard.total, shard.plan)
    keep = [item for item, s in zip(items, shard_of, strict=True) if s == shard.mine]
    dropped = [item for item, s in zip(items, shard_of, strict=True) if s != shard.mine]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    skipped = bool(config.stash.get(_SKIPPED, None))
    config.stash[_EMPTY_SHARD] = (bool(dropped) or skipped) and not keep


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A shard whose share is empty (fewer cases than shards) passed, as in Bazel: pytest
    would exit 5, "no tests collected", and the test would look failed."""
    if (
        session.config.stash.get(_EMPTY_SHARD, False)
        and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED
    ):
        session.exitstatus = pytest.ExitCode.OK
