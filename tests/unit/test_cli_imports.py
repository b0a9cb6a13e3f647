"""The CLI starts at once: `--help` and the daemon's client commands load no engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import cli_env
from tests.helpers import GitRepo

#: What the engine needs and a client command must not pay for.
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic_settings", "alembic", "lxml", "jinja2", "git")


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_building_the_app_loads_no_engine() -> None:
    """What `parallel-orch --help` imports: the commands and their options only."""
    assert loaded_after("import parallel_orch.cli") == []


@pytest.mark.parametrize(
    "code",
    [
        "from parallel_orch.client import DaemonClient",
        "from parallel_orch.daemon.paths import socket_path_light",
        "from parallel_orch.cli.outputs import ReportFlags; ReportFlags.parse({})",
    ],
    ids=["client", "socket", "report-flags"],
)
def test_what_a_client_command_uses_loads_no_engine(code: str) -> None:
    """The daemon client, finding its socket, and the report flags need no store or git."""
    assert loaded_after(code) == []


def test_the_package_namespace_is_lazy() -> None:
    """`import parallel_orch` loads nothing heavy until a name is used."""
    assert loaded_after("import parallel_orch") == []
    assert "pydantic_settings" in loaded_after(
        "import parallel_orch; parallel_orch.ParallelTestOrchestrator"
    )


def run_probe(repo: Path, setup: str, *args: str) -> str:
    """The output of `parallel-orch ARGS` run in ``repo`` in a process that first runs the
    Python lines ``setup`` (``atexit`` and ``sys`` imported)."""
    probe = (
        f"import atexit, sys\n{setup}sys.argv = {['parallel-orch', *args]!r}\n"
        "from parallel_orch.cli import main\nmain()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, env=cli_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def loaded_by_run(repo: Path, watched: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``watched`` modules a `parallel-orch run -q` process had loaded when it exited."""
    setup = (
        f"atexit.register(lambda: print('LOADED', *(m for m in {watched!r} if m in sys.modules)))\n"
    )
    return run_probe(repo, setup, "run", "-q", "plans").rpartition("LOADED")[2].split()


def test_run_on_a_current_store_loads_neither_sqlalchemy_nor_gitpython(repo: GitRepo) -> None:
    """A store at this release's schema is opened, read and written on plain sqlite3: only
    a run that makes (or upgrades) the store pays for SQLAlchemy, SQLModel and Alembic;
    the worktrees' git runs as plain processes (GitPython takes ~70 ms to import)."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "one.toml").write_text('[[test]]\nid = "one"\nrun = "true"\n')
    first = loaded_by_run(repo.path)
    assert {"sqlalchemy", "sqlmodel", "alembic"} <= set(first)  # it made the store
    second = loaded_by_run(repo.path)
    assert not {"sqlalchemy", "sqlmodel", "alembic", "git"} & set(second)


def test_a_quiet_run_loads_no_progress_display(repo: GitRepo) -> None:
    """`run -q` draws nothing while it runs: rich's live display and the ETA stay unloaded."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "one.toml").write_text('[[test]]\nid = "one"\nrun = "true"\n')
    watched = ("rich.live", "rich.progress", "parallel_orch.progress", "parallel_orch.eta")
    assert loaded_by_run(repo.path, watched) == []


def loaded_at_spawns(repo: Path, watched: tuple[str, ...]) -> list[list[str]]:
    """The ``watched`` modules a `parallel-orch run -q -j 1` process had loaded as it started
    each attempt's process (each one that is not git)."""
    setup = (
        "seen = []\n"
        "def spawning(event, args):\n"
        "    if event == 'subprocess.Popen' and args[1][0] != 'git':\n"
        f"        seen.append(','.join(m for m in {watched!r} if m in sys.modules))\n"
        "sys.addaudithook(spawning)\n"
        "atexit.register(lambda: print('LOADED', *seen))\n"
    )
    out = run_probe(repo, setup, "run", "-q", "-j", "1", "plans")
    assert "3 of 3 tests passed" in out, out  # the report, printed all the same
    return [spawn.split(",") for spawn in out.rpartition("LOADED")[2].split()]


def test_a_quiet_run_loads_the_report_renderer_while_its_attempts_run(repo: GitRepo) -> None:
    """The text report and rich (~25 ms) are loaded once the first attempt has finished,
    while the next ones run: not on the way to the first, nor after the last."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "three.toml").write_text(
        "".join(f'[[test]]\nid = "{n}"\nrun = "{run}"\n' for n, run in enumerate(RUNS))
    )
    watched = ("parallel_orch.orchestrator", "parallel_orch.report.renderers.text", "rich")
    first, _, third = loaded_at_spawns(repo.path, watched)
    assert first == ["parallel_orch.orchestrator"]
    assert third == list(watched)  # loaded during the second's second


#: One worker runs them in turn: the renderer is loaded during the second.
RUNS = ("true", "sleep 1", "true")


def test_a_run_without_junit_or_webhook_loads_neither_parser_nor_http(repo: GitRepo) -> None:
    """lxml is loaded to read a JUnit file and urllib/http to post a webhook, not before:
    a run of plain commands pays for neither."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "one.toml").write_text('[[test]]\nid = "one"\nrun = "true"\n')
    watched = ("lxml", "urllib.request", "http.client")
    assert loaded_by_run(repo.path, watched) == []
    (repo.path / "plans" / "one.toml").write_text(
        '[[test]]\nid = "one"\njunit = true\n'
        'run = ["sh", "-c", "echo \'<testsuite><testcase name=\\"a\\"/></testsuite>\' '
        '> \\"$PARALLEL_ORCH_JUNIT\\""]\n'
    )
    assert loaded_by_run(repo.path, watched) == ["lxml"]


def collector_after(repo: Path, call: str) -> tuple[bool, int]:
    """Whether the garbage collector was on, and how many objects were frozen, when a
    process that ran `run -q plans` through ``call`` exited."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('GC', gc.isenabled(), gc.get_freeze_count()))\n"
        f"{call}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, env=cli_env(), capture_output=True, text=True
    )
    enabled, frozen = done.stdout.rpartition("GC ")[2].split()
    return enabled == "True", int(frozen)


def test_the_console_script_collects_garbage_while_tests_run(repo: GitRepo) -> None:
    """`parallel-orch` keeps the collector off only while it starts: the session runs (and
    the process ends) with it on, start-up's objects frozen out of its walks."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "one.toml").write_text('[[test]]\nid = "one"\nrun = "true"\n')
    call = (
        "sys.argv = ['parallel-orch', 'run', '-q', 'plans']\n"
        "from parallel_orch.cli import main\n"
        "main()"
    )
    enabled, frozen = collector_after(repo.path, call)
    assert enabled and frozen > 10_000


def test_the_app_called_in_a_script_leaves_its_collector_alone(repo: GitRepo) -> None:
    """A script (or test) that calls the typer ``app`` itself keeps its own collector as it was."""
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "one.toml").write_text('[[test]]\nid = "one"\nrun = "true"\n')
    call = "from parallel_orch.cli import app\napp(['run', '-q', 'plans'], standalone_mode=False)"
    assert collector_after(repo.path, call) == (True, 0)


def test_a_command_that_never_starts_a_loop_gives_the_collector_back() -> None:
    """`parallel-orch --help` (like a client command) ends with the collector on, as found."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('GC', gc.isenabled()))\n"
        "sys.argv = ['parallel-orch', '--help']\n"
        "from parallel_orch.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.rpartition("GC ")[2].split() == ["True"], done.stdout + done.stderr
