"""What a submit needs looked up before its commit: the commits its refs name, and the
durations its tests took before (which order the queue).

Refs are asked of one long-running ``git cat-file`` (see
:class:`~parallel_orch.gitrepo.RefResolver`): from the event loop when every
ref is a plain name, else in a thread. Concurrent submits share one lookup
and one history read (see :mod:`~parallel_orch.coalesce`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from parallel_orch import gitrepo
from parallel_orch.coalesce import Coalescer
from parallel_orch.exceptions import RefError
from parallel_orch.models import TestRequest
from parallel_orch.store import NewExecution, Store

#: A lookup waits until this many turns of the loop pass with no other submit joining it: a
#: burst's submits, read from their sockets in one wake-up, reach it a few turns apart.
LOOKUP_QUIET_TURNS = 3


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What a session needs looked up before its commit: its refs and its test ids."""

    refs: tuple[str, ...]
    ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Known:
    """What was looked up: each ref's commit (or why it has none), each test's history."""

    refs: dict[str, str | RefError]
    history: dict[str, float]

    def executions(self, requests: Sequence[TestRequest]) -> list[NewExecution]:
        """Each request at the commit its ref resolved to, or with why it did not."""
        out = []
        for request in requests:
            sha = self.refs[request.ref]
            if isinstance(sha, RefError):
                out.append(NewExecution(request=request, sha=None, error=sha.message))
            else:
                out.append(NewExecution(request=request, sha=sha))
        return out


class Lookup:
    """Refs and histories for the submits of one repo and store; :meth:`aclose` when done."""

    def __init__(self, repo: Path, store: Store) -> None:
        self.store = store
        self.resolver = gitrepo.RefResolver(repo)
        self._refs: Coalescer[tuple[str, ...], dict[str, str | RefError]] = Coalescer(
            self._resolve_together
        )
        self.known: Coalescer[_Wanted, Known] = Coalescer(
            self._look_up_together, quiet_turns=LOOKUP_QUIET_TURNS
        )

    async def aclose(self) -> None:
        """End the long-running git process that resolves refs."""
        await anyio.to_thread.run_sync(self.resolver.close)

    async def refs_and_history(self, requests: Sequence[TestRequest]) -> Known:
        """The refs of ``requests`` and their tests' history, looked up with the concurrent
        submits' (see :meth:`_look_up_together`)."""
        refs = tuple(dict.fromkeys(r.ref for r in requests))
        return await self.known.submit(_Wanted(refs, frozenset(r.id for r in requests)))

    async def executions(
        self, requests: Sequence[TestRequest]
    ) -> tuple[list[NewExecution], dict[str, float]]:
        """:meth:`refs_and_history`, as ``requests`` at their commits, and the history."""
        known = await self.refs_and_history(requests)
        return known.executions(requests), known.history

    async def refs(self, requests: Sequence[TestRequest]) -> list[NewExecution]:
        """``requests`` at the commits their refs name (no history), with concurrent callers'."""
        resolved = await self._refs.submit(tuple(dict.fromkeys(r.ref for r in requests)))
        return Known(resolved, {}).executions(requests)

    async def _resolve_together(
        self, batches: Sequence[tuple[str, ...]]
    ) -> list[dict[str, str | RefError]]:
        """Concurrent submits' refs in one question to ``git cat-file``; each gets its own back."""
        every = list(dict.fromkeys(ref for refs in batches for ref in refs))
        resolved = await anyio.to_thread.run_sync(self.resolver.resolve, every)
        return [{ref: resolved[ref] for ref in refs} for refs in batches]

    async def _look_up_together(self, batches: Sequence[_Wanted]) -> list[Known]:
        """Concurrent submits' refs and histories: one ref lookup and one read for all (the
        leader waits while submits keep joining, so those that arrived together share it); on
        the loop when both are quick, else side by side in threads (the submits that arrive
        meanwhile share the next)."""
        refs = tuple(dict.fromkeys(ref for wanted in batches for ref in wanted.refs))
        ids = {test_id for wanted in batches for test_id in wanted.ids}
        history: dict[str, float] | None = None

        async def read_history() -> None:
            nonlocal history
            history = await self.store.history(ids)  # on the loop when small

        # None: not at once. The history is read while cat-file thinks.
        at_once = await self.resolver.resolve_soon(refs, meanwhile=read_history)
        if at_once is not None:
            resolved = at_once
        else:  # in threads, side by side
            async with anyio.create_task_group() as tg:
                if history is None:  # not read while a quick lookup was tried
                    tg.start_soon(read_history)
                resolved = (await self._resolve_together([refs]))[0]
        history = history or {}
        return [
            Known(
                {ref: resolved[ref] for ref in wanted.refs},
                {i: history[i] for i in wanted.ids if i in history},
            )
            for wanted in batches
        ]
