"""Where the daemon's socket and lock live, and binding the socket safely.

The default socket is ``<state dir>/run/daemon.sock``. A Unix socket path
must fit ``sun_path`` (108 bytes with its NUL), so for a repo in a deep
directory the socket moves to a short runtime directory:
``$XDG_RUNTIME_DIR/parallel-orch/<hash>.sock``, else
``/tmp/parallel-orch-<uid>/<hash>.sock``, the hash naming the state dir.
Socket directories we create are 0700; the socket itself is 0600.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parallel_orch.exceptions import OrchError

if TYPE_CHECKING:
    from parallel_orch.config import ParallelTestConfig

log = logging.getLogger(__name__)

SUN_PATH_MAX_BYTES = 107  # sizeof(sun_path) on Linux is 108, one for the NUL
SOCKET_NAME = "daemon.sock"
RUN_DIR = "run"
LOCK_NAME = "daemon.lock"
LISTEN_BACKLOG = 1024
STALE_PROBE_SECONDS = 1.0
GRACE_SECONDS = 30.0  # default time running attempts get to finish on a graceful stop
IDLE_TIMEOUT_SECONDS = 60.0  # a connection with nothing to answer and no complete line


class SocketPathError(OrchError):
    """The daemon's socket cannot be used; pass --socket with a short path in a private dir."""


def fits(path: Path) -> bool:
    return len(os.fsencode(str(path))) <= SUN_PATH_MAX_BYTES


def default_socket_path(state_dir: Path) -> Path:
    """The socket for a state dir: inside it when the path fits, else in a short runtime dir."""
    preferred = state_dir / RUN_DIR / SOCKET_NAME
    if fits(preferred):
        return preferred
    name = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16] + ".sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute() and Path(runtime).is_dir():
        candidate = Path(runtime) / "parallel-orch" / name
        if fits(candidate):
            return candidate
    return Path("/tmp") / f"parallel-orch-{os.getuid()}" / name


def socket_path_for(config: ParallelTestConfig) -> Path:
    """The configured socket (``socket_path`` / ``PARALLEL_ORCH_SOCKET_PATH``), else the default."""
    if config.socket_path is not None:
        path = config.socket_path.expanduser()
        return path if path.is_absolute() else config.repo / path  # relative: to the repo
    return default_socket_path(config.resolved_state_dir)


def socket_path_light(
    repo: Path | None = None, state_dir: Path | None = None, socket: Path | None = None
) -> Path:
    """:func:`socket_path_for` the configuration would give, without loading it.

    The daemon's client commands must start at once, and the configuration
    (pydantic-settings) costs a fifth of a second to import. The same sources
    in the same order: flags, ``PARALLEL_ORCH_*`` (any case), then
    ``[tool.parallel-orch]`` in the repo's ``pyproject.toml``.

    :raises RepoError: if there is no repo here (as the configuration would).
    """
    from parallel_orch.gitrepo import toplevel
    from parallel_orch.pyproject import STATE_DIR_NAME, pyproject_table

    if socket is not None:
        return socket
    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("PARALLEL_ORCH_")}
    given_repo = repo or (
        Path(env["PARALLEL_ORCH_REPO"]) if env.get("PARALLEL_ORCH_REPO") else None
    )
    top = toplevel(given_repo if given_repo is not None else Path.cwd())
    table: dict[str, Any] = pyproject_table(top)
    root = given_repo.expanduser().resolve() if given_repo is not None else top

    def setting(name: str) -> Path | None:
        value = env.get(f"PARALLEL_ORCH_{name.upper()}") or table.get(name)
        return Path(value) if value else None

    configured = setting("socket_path")
    if configured is not None:
        configured = configured.expanduser()
        return configured if configured.is_absolute() else root / configured
    state = state_dir or setting("state_dir") or root / STATE_DIR_NAME
    return default_socket_path(state.expanduser().resolve())


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_NAME


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory 0700; refuse one that another user owns.

    :raises SocketPathError: if the path is too long or its directory is not ours.
    """
    if not fits(path):
        raise SocketPathError(
            f"socket path {path} is {len(os.fsencode(str(path)))} bytes; Unix sockets allow "
            f"{SUN_PATH_MAX_BYTES}: pass a shorter --socket"
        )
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise SocketPathError(
            f"cannot create socket directory {directory}: {exc.strerror}"
        ) from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SocketPathError(f"socket directory {directory} is not a plain directory; refusing it")
    if info.st_uid != os.getuid():
        raise SocketPathError(
            f"socket directory {directory} belongs to uid {info.st_uid}, not to you; "
            "pass --socket in a directory of your own"
        )
    if info.st_mode & 0o077:
        log.warning(
            "socket directory %s is accessible to other users (mode %o)",
            directory,
            stat.S_IMODE(info.st_mode),
        )


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file whose daemon is gone.

    :raises SocketPathError: if a daemon still answers there, or the path is not a socket.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(STALE_PROBE_SECONDS)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.warning("removing stale socket %s (no daemon answers there)", path)
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        if exc.errno != errno.EAGAIN:
            raise SocketPathError(f"cannot probe socket {path}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise SocketPathError(
        f"another daemon is listening on {path}; stop it or pass another --socket"
    )


@dataclass(frozen=True)
class BoundSocket:
    """A listening socket and the file it is bound to."""

    sock: socket.socket
    path: Path
    inode: int

    def unlink(self) -> None:
        """Remove the socket file if it is still ours (idempotent): new clients see no daemon."""
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self.inode:
                self.path.unlink()


@contextlib.contextmanager
def bound_socket(path: Path) -> Iterator[BoundSocket]:
    """A listening Unix socket at ``path`` (mode 0600), removed again on exit.

    Binds under a 0177 umask so the socket is never reachable by others, not
    even between ``bind`` and ``chmod``; call this before any thread starts.
    """
    prepare_socket_dir(path)
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        bound = BoundSocket(sock, path, os.stat(path).st_ino)
    except OSError as exc:
        sock.close()
        raise SocketPathError(f"cannot listen on {path}: {exc.strerror}") from exc
    try:
        yield bound
    finally:
        sock.close()
        bound.unlink()
