"""CLI start-up: client commands as a user runs them, and `run` to its first spawned attempt.

Each command is a new process of the venv's ``parallel-orch`` console
script, timed from start to exit; the figure is the median of several (one
untimed run first). Against a running daemon on a small repo: ``--help``,
``ping``, ``status``, ``sessions`` and ``submit`` of a one-test plan, each
with ``--socket``. Then, with the daemon stopped and its pool warm, ``run``
of a one-test plan whose test writes ``date +%s.%N`` to a file: the time
from just before the process is started to that stamp is the time to the
first spawned attempt (plus the ``bash -c`` that runs ``date``, a few ms).

Both environments, ``PYTHONDONTWRITEBYTECODE=1`` first: whether the
package's own modules are compiled depends on what ran before in this
checkout (an installed wheel has them compiled by pip), so the count of
compiled modules is printed before each. The interpreter's own start
(``python -c pass``) is printed beside the figures as the floor.

Targets: at most 0.25 s per client command; ``run`` spawns its first
attempt within 0.5 s of starting on a warm pool.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.cli_process import PyEnv, cli_argv, package_bytecode, python_envs
from bench.common import Figure, bench_main, fmt_ms, fresh_dir, init_repo, median, note
from bench.daemon_process import running_daemon

CLIENT_TARGET_MS = 250.0
FIRST_SPAWN_TARGET_MS = 500.0
WORKERS = 2


def timed(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
    """Seconds from start to exit of one process (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return wall


def repeat(argv: Sequence[str], cwd: Path, env: Mapping[str, str], times: int) -> list[float]:
    timed(argv, cwd, env)  # untimed: the page cache, and any bytecode it may write
    return [timed(argv, cwd, env) for _ in range(times)]


def client_commands(socket: Path) -> dict[str, list[str]]:
    where = ["--socket", str(socket)]
    return {
        "--help": cli_argv("--help"),
        "ping": cli_argv("ping", *where),
        "status": cli_argv("status", *where),
        "sessions": cli_argv("sessions", *where),
        "submit": cli_argv("submit", *where, "plans/one.toml"),
    }


def first_spawn(repo: Path, env: Mapping[str, str], stamp: Path, times: int) -> list[float]:
    """Seconds from starting ``run`` to its attempt's ``date`` stamp, ``times`` runs (one
    untimed first); a sample is dropped if the wall clock stepped meanwhile."""
    argv = cli_argv("run", "plans/stamp.toml", "-j", str(WORKERS), "-q")
    out = []
    for index in range(times + 1):
        stamp.unlink(missing_ok=True)
        started, mono = time.time(), time.perf_counter()
        subprocess.run(argv, cwd=repo, env=dict(env), capture_output=True, check=False)
        wall = time.perf_counter() - mono
        if not stamp.exists():
            raise RuntimeError("`run` never spawned its attempt")
        spawn = float(stamp.read_text()) - started
        if index and 0 < spawn < wall:
            out.append(spawn)
        elif index:
            note(f"dropped a sample: spawn {spawn:.3f} s against wall {wall:.3f} s")
    return out


def measure_env(repo: Path, work: Path, pyenv: PyEnv, times: int, index: int) -> list[Figure]:
    total, compiled = package_bytecode()
    note(f"-- environment: {pyenv.label} ({compiled} of {total} package modules compiled) --")
    floor = repeat([sys.executable, "-c", "pass"], repo, pyenv.env, times)
    note(f"python -c pass        : {fmt_ms(floor)}")
    figures = []
    with running_daemon(repo, workers=WORKERS, log=work / f"daemon-{index}.log") as daemon:
        for name, argv in client_commands(daemon.socket).items():
            walls = repeat(argv, repo, pyenv.env, times)
            note(f"parallel-orch {name:<8}: {fmt_ms(walls)}")
            value = median(walls) * 1000
            figures.append(
                Figure(
                    f"startup [{pyenv.label}]: {name}",
                    value,
                    "ms",
                    f"<= {CLIENT_TARGET_MS:.0f} ms",
                    value <= CLIENT_TARGET_MS,
                )
            )
    spawns = first_spawn(repo, pyenv.env, work / "stamp", times)
    note(f"run, start to spawn  : {fmt_ms(spawns)}" if spawns else "run: no usable sample")
    if spawns:
        value = median(spawns) * 1000
        figures.append(
            Figure(
                f"startup [{pyenv.label}]: run to first spawn (warm pool)",
                value,
                "ms",
                f"<= {FIRST_SPAWN_TARGET_MS:.0f} ms",
                value <= FIRST_SPAWN_TARGET_MS,
            )
        )
    return figures


def run(quick: bool) -> list[Figure]:
    times = 5 if quick else 11
    work = fresh_dir("startup")
    repo = work / "repo"
    init_repo(repo, 50)
    plans = repo / "plans"
    plans.mkdir()
    (plans / "one.toml").write_text('[[test]]\nid = "one"\nrun = "true"\n')
    stamp = work / "stamp"
    (plans / "stamp.toml").write_text(f"[[test]]\nid = \"stamp\"\nrun = 'date +%s.%N > {stamp}'\n")
    note(f"median of {times} runs each (one untimed before), {WORKERS} workers")
    figures = []
    for index, pyenv in enumerate(python_envs()):
        figures += measure_env(repo, work, pyenv, times, index)
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("CLI start-up: client commands and `run` to its first attempt", run, argv)


if __name__ == "__main__":
    main()
