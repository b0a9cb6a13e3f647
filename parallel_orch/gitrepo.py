"""Facts about the repository that git answers: its top level, and what refs name.

Every value a user gives (a path, a ref) reaches git after ``--end-of-options``
or as a path, never where git would read it as an option.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from parallel_orch.exceptions import RefError, RepoError

#: git's messages in English whatever the user's locale: they are parsed and shown as is.
C_LOCALE = {"LC_ALL": "C", "LANGUAGE": "C"}

SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise RepoError(f"cannot run git: {exc}; install git") from exc


class GitFailed(Exception):
    """A git command exited non-zero; ``stderr`` is what it said."""

    def __init__(self, argv: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {code}: {git_error(stderr)}")
        self.stderr = stderr


def run_git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd`` (blocks); its output, less the last newline.

    A plain ``subprocess.run``: GitPython costs ~70 ms to import and runs
    ``git version`` twice before its first command, on ``run``'s way to its
    first attempt.

    :raises GitFailed: if git exits non-zero.
    :raises OSError: if ``cwd`` is gone or git cannot be run.
    """
    argv = ["git", *args]
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **C_LOCALE}, check=False
    )
    if done.returncode != 0:
        raise GitFailed(argv, done.returncode, done.stderr)
    return done.stdout.removesuffix("\n")


def git_error(stderr: str) -> str:
    """The useful line of git's complaint."""
    return stderr.strip().removeprefix("stderr: ").strip().strip("'").strip()


#: Top levels found in this process, by the absolute folder asked about: a run asks
#: three times before its first test (config, its sources, the orchestrator), each a git
#: process. Only answers are kept: a folder not in a repo is asked again.
_toplevels: dict[Path, Path] = {}


def toplevel(start: Path) -> Path:
    """The git top level that contains ``start``.

    :raises RepoError: if ``start`` is not inside a git work tree.
    """
    key = start.absolute()
    found = _toplevels.get(key)
    if found is not None:
        return found
    out = _git(start, "rev-parse", "--show-toplevel")
    if out.returncode != 0:
        raise RepoError(
            f"{start} is not inside a git repository; run from a git checkout or pass --repo"
        )
    found = _toplevels[key] = Path(out.stdout.strip())
    return found


def check_repo(repo: Path) -> Path:
    """The repo's top level, once it is known to have a commit.

    :raises RepoError: if ``repo`` is not a git repository or has no commits.
    """
    try:
        top = toplevel(repo) if repo.is_dir() else None
    except RepoError:
        top = None
    if top is None:
        raise RepoError(f"{repo} is not a git repository; run inside one or pass --repo PATH")
    if _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").returncode != 0:
        raise RepoError(f"{top} has no commits yet; commit something first")
    return top


def resolve_refs(repo: Path, refs: Sequence[str]) -> dict[str, str | RefError]:
    """Resolve each distinct ref to a commit SHA (or the reason it does not), in one git call."""
    unique = list(dict.fromkeys(refs))
    if not unique:
        return {}
    out = _git(repo, "rev-parse", "--end-of-options", *[f"{r}^{{commit}}" for r in unique])
    # some gits echo the --end-of-options marker back: keep only what rev-parse resolved
    shas = [s for s in out.stdout.split() if s != "--end-of-options"] if out.returncode == 0 else []
    if len(shas) == len(unique) and all(SHA.fullmatch(s) for s in shas):
        return dict(zip(unique, shas, strict=True))
    resolved: dict[str, str | RefError] = {}
    for ref in unique:  # at least one is bad: resolve one by one for exact messages
        one = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
        sha = one.stdout.strip()
        if one.returncode == 0 and SHA.fullmatch(sha):
            resolved[ref] = sha
        else:
            why = git_error(one.stderr) or f"exit code {one.returncode}"
            if ref.startswith("-"):
                why = "a ref never starts with '-'"
            resolved[ref] = RefError(f"ref {ref!r} does not resolve to a commit: {why}")
    return resolved


#: Refs asked of ``git cat-file``: one line each, nothing it could read another way. Others
#: (and any it does not answer with a commit) go to ``rev-parse`` for its exact message.
_BATCHABLE = re.compile(r"[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]{0,199}")
_BATCH_LINES = 100  # refs written before their answers are read: far below a pipe's buffer
_ANSWER_SECONDS = 10.0  # a cat-file this slow is started again (by resolve(), in a thread)
#: Refs :meth:`RefResolver.resolve_soon` asks of the running ``cat-file``: a name or an
#: object id, nothing that makes git search (``:/text``), walk (``~``, ``^``) or read
#: the reflog (``@{...}``).
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")


