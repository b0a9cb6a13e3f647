"""The README works as typed: its shell and Python blocks run, in order, in a copy of the repo.

A block's marker, an HTML comment on the line before its fence, says how:

- ``<!-- readme-test: skip: REASON -->``: not run (a daemon that serves until stopped, the
  whole suite); the reason is there for a reader too.
- ``<!-- readme-test: exit N: REASON -->``: runs, and exits N.
- ``<!-- readme-test: output: ... -->`` on a ``text`` block: a sample of the output of the
  block run last; every test id in it must be in that output.
- ``<!-- readme-test: daemon: DIR -->`` on a Python block: runs from DIR while a daemon
  serves it.

Shell blocks run one at a time in ``bash -e``, from the copy's top, as a reader
types them in one terminal: once a block has activated the venv, the later ones
run with it activated too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from parallel_orch import ParallelTestReport
from parallel_orch.report.model import AttemptResult, TestResult
from tests.e2e.cli import PROJECT_ROOT, cli_env
from tests.helpers import git

BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<marker>.*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)```", re.DOTALL
)
SHELLS = ("sh", "bash")
TEST_ID = re.compile(r"\b[\w.-]+(?:/[\w.-]+)*::[\w.:/@#~-]+")
BLOCK_SECONDS = 300


MARKER = re.compile(r"(?P<kind>skip|exit|output|daemon)(?: (?P<code>\d+))?: (?P<rest>.+)")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    body: str
    marker: str | None

    def _parsed(self) -> re.Match[str] | None:
        return MARKER.fullmatch(self.marker) if self.marker else None

    @property
    def kind(self) -> str:
        """``skip``, ``exit``, ``output``, ``daemon``; ``""`` unmarked; ``?`` malformed."""
        if self.marker is None:
            return ""
        found = self._parsed()
        return found["kind"] if found else "?"

    @property
    def exit_code(self) -> int:
        found = self._parsed()
        return int(found["code"]) if found and found["code"] else 0

    @property
    def rest(self) -> str:
        """The reason of a ``skip``, ``exit`` or ``output``; the directory of a ``daemon``."""
        found = self._parsed()
        return found["rest"].strip() if found else ""


def readme_blocks(text: str | None = None) -> list[Block]:
    text = (PROJECT_ROOT / "README.md").read_text() if text is None else text
    return [
        Block(text.count("\n", 0, m.start("body")), m["lang"], m["body"], m["marker"])
        for m in BLOCK.finditer(text)
    ]


def test_every_shell_block_runs_or_says_why_not() -> None:
    """Shell blocks carry no marker, ``exit N: reason`` or ``skip: reason``; nothing else."""
    shell = [b for b in readme_blocks() if b.lang in SHELLS]
    assert len(shell) >= 4
    for block in shell:
        assert block.kind in ("", "skip", "exit"), f"README.md:{block.line}: {block.marker}"
        if block.kind:
            assert len(block.rest) > 10, f"README.md:{block.line}: say why ({block.marker})"


def test_the_readme_names_every_report_key() -> None:
    """The list of the report's JSON keys has them all, and names nothing that is not one."""
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index("\n- ", text.index("whose keys are:"))  # the list that follows
    listed = set(re.findall(r"`([a-z_]+)`", text[start : text.index("\n\n", start)]))
    top = set(ParallelTestReport.model_fields)
    assert top - listed == set()
    assert listed - top - set(TestResult.model_fields) - set(AttemptResult.model_fields) == set()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """This checkout's files committed in a fresh repo, with the suite's venv lent to it.

    Its ``.venv`` links to each part of the running venv, with a stamp of its own newer
    than the lock and pyproject: ``make`` finds it up to date, and could never install
    into the venv it shares with the suite.
    """
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        pytest.skip("needs the suite to run from a venv (`make test` builds .venv)")
    dest = tmp_path / "clone"
    listed = git(PROJECT_ROOT, "ls-files", "-co", "--exclude-standard").splitlines()
    for name in listed:
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "a copy of the checkout")
    lent = dest / ".venv"
    lent.mkdir()
    for part in venv.iterdir():
        if part.name != ".installed":
            (lent / part.name).symlink_to(part)
    (lent / ".installed").touch()
    before = (lent / ".installed").stat().st_mtime - 60
    for name in ("requirements.lock", "pyproject.toml"):
        os.utime(dest / name, (before, before))
    return dest


def run_shell(block: Block, cwd: Path, activated: bool) -> subprocess.CompletedProcess[str]:
    prelude = ". .venv/bin/activate\n" if activated else ""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", prelude + block.body],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
        check=False,
    )


def run_python(block: Block, cwd: Path, copy: Path) -> subprocess.CompletedProcess[str]:
    """``python example.py`` with the copy's venv, as its activation would have it."""
    script = copy.parent / f"example-{block.line}.py"
    script.write_text(block.body)
    return subprocess.run(
        [str(copy / ".venv" / "bin" / "python"), str(script)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
        check=False,
    )


@contextmanager
def daemon_serving(repo: Path, copy: Path) -> Iterator[None]:
    """``parallel-orch daemon`` for ``repo`` at its default socket, from its printed path on."""
    argv = [str(copy / ".venv" / "bin" / "parallel-orch"), "daemon", "-j", "2"]
    with subprocess.Popen(
        argv, cwd=repo, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip().endswith(".sock")  # listening
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def check(block: Block, result: subprocess.CompletedProcess[str]) -> str:
    """The block's output, once its exit code is the one its marker expects."""
    expected = block.exit_code
    assert result.returncode == expected, (
        f"README.md:{block.line} ({block.lang}) exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def check_sample(block: Block, printed: str) -> None:
    """Every test id in a sample output is one the block before it printed."""
    shown = set(TEST_ID.findall(block.body))
    missing = shown - set(TEST_ID.findall(printed))
    assert shown and not missing, (
        f"README.md:{block.line}: {sorted(missing)} not in what the block before printed:\n"
        f"{printed}"
    )


@pytest.mark.slow
def test_the_readme_runs_as_written_in_a_copy_of_the_repo(copy: Path) -> None:
    """Each shell and Python block, in order; sample outputs name what the commands print."""
    activated = False
    printed: list[str] = []  # by each block that ran, in order
    python: list[str] = []
    for block in readme_blocks():
        if block.kind == "skip":
            continue
        if block.lang in SHELLS:
            printed.append(check(block, run_shell(block, copy, activated)))
            activated = activated or ".venv/bin/activate" in block.body
        elif block.lang == "python":
            where = copy / block.rest if block.kind == "daemon" else copy
            with daemon_serving(where, copy) if block.kind == "daemon" else nullcontext():
                printed.append(check(block, run_python(block, where, copy)))
            python.append(printed[-1])
        elif block.kind == "output":
            assert printed, f"README.md:{block.line}: a sample output before anything ran"
            check_sample(block, printed[-1])
    assert len(printed) >= 5 and len(python) == 4
    assert "complete 3 / 3" in python[0]  # run_tests of the demo's basics plan
    assert "session.finished" in python[1]  # the events example saw its session end
    assert python[2].splitlines()[-1] == "complete"  # the daemon client's report
    assert python[3].startswith("complete on ") and "tcp://" in python[3]  # the fleet's
