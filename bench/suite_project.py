"""The real suite `bench/suite.py` runs: a pure-Python project from its PyPI sdist, in a git repo.

Which project is a small description here (``Project``): its name and
version, its pinned test requirements, its tests folder, and the test files
left out always or in quick mode, each with its reason. mpmath is the
default; ``BENCH_SUITE_PROJECT=packaging`` picks the other one. The sdist is
downloaded once, unpacked and committed into a fresh git repo under
``bench/.work/suite/<name>/repo`` on every run; the test requirements go into
a venv there, built once and reused while the pins are unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.common import WORK_DIR, Span, commit_all, git, measure, note, use_git_identity
from parallel_orch import junit
from parallel_orch.models import JUnitCounts

PROJECT_ENV = "BENCH_SUITE_PROJECT"  # which project's suite; mpmath when unset
#: Another checkout's own pool and store, under the scratch root (``BENCH_SUITE_AGAINST``).
AGAINST_POOL = "against.worktrees"
AGAINST_STATE = "state-against"


@dataclass(frozen=True, slots=True)
class Project:
    """One project whose suite the benchmark can run: what to fetch, install and leave out."""

    name: str  # on PyPI; its sdist ``<name>-<version>.tar.gz`` unpacks to ``<name>-<version>``
    version: str
    requirements: tuple[str, ...]  # the venv's, pinned so every run measures the same thing
    tests_dir: str  # relative to the unpacked sdist; its ``test_*.py`` are the suite
    excluded: Mapping[str, str]  # file name -> why it is left out always
    quick_excluded: Mapping[str, str]  # file name -> why it is left out in quick mode too


MPMATH = Project(
    name="mpmath",
    version="1.4.1",
    # Its ``tests`` extra, less the optional plotting and notebook ones, whose tests skip.
    requirements=(
        "pytest==9.2.0",
        "pytest-xdist==3.8.0",
        "pytest-timeout==2.4.0",
        "hypothesis==6.170.15",
        "packaging==26.3",
    ),
    tests_dir="mpmath/tests",
    excluded={
        "test_cli.py": "pexpect",
        "test_demos.py": "pexpect",
        "test_torture.py": "~200 s serially",
        "test_extra_gamma.py": "~190 s serially",
        "test_format.py": "~85 s serially",
        "test_functions2.py": "~35 s serially",
        "test_extra_zeta.py": "~25 s serially",
    },
    quick_excluded=dict.fromkeys(
        (
            "test_calculus.py",
            "test_elliptic.py",
            "test_quad.py",
            "test_basic_ops.py",
            "test_gammazeta.py",
            "test_convert.py",
        ),
        "over ~3 s serially",
    ),
)

PACKAGING = Project(
    name="packaging",
    version="26.4",
    # Its ``test`` dependency group, less coverage (not used) and hypothesis (only the
    # ``tests/property`` files use it, and its own config deselects them). The project
    # under test is pinned too: its tests import the installed ``packaging`` (a ``src``
    # layout, as its own test sessions install it), the same version as the sdist.
    requirements=(
        "pytest==9.2.0",
        "pytest-xdist==3.8.0",
        "pretend==1.0.9",
        "tomli_w==1.2.0",
        "packaging==26.4",
    ),
    tests_dir="tests",
    excluded={},
    quick_excluded={"test_version.py": "51,524 of its 64,207 cases, ~40 s serially"},
)

PROJECTS = {p.name: p for p in (MPMATH, PACKAGING)}


def chosen() -> Project:
    """The project ``BENCH_SUITE_PROJECT`` names, mpmath when it is unset."""
    name = os.environ.get(PROJECT_ENV) or MPMATH.name
    if name not in PROJECTS:
        raise SystemExit(f"{PROJECT_ENV}={name}: not one of {', '.join(PROJECTS)}")
    return PROJECTS[name]


@dataclass(frozen=True, slots=True)
class SuiteProject:
    """Where everything is: the scratch root, the repo, the suite's python, its test files."""

    about: Project
    root: Path
    repo: Path
    python: Path
    files: tuple[str, ...]  # relative to the repo

    def pytest(self, *args: str) -> str:
        """A shell command running the suite's pytest with ``args``."""
        return " ".join([str(self.python), "-m", "pytest", "-q", *args])


