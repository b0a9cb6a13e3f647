"""The submit lane: plain submits taken from the socket's own callback and admitted together.

A submit through a connection's tasks costs a turn of its reader, one of its
answering task, one after the lookup and one after the answer: four
wake-ups of a cold path per submit, most of a burst's time. Here a
connection whose client is waiting for nothing else hands a line that is a
plain submit (inline requests, none sharded, no idempotency key) to the
lane from the loop's readable callback; the lane's task takes everything
handed to it since its last turn as one batch and admits it in a task of
its own (one lookup, one synced write; a session that cannot be stored is
undone alone), and each answer is written from the commit's own step. Everything
else, and every line the lane does not take, goes the usual way, in order:
the connection answers nothing more until the lane's answer is out.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup, TaskStatus

from parallel_orch.admission import PlainSession
from parallel_orch.daemon import between, wire
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.protocol import ErrorCode, Method, RpcError, rpc_error
from parallel_orch.daemon.service import DaemonService
from parallel_orch.exceptions import OrchError
from parallel_orch.models import with_default_ref

log = logging.getLogger(__name__)

SUBMIT = b'"submit"'


class LaneAnswer:
    """The answer to one submit the lane took, and its connection going on after it."""

    def __init__(
        self,
        sock: socket.socket,
        send: Callable[[bytes], Awaitable[None]],
        tg: TaskGroup,
        done: Callable[[], None],
    ) -> None:
        """:param send: writes what the socket did not take at once, in a task of ``tg``;
        :param done: the connection's next line may be answered (after the answer)."""
        self._sock = sock
        self._send = send
        self._tg = tg
        self._done = done
        self._answered = False
        self._unsent = b""

    @property
    def answered(self) -> bool:
        return self._answered

    def send(self, line: bytes) -> None:
        """Write ``line`` now, as far as the socket takes it; only the first answer counts."""
        if self._answered:
            return
        self._answered = True
        try:
            sent = wire.send_now(self._sock, line)
        except OSError:  # gone: the connection's reader finds out
            return
        self._unsent = line[sent:]
        if sent:  # it woke its client
            between.yield_soon()

    def done(self) -> None:
        """The answer is out (or on its way): the connection goes on once it is."""
        if self._unsent:
            try:
                self._tg.start_soon(self._send_rest)
                return
            except RuntimeError:  # the connection has ended
                pass
        self._done()

    async def _send_rest(self) -> None:
        try:
            await self._send(self._unsent)
        except Exception:  # half an answer went out: the connection cannot go on
            log.debug("the rest of a submit's answer was not sent", exc_info=True)
            self._tg.cancel_scope.cancel()
        finally:
            self._done()


@dataclass(slots=True)
class _Taken:
    request_id: int | str
    params: p.SubmitParams
    answer: LaneAnswer


class SubmitLane:
    """See the module docstring."""

    def __init__(self, service: DaemonService) -> None:
        self.service = service
        self._taken: list[_Taken] = []
        self._wake = anyio.Event()
        self.taken = 0  # submits taken so far, for tests and figures

    def offer(self, line: bytes, answer: LaneAnswer) -> bool:
        """Take ``line`` if it is a plain submit the daemon accepts now; else ``False`` (it
        goes the usual way, which also says what is wrong with it)."""
        if SUBMIT not in line or not self.service.accepting:
            return False
        try:
            request = p.parse_request(line)
            if request.method != Method.SUBMIT.value:
                return False
            params = p.parse_params(Method.SUBMIT, request.params)
            assert isinstance(params, p.SubmitParams)
            if params.options is not None:  # stored as JSON with the batch: it must be storable
                params.options.model_dump_json()
        except Exception:  # bad JSON, params or options: the usual way says what is wrong
            return False
        requests = params.requests
        if request.id is None or params.idempotency_key is not None or not requests:
            return False
        if any(r.shards != 1 for r in requests) or len({r.id for r in requests}) < len(requests):
            return False
        self._taken.append(_Taken(request.id, params, answer))
        self.taken += 1
        self.service.submitting(1)
        self._wake.set()
        return True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Admit what was taken, a batch at a time, each batch in a task of its own."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                batch, self._taken = self._taken, []
                if batch:
                    tg.start_soon(self._admit, batch)

    async def _admit(self, batch: list[_Taken]) -> None:
        """One batch: admitted together, each answered from the commit's step (or told why
        not, alone when the fault is its own); nothing is raised into the server."""
        outcomes: list[str | Exception | None] = [None] * len(batch)
        try:
            sessions = [_session(taken) for taken in batch]
            outcomes = [*await self.service.orch.create_sessions(sessions)]
        except Exception as exc:
            outcomes = [exc] * len(batch)
        finally:
            self.service.submitting(-len(batch))
            for taken, outcome in zip(batch, outcomes, strict=True):
                _answered(taken, outcome)


def _session(taken: _Taken) -> PlainSession:
    """The session a taken submit asks for, answered through its connection once running."""

    def acked(session_id: str, total: int) -> None:
        result = p.SubmitResult(session_id=session_id, total=total)
        taken.answer.send(p.result_line(taken.request_id, result))

    params = taken.params
    requests = with_default_ref(params.requests or (), params.ref)
    return PlainSession(requests, params.priority, params.options, acked)


def _answered(taken: _Taken, outcome: str | Exception | None) -> None:
    """The end of a taken submit: its error answered (an admitted one was answered from
    the commit's step), its connection let go on. ``None``: cancelled mid-way (the daemon
    stopping), when whether it was committed is not known here: no answer, as a submit the
    usual way cancelled then gets none."""
    if isinstance(outcome, str):
        count = len(taken.params.requests or ())
        log.info("session %s: %d tests submitted", outcome, count)
    elif outcome is not None and not taken.answer.answered:  # (answered: committed, then a bug)
        taken.answer.send(p.error_line(taken.request_id, _error(outcome)))
    taken.answer.done()


def _error(exc: Exception) -> RpcError:
    """Why a submit was not admitted, as the usual way would answer it."""
    if isinstance(exc, OrchError):
        return rpc_error(exc)
    log.error("submit failed", exc_info=exc)
    return RpcError(ErrorCode.INTERNAL_ERROR, f"internal error: {exc!r}; see the daemon's log")