class RefResolver:
    """:func:`resolve_refs` through one long-running ``git cat-file --batch-check``.

    A ``rev-parse`` per batch of submits costs a process start (about 2 ms,
    more under load); ``cat-file`` answers a ref in about 0.1 ms and reads
    refs and objects afresh for each line, so it sees commits and refs made
    since it started. Blocking: call it in a thread, one at a time; close it
    when done. A ref it does not answer with a commit, or any failure of the
    process, falls back to :func:`resolve_refs` (a failed process is started
    again next time).
    """

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._stale = False  # resolve_soon failed mid-answer: start the process again

    async def resolve_soon(
        self, refs: Sequence[str], *, meanwhile: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, str | RefError] | None:
        """:meth:`resolve` when it is quick: plain names (see :data:`_PLAIN`) that all name
        commits, asked of a ``cat-file`` that runs and that no thread is using. The loop
        serves others while ``cat-file`` thinks (on a busy machine it waits for a core,
        and the loop would wait with it); this costs no hop to a thread. Else ``None``:
        call :meth:`resolve` in a thread. ``meanwhile`` is awaited once the question is
        asked, before its answer is read (only when ``None`` is not returned at once); what
        it raises is raised, and the unread answer is dropped with the process."""
        unique = list(dict.fromkeys(refs))
        if len(unique) > _BATCH_LINES or not all(_PLAIN.fullmatch(r) for r in unique):
            return None
        if not unique:  # nothing to ask: cat-file would never answer
            if meanwhile is not None:
                await meanwhile()
            return {}
        proc = self._proc
        if proc is None or self._stale or not self._lock.acquire(blocking=False):
            return None
        try:  # held across the wait: a thread's resolve() waits; resolve_soon() goes by
            if not self._ask_soon(proc, unique):
                return None
            if meanwhile is not None:
                try:  # its own errors are its caller's, whatever they are
                    await meanwhile()
                except BaseException:  # the answer is left unread: start again next time
                    self._stale = True
                    raise
            found = await self._answer_soon(proc, unique)
        finally:
            self._lock.release()
        if found is None or len(found) < len(unique):  # not a commit: rev-parse says why
            return None
        return dict(found)

    def _ask_soon(self, proc: subprocess.Popen[str], refs: Sequence[str]) -> bool:
        try:
            self._write(proc, refs)
        except (OSError, ValueError):
            self._stale = True  # closing waits for the process: resolve() does it
            return False
        return True

    async def _answer_soon(
        self, proc: subprocess.Popen[str], refs: Sequence[str]
    ) -> dict[str, str] | None:
        """``cat-file``'s answer, awaited without blocking the loop; ``None`` (and the process
        marked stale) when it fails or takes too long."""
        import anyio  # here: a client command imports this module and starts no event loop

        assert proc.stdout is not None
        try:
            with anyio.move_on_after(_ANSWER_SECONDS) as waiting:
                try:
                    await anyio.wait_readable(proc.stdout.fileno())
                except BaseException:  # cancelled mid-answer: its answer would come next time
                    self._stale = True
                    raise
            if waiting.cancelled_caught:
                raise OSError(f"git cat-file did not answer in {_ANSWER_SECONDS:g} s")
            return self._read(proc, refs)
        except (OSError, ValueError, RepoError):
            self._stale = True  # closing waits for the process: resolve() does it
            return None

    def resolve(self, refs: Sequence[str]) -> dict[str, str | RefError]:
        unique = list(dict.fromkeys(refs))
        batchable = [r for r in unique if _BATCHABLE.fullmatch(r)]
        found: dict[str, str | RefError] = {}
        with self._lock:
            if self._stale:
                self._close()
                self._stale = False
            for start in range(0, len(batchable), _BATCH_LINES):
                try:
                    found.update(self._ask(batchable[start : start + _BATCH_LINES]))
                except (OSError, ValueError, RepoError):  # gone, or out of step: start again
                    self._close()
                    break
        rest = [r for r in unique if r not in found]
        if rest:
            found.update(resolve_refs(self.repo, rest))
        return {r: found[r] for r in unique}

    def _ask(self, refs: Sequence[str]) -> dict[str, str]:
        """The refs among ``refs`` that name a commit, with its name."""
        proc = self._proc or self._start()
        self._write(proc, refs)
        return self._read(proc, refs)

    @staticmethod
    def _write(proc: subprocess.Popen[str], refs: Sequence[str]) -> None:
        assert proc.stdin is not None
        proc.stdin.write("".join(f"{ref}^{{commit}}\n" for ref in refs))
        proc.stdin.flush()

    @staticmethod
    def _read(proc: subprocess.Popen[str], refs: Sequence[str]) -> dict[str, str]:
        """``cat-file``'s answers to ``refs``, asked in this order: those that name a commit."""
        assert proc.stdout is not None
        out = {}
        for ref in refs:
            line = proc.stdout.readline()
            if not line:
                raise OSError("git cat-file ended")
            name, _, kind = line.rstrip("\n").partition(" ")
            if kind == "commit" and SHA.fullmatch(name):
                out[ref] = name
            elif not line.startswith(f"{ref}^{{commit}} "):  # "<ref>^{commit} missing"
                raise ValueError(f"git cat-file answered {line!r} for {ref!r}")
        return out

    def _start(self) -> subprocess.Popen[str]:
        try:
            self._proc = subprocess.Popen(
                [
                    "git",
                    "-C",
                    str(self.repo),
                    "cat-file",
                    "--batch-check=%(objectname) %(objecttype)",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, **C_LOCALE},
            )
        except OSError as exc:
            raise RepoError(f"cannot run git: {exc}; install git") from exc
        return self._proc

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):  # EOF on its stdin: cat-file exits
            with contextlib.suppress(OSError):  # a broken pipe, when it died
                if pipe is not None:
                    pipe.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """End the ``cat-file`` process, if one runs (blocks)."""
        with self._lock:
            self._close()


def exclude_from_status(repo: Path, path: Path) -> None:
    """Keep ``path`` out of `git status` (via ``info/exclude``) when it lives inside ``repo``."""
    try:
        rel = path.relative_to(repo)
    except ValueError:
        return
    out = _git(repo, "rev-parse", "--git-path", "info/exclude")
    if out.returncode != 0:
        raise RepoError(f"cannot find {repo}'s info/exclude: {git_error(out.stderr)}")
    exclude = Path(out.stdout.strip())
    if not exclude.is_absolute():
        exclude = repo / exclude
    line = f"/{rel.as_posix()}/"
    text = exclude.read_text() if exclude.exists() else ""
    if line not in text.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as fh:
            fh.write(("" if text.endswith("\n") or not text else "\n") + line + "\n")