def prepare(about: Project, quick: bool) -> SuiteProject:
    """The sdist and venv (made once), a fresh repo, the test files; scratch dirs wiped."""
    root = WORK_DIR / "suite" / about.name
    root.mkdir(parents=True, exist_ok=True)
    sdist = fetch_sdist(about, root)
    python = ensure_venv(about, root)
    repo = make_repo(about, root, sdist)
    for scratch in (
        "state",
        "repo.worktrees",
        AGAINST_STATE,
        AGAINST_POOL,
        "logs",
        "reports",
        "plans",
    ):
        shutil.rmtree(root / scratch, ignore_errors=True)
    for made in ("logs", "reports", "plans"):
        (root / made).mkdir()
    return SuiteProject(about, root, repo, python, tuple(test_files(about, repo, quick)))


def fetch_sdist(about: Project, root: Path) -> Path:
    """The project's sdist from PyPI, downloaded once into ``root/dist``."""
    dist = root / "dist"
    sdist = dist / f"{about.name}-{about.version}.tar.gz"
    if not sdist.exists():
        note(f"downloading the {about.name}=={about.version} sdist")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"{about.name}=={about.version}",
                "-d",
                str(dist),
            ],
            check=True,
        )
    return sdist


def ensure_venv(about: Project, root: Path) -> Path:
    """A venv with the suite's test requirements, built once; its python."""
    venv = root / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(about.requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    note("creating the suite's venv")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *about.requirements,
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def make_repo(about: Project, root: Path, sdist: Path) -> Path:
    """The unpacked sdist committed into a fresh git repo ``root/repo`` (no bytecode in it)."""
    repo = root / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    unpacked = root / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / f"{about.name}-{about.version}").rename(repo)
    unpacked.rmdir()
    use_git_identity()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n.hypothesis/\n")
    commit_all(repo, f"{about.name} {about.version} sdist")
    return repo


def test_files(about: Project, repo: Path, quick: bool) -> list[str]:
    """The suite's test files, relative to the repo, less the ones left out."""
    excluded = {**about.excluded, **about.quick_excluded} if quick else about.excluded
    files = sorted((repo / about.tests_dir).glob("test_*.py"))
    return [f"{about.tests_dir}/{f.name}" for f in files if f.name not in excluded]


def shell(script: str, *, cwd: Path, env: Mapping[str, str], log: Path, stdin: str = "") -> Span:
    """Run a bash script in exactly ``env`` (nothing added or dropped); its wall and CPU."""
    with log.open("wb") as out, measure() as span:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=dict(env),
            input=stdin.encode(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        note(f"warning: `{script[:60]}...` exited {done.returncode} (see {log})")
    return span


def serial_totals(project: SuiteProject, env: Mapping[str, str]) -> tuple[JUnitCounts, Span]:
    """One serial pytest run of every file: its JUnit case totals (read as the report reads
    them), and its wall."""
    xml = project.root / "reports" / "serial.xml"
    span = shell(
        project.pytest(*project.files, f"--junitxml={xml}"),
        cwd=project.repo,
        env=env,
        log=project.root / "logs" / "serial.log",
    )
    counts = junit.parse(xml).counts
    if counts is None:
        raise RuntimeError(f"the serial run wrote no readable JUnit file ({xml})")
    return counts, span


def fmt_counts(counts: JUnitCounts | None) -> str:
    if counts is None:
        return "none"
    return (
        f"{counts.passed} passed, {counts.failed} failed, {counts.errors} errors, "
        f"{counts.skipped} skipped"
    )


def plan_per_file(project: SuiteProject) -> Path:
    """One plan test per file, run without a shell: ``<python> -m pytest -q <file>``."""
    lines = []
    for f in project.files:
        argv = ", ".join(f'"{a}"' for a in (str(project.python), "-m", "pytest", "-q", f))
        lines.append(f'[[test]]\nid = "{Path(f).stem}"\nrun = [{argv}]\n')
    path = project.root / "plans" / "per_file.toml"
    path.write_text("\n".join(lines))
    return path


def plan_sharded(project: SuiteProject, shards: int) -> Path:
    """One plan test: pytest over every file, JUnit to ``$XML_OUTPUT_FILE``, ``shards = N``."""
    command = project.pytest(*project.files, '--junitxml="$XML_OUTPUT_FILE"')
    path = project.root / "plans" / "sharded.toml"
    path.write_text(
        f"[[test]]\nid = \"suite\"\nrun = '{command}'\njunit = true\nshards = {shards}\n"
    )
    return path
