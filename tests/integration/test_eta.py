"""A running session's ETA, from the recorded durations of its tests still to run."""

from __future__ import annotations

from pathlib import Path

from parallel_orch import TestRequest
from parallel_orch.eta import SessionEta
from parallel_orch.store import open_store
from tests.helpers import MakeConfig, make_fifo, orchestrator, read_fifo

SLEEP_SECONDS = 1.0  # what each test took in the first session: the history


async def test_eta_is_the_expected_work_left_over_the_workers(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """a running, b and c (no history: the median of a and b) queued on one worker: the ETA
    is what is left of a plus b plus c; None once the session has ended."""
    config = make_config(num_workers=1)
    fifo = make_fifo(tmp_path / "started")
    async with orchestrator(config) as orch:
        await orch.run_tests(
            [TestRequest(id=i, command=f"sleep {SLEEP_SECONDS}") for i in ("a", "b")]
        )
        held = [
            TestRequest(id="a", command=f"echo go > {fifo}; exec sleep 60", priority=1),
            TestRequest(id="b", command="true"),
            TestRequest(id="c", command="true"),
        ]
        history = await orch.store.history(["a", "b", "c"])
        assert history.keys() == {"a", "b"}
        median = (history["a"] + history["b"]) / 2  # what c, never run, is expected to take
        session_id = await orch.create_session(held)
        await read_fifo(fifo)  # a is running; b and c wait for the one worker
        eta = SessionEta(orch.store)
        left = await eta.seconds_left(session_id)
        assert left is not None
        assert history["b"] + median - 0.1 <= left <= history["a"] + history["b"] + median + 0.1
        again = await eta.seconds_left(session_id)
        assert again is not None and again <= left  # time runs on for the running one
        await orch.cancel_session(session_id)
        await orch.wait_for_session(session_id)
        assert await eta.seconds_left(session_id) is None


async def test_without_any_history_there_is_no_eta_until_a_test_has_finished(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """A first session has no ETA; once one of its tests ends, the others are expected alike."""
    config = make_config(num_workers=1)
    fifo = make_fifo(tmp_path / "started")
    async with orchestrator(config) as orch:
        requests = [
            TestRequest(id="first", command=f"echo go > {fifo}; sleep {SLEEP_SECONDS}", priority=2),
            TestRequest(id="second", command=f"echo go > {fifo}; exec sleep 60", priority=1),
        ]
        session_id = await orch.create_session(requests)
        eta = SessionEta(orch.store)
        await read_fifo(fifo)
        assert await eta.seconds_left(session_id) is None
        await read_fifo(fifo)  # first has ended; second runs, expected to take as long
        left = await eta.seconds_left(session_id)
        first = (await orch.store.history(["first"]))["first"]
        assert left is not None and 0 <= left <= first + 0.1
        await orch.cancel_session(session_id)
        await orch.wait_for_session(session_id)
    async with open_store(config.resolved_state_dir) as store:
        assert await SessionEta(store).seconds_left(session_id) is None
