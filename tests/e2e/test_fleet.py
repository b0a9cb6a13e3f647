"""The fleet: the same plans run on a real Dask scheduler and workers, one record here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from parallel_orch import procs
from tests.e2e.cli import cli_argv, cli_env, run_cli
from tests.e2e.conftest import StartDaemon, query, wait_until
from tests.fleet import DaskCluster, fleet_env
from tests.helpers import GitRepo

pytestmark = pytest.mark.slow

RUN_SECONDS = 120


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two workers of 2 threads, one of them with a GPU (``gpu=1``)."""
    started = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        yield started.start({"cpu": None, "gpu": "gpu=1"})
    finally:
        started.stop()


@pytest.fixture
def worker_dir(tmp_path: Path) -> Path:
    return tmp_path / "fleet"


def _plans(repo: GitRepo, marks: Path, text: str) -> None:
    marks.mkdir(parents=True, exist_ok=True)
    repo.commit({"plans/fleet.toml": text.replace("MARKS", str(marks))}, "plans")


def _report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def _tests(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["test_id"]: t for t in report["completed_tests"]}


def _fleet_run(
    repo: GitRepo, tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """``parallel-orch run ARGS`` with ``env``; the process, and its report's tests by id."""
    report = tmp_path / "r.json"
    argv = ["run", *args, "--report-json", str(report)]
    done = run_cli(argv, cwd=repo.path, env=env, timeout=RUN_SECONDS)
    return done, _tests(_report(report)) if report.exists() else {}


def _holds(count: int) -> str:
    """Tests ``hold0``... that write their pid to MARKS/pids and sleep until killed; their
    processes carry ``FLEET_MARK=MARKS``."""
    return "".join(
        f'[[test]]\nid = "hold{n}"\nenv = {{ FLEET_MARK = "MARKS" }}\n'
        f"run = 'echo $$ >> \"MARKS/pids\"; exec sleep 120'\n"
        for n in range(count)
    )


MIXED = """
[[test]]
id = "passes"
run = "echo fine"

[[test]]
id = "fails"
run = "echo broken >&2; exit 1"

[[test]]
id = "flaky"
retries = 1
run = 'm="MARKS/flaky-$PARALLEL_ORCH_SESSION_ID"; [ -e "$m" ] && exit 0; touch "$m"; exit 1'

[[test]]
id = "cases"
junit = true
run = '''printf '<testsuite><testcase classname="c" name="a"/><testcase classname="c" name="b">\
<skipped/></testcase><testcase classname="c" name="d"/></testsuite>' > "$PARALLEL_ORCH_JUNIT"'''

[[test]]
id = "slow"
timeout = "1s"
run = "exec sleep 30"
"""


def test_a_fleet_run_reports_what_a_local_run_of_the_same_plans_reports(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """Statuses, counts, case totals and the report hash match a local run; hosts differ."""
    _plans(repo, tmp_path / "marks", MIXED)
    local = run_cli(
        ["run", "-j", "2", "--report-json", str(tmp_path / "local.json")], cwd=repo.path
    )
    fleet = run_cli(
        ["run", "--report-json", str(tmp_path / "fleet.json")],
        cwd=repo.path,
        env=fleet_env(cluster, worker_dir),
        timeout=RUN_SECONDS,
    )
    assert (local.returncode, fleet.returncode) == (1, 1), fleet.stderr
    ours, theirs = _report(tmp_path / "local.json"), _report(tmp_path / "fleet.json")
    same = ["status", "total_tests", "tests_passed", "tests_failed", "tests_timed_out",
            "tests_flaky", "tests_interrupted", "cases", "report_hash"]  # fmt: skip
    assert {k: theirs[k] for k in same} == {k: ours[k] for k in same}
    statuses = {t: (r["status"], len(r["attempts"])) for t, r in _tests(theirs).items()}
    assert statuses == {t: (r["status"], len(r["attempts"])) for t, r in _tests(ours).items()}
    hosts = {a["host"] for t in _tests(theirs).values() for a in t["attempts"]}
    assert hosts <= set(cluster.workers().values()) and "" not in hosts
    assert {a["host"] for t in _tests(ours).values() for a in t["attempts"]} == {""}
    failed = _tests(theirs)["fleet::fails"]["attempts"][-1]
    assert Path(failed["log_path"]).read_text() == "broken\n"  # the log came back
    assert f"ran on {failed['host']}\n" in fleet.stdout  # the terminal report says where
    assert "ran on" not in local.stdout


def test_a_worker_killed_mid_test_interrupts_the_attempt_and_it_runs_again_elsewhere(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """kill -9 of the worker running a test: attempt 1 interrupted, attempt 2 passes."""
    marks = tmp_path / "marks"
    _plans(repo, marks, """
[[test]]
id = "victim"
run = 'm="MARKS/ran"; [ -e "$m" ] && exit 0; touch "$m"; echo $$ > "MARKS/pid"; exec sleep 60'
""")  # fmt: skip
    run = subprocess.Popen(
        cli_argv("run", "--report-json", str(tmp_path / "r.json")),
        cwd=repo.path, env=cli_env(fleet_env(cluster, worker_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: (marks / "pid").exists() and (marks / "pid").read_text().strip() != "")
    test_pid = int((marks / "pid").read_text())
    worker = psutil.Process(test_pid).parent()
    assert worker is not None
    worker.kill()
    _out, err = run.communicate(timeout=RUN_SECONDS)
    assert run.returncode == 0, err
    attempts = _tests(_report(tmp_path / "r.json"))["fleet::victim"]["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "passed"]
    assert "was lost" in (attempts[0]["error"] or "")
    wait_until(lambda: not psutil.pid_exists(test_pid), what="the killed worker's test")
    cluster.wait_for_workers(2)  # the nanny brings it back for the next test


def test_cancelling_a_run_kills_its_tests_on_every_worker(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """Ctrl-C while four tests run on two workers: exit 130, no test process left."""
    marks = tmp_path / "marks"
    _plans(repo, marks, _holds(4))
    run = subprocess.Popen(
        cli_argv("run"), cwd=repo.path, env=cli_env(fleet_env(cluster, worker_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pids_file = marks / "pids"
    wait_until(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 4)
    pids = [int(p) for p in pids_file.read_text().split()]
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=RUN_SECONDS)
    assert run.returncode == 130
    wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), what="the tests to die")
    assert procs.marked_groups([f"FLEET_MARK={marks}".encode()]) == set()


def test_a_test_that_needs_a_gpu_runs_only_on_the_worker_that_has_one(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """``resources = { gpu = 1 }`` lands on the worker started with ``--resources gpu=1``."""
    plan = "".join(
        f'[[test]]\nid = "gpu{n}"\nresources = {{ gpu = 1 }}\nrun = "sleep 0.2"\n'
        f'[[test]]\nid = "any{n}"\nrun = "sleep 0.2"\n'
        for n in range(4)
    )
    _plans(repo, tmp_path / "marks", plan)
    done, tests = _fleet_run(repo, tmp_path, fleet_env(cluster, worker_dir))
    assert done.returncode == 0, done.stderr
    gpu = cluster.workers()["gpu"]
    assert {tests[f"fleet::gpu{n}"]["attempts"][0]["host"] for n in range(4)} == {gpu}


def test_a_repo_workers_cannot_clone_is_an_error_per_test_not_a_hang(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """A repo URL the workers cannot reach: each test ``error``, saying why; exit 1."""
    _plans(repo, tmp_path / "marks", '[[test]]\nid = "t"\nrun = "true"\n')
    env = {**fleet_env(cluster, worker_dir), "PARALLEL_ORCH_DASK_REPO_URL": "/no/such/repo"}
    done, tests = _fleet_run(repo, tmp_path, env)
    assert done.returncode == 1, done.stderr
    test = tests["fleet::t"]
    assert test["status"] == "error"
    assert "cannot clone /no/such/repo" in test["attempts"][-1]["error"]


def test_a_scheduler_that_is_not_there_is_exit_3_with_one_line(
    repo: GitRepo, tmp_path: Path
) -> None:
    """``--scheduler`` at a closed port: exit 3, one line saying so, no traceback."""
    _plans(repo, tmp_path / "marks", '[[test]]\nid = "t"\nrun = "true"\n')
    env = {"PARALLEL_ORCH_DASK_CONNECT_SECONDS": "2"}
    started = time.monotonic()
    done = run_cli(["run", "--scheduler", "tcp://127.0.0.1:9"], cwd=repo.path, env=env)
    assert time.monotonic() - started < 30  # it gives up after the 2 s it was given
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]


def test_a_scheduler_lost_mid_session_interrupts_it_and_the_run_exits_3(
    repo: GitRepo, tmp_path: Path
) -> None:
    """The scheduler killed while a test runs: the session ends interrupted, exit 3."""
    marks = tmp_path / "marks"
    _plans(repo, marks, '[[test]]\nid = "long"\nrun = \'touch "MARKS/started"; sleep 60\'\n')
    own = DaskCluster(tmp_path / "dask").start({"only": None})
    try:
        run = subprocess.Popen(
            cli_argv("run"), cwd=repo.path, env=cli_env(fleet_env(own, tmp_path / "fleet")),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: (marks / "started").exists(), timeout=60)
        assert own.scheduler is not None
        os.kill(own.scheduler.pid, signal.SIGKILL)
        started = time.monotonic()
        _, err = run.communicate(timeout=RUN_SECONDS)
    finally:
        own.stop()
    assert run.returncode == 3
    assert "lost the Dask scheduler" in err and "Traceback" not in err
    assert time.monotonic() - started < 60
    state = repo.path / ".parallel-orch"
    assert query(state, "SELECT status FROM sessions") == [("interrupted",)]
    assert query(state, "SELECT status FROM attempts") == [("interrupted",)]


def test_the_daemon_runs_submitted_plans_on_the_fleet(
    repo: GitRepo,
    tmp_path: Path,
    cluster: DaskCluster,
    worker_dir: Path,
    start_daemon: StartDaemon,
    socket_path: Path,
) -> None:
    """``daemon --scheduler``: a submitted session runs on the workers, hosts recorded."""
    _plans(
        repo,
        tmp_path / "marks",
        '[[test]]\nid = "a"\nrun = "true"\n[[test]]\nid = "b"\nrun = "true"\n',
    )
    env = fleet_env(cluster, worker_dir)
    start_daemon(repo.path, "--scheduler", cluster.address, env=env)
    done = run_cli(
        ["submit", "plans", "--socket", str(socket_path), "--wait",
         "--report-json", str(tmp_path / "r.json")],
        cwd=repo.path, timeout=RUN_SECONDS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tests = _tests(_report(tmp_path / "r.json"))
    assert {a["host"] for t in tests.values() for a in t["attempts"]} <= set(
        cluster.workers().values()
    )


def test_executor_dask_without_a_scheduler_starts_a_local_cluster_for_the_run(
    repo: GitRepo, tmp_path: Path, worker_dir: Path
) -> None:
    """``run --executor dask``: a LocalCluster of ``-j`` workers runs it, and is gone after."""
    _plans(repo, tmp_path / "marks", '[[test]]\nid = "a"\nrun = "true"\n')
    env = {"PARALLEL_ORCH_DASK_WORKER_DIR": str(worker_dir)}
    done, tests = _fleet_run(repo, tmp_path, env, "--executor", "dask", "-j", "2")
    assert done.returncode == 0, done.stderr
    host = tests["fleet::a"]["attempts"][0]["host"]
    assert host.startswith("tcp://127.0.0.1:")
    assert sorted(p.name for p in worker_dir.glob("*/slot-*") if p.is_dir()) == ["slot-0", "slot-1"]


def test_max_failures_stops_the_tests_still_running_on_the_workers(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """``--max-failures 1``: once one test fails, the others are cancelled and killed there."""
    marks = tmp_path / "marks"
    holds = _holds(3)
    wait = 'while [ "$(wc -l < MARKS/pids)" -lt 3 ]; do sleep 0.1; done'
    fails = f"[[test]]\nid = \"fails\"\nrun = '{wait}; exit 1'\n"
    _plans(repo, marks, holds + fails)
    (marks / "pids").touch()
    done, tests = _fleet_run(repo, tmp_path, fleet_env(cluster, worker_dir), "--max-failures", "1")
    assert done.returncode == 130, done.stderr  # stopped, as a local run is
    assert tests["fleet::fails"]["status"] == "failed"
    assert {tests[f"fleet::hold{n}"]["status"] for n in range(3)} == {"cancelled"}
    pids = [int(p) for p in (marks / "pids").read_text().split()]
    wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), what="the held tests to die")


def test_a_worker_that_joins_mid_session_takes_work(repo: GitRepo, tmp_path: Path) -> None:
    """A second worker started while a session runs gets some of its tests."""
    plan = "".join(f'[[test]]\nid = "t{n}"\nrun = "sleep 1"\n' for n in range(10))
    _plans(repo, tmp_path / "marks", plan)
    own = DaskCluster(tmp_path / "dask").start({"first": None})
    try:
        run = subprocess.Popen(
            cli_argv("run", "--report-json", str(tmp_path / "r.json")),
            cwd=repo.path, env=cli_env(fleet_env(own, tmp_path / "fleet")),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        own.add_worker("late")
        own.wait_for_workers(2)
        late = own.workers()["late"]
        _, err = run.communicate(timeout=RUN_SECONDS)
    finally:
        own.stop()
    assert run.returncode == 0, err
    hosts = {t["attempts"][0]["host"] for t in _tests(_report(tmp_path / "r.json")).values()}
    assert late in hosts and len(hosts) == 2


def test_workers_fetch_the_commits_a_later_session_needs(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """A commit made after the workers cloned, and one no branch holds, run on the fleet."""
    _plans(repo, tmp_path / "marks", '[[test]]\nid = "v"\nrun = "cat version"\n')
    env = fleet_env(cluster, worker_dir)
    first = run_cli(["run"], cwd=repo.path, env=env, timeout=RUN_SECONDS)
    assert first.returncode == 1  # no version file yet: the workers have cloned
    repo.commit({"version": "2\n"})
    dangling = repo.git("commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "on no branch")
    for ref, expected in (("HEAD", "2\n"), (dangling, "2\n")):
        done, tests = _fleet_run(repo, tmp_path, env, "--ref", ref)
        assert done.returncode == 0, done.stderr
        attempt = tests["fleet::v"]["attempts"][0]
        assert Path(attempt["log_path"]).read_text() == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PARALLEL_ORCH_DASK_SCHEDULER", "not an address"),
        ("PARALLEL_ORCH_DASK_SCHEDULER", "tcp://127.0.0.1"),
        ("PARALLEL_ORCH_DASK_REPO_URL", "--upload-pack=touch pwned"),
    ],
)
def test_a_bad_scheduler_address_or_repo_url_is_exit_2_before_anything_runs(
    repo: GitRepo, tmp_path: Path, variable: str, value: str
) -> None:
    """A scheduler address without a port, or a repo URL git would take as an option: exit 2."""
    _plans(repo, tmp_path / "marks", '[[test]]\nid = "t"\nrun = "true"\n')
    env = {"PARALLEL_ORCH_EXECUTOR": "dask", variable: value}
    done = run_cli(["run"], cwd=repo.path, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid configuration:") and value in done.stderr
    assert not (repo.path / ".parallel-orch").exists() and not (repo.path / "pwned").exists()


def test_a_higher_priority_session_goes_before_queued_tests_on_the_fleet(
    repo: GitRepo,
    tmp_path: Path,
    cluster: DaskCluster,
    worker_dir: Path,
    start_daemon: StartDaemon,
    socket_path: Path,
) -> None:
    """Our queue decides what the fleet runs next: a later, higher priority test overtakes."""
    marks = tmp_path / "marks"
    held = 'echo {n} >> "MARKS/started"; while [ ! -e "MARKS/gate{n}" ]; do sleep 0.05; done'
    plan = "".join(f"[[test]]\nid = \"low{n}\"\nrun = '{held.format(n=n)}'\n" for n in range(8))
    urgent_plan = f'[[test]]\nid = "now"\nrun = "echo urgent >> {marks}/started"\n'
    repo.commit({"plans/urgent.toml": urgent_plan})
    _plans(repo, marks, plan)
    start_daemon(repo.path, "--scheduler", cluster.address, env=fleet_env(cluster, worker_dir))
    sock = ["--socket", str(socket_path)]
    low = run_cli(["submit", "plans/fleet.toml", *sock], cwd=repo.path)
    assert low.returncode == 0, low.stderr
    started_file = marks / "started"  # the cluster's 4 threads busy, 4 tests queued here

    def started() -> list[str]:
        return started_file.read_text().split() if started_file.exists() else []

    wait_until(lambda: len(started()) == 4)
    urgent = run_cli(["submit", "plans/urgent.toml", *sock, "--priority", "10"], cwd=repo.path)
    assert urgent.returncode == 0, urgent.stderr
    state = repo.path / ".parallel-orch"
    # One thread comes free: the next test it runs is the urgent one, not a fifth low one.
    (marks / f"gate{started()[0]}").touch()
    wait_until(lambda: len(started()) > 4, timeout=RUN_SECONDS)
    assert started()[4] == "urgent"
    for n in range(8):
        (marks / f"gate{n}").touch()
    wait_until(
        lambda: query(state, "SELECT count(*) FROM sessions WHERE status != 'running'") == [(2,)],
        timeout=RUN_SECONDS,
    )
    assert sorted(started()) == sorted([*map(str, range(8)), "urgent"])


def test_a_test_that_needs_a_resource_no_worker_has_is_an_error_not_a_wait(
    repo: GitRepo, tmp_path: Path, cluster: DaskCluster, worker_dir: Path
) -> None:
    """``resources = { tpu = 1 }`` on a fleet without one: ``error`` saying so, at once."""
    plan = '[[test]]\nid = "tpu"\nresources = { tpu = 1 }\nrun = "true"\n'
    _plans(repo, tmp_path / "marks", plan + '[[test]]\nid = "cpu"\nrun = "true"\n')
    done, tests = _fleet_run(repo, tmp_path, fleet_env(cluster, worker_dir))
    assert done.returncode == 1, done.stderr
    assert (tests["fleet::tpu"]["status"], tests["fleet::cpu"]["status"]) == ("error", "passed")
    assert "no Dask worker" in tests["fleet::tpu"]["attempts"][0]["error"]
    assert "--resources tpu=1" in tests["fleet::tpu"]["attempts"][0]["error"]
