"""The webhook through the Python API, against a real HTTP server on the loopback."""

from __future__ import annotations

import re
import time

import anyio
import pytest

from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, ParallelTestReport
from parallel_orch.cli.app import make_config as cli_config
from parallel_orch.exceptions import ConfigError
from parallel_orch.models import TestRequest
from parallel_orch.notify import NotifyPolicy
from parallel_orch.report.options import ReportOptions
from parallel_orch.retry import RetryPolicy
from parallel_orch.store import NewExecution, open_store
from tests.helpers import GitRepo, MakeConfig
from tests.integration.test_recovery import dead_owner_token
from tests.webhook import dead_url, webhook_server

REQUESTS = [TestRequest(id="a", command="true"), TestRequest(id="b", command="true")]


def orchestrator(config: ParallelTestConfig, policy: NotifyPolicy) -> ParallelTestOrchestrator:
    return ParallelTestOrchestrator(
        config, retry_policy=RetryPolicy.zero_wait(), notify_policy=policy
    )


async def notify_status(config: ParallelTestConfig, session_id: str) -> str | None:
    async with open_store(config.resolved_state_dir) as store:
        return (await store.get_session(session_id)).notify_status


async def test_the_report_is_posted_once_as_json(make_config: MakeConfig) -> None:
    """A session's end POSTs its stored report, as application/json, once."""
    with webhook_server() as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, NotifyPolicy.zero_wait()) as orch:
            report = await orch.run_tests(REQUESTS)
        [got] = server.wait_for(1)
    assert got.path == "/hooks/secret-token"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-parallel-orch-session"] == report.session_id
    assert ParallelTestReport.model_validate(got.json()) == report
    assert report.status == "complete"
    assert await notify_status(config, report.session_id) == "delivered: HTTP 200 after 1 try"
    assert len(server.received) == 1


async def test_two_503s_then_200_take_three_tries(make_config: MakeConfig) -> None:
    """A server failing twice with 503 gets the same report three times, the last one taken."""
    with webhook_server((503, 503, 200)) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, NotifyPolicy.zero_wait()) as orch:
            report = await orch.run_tests(REQUESTS)
        tries = server.wait_for(3)
    assert len(tries) == 3
    assert len({t.body for t in tries}) == 1
    assert await notify_status(config, report.session_id) == "delivered: HTTP 200 after 3 tries"


async def test_backoff_grows_between_tries(make_config: MakeConfig) -> None:
    """With 0.2 s doubling, three 503s and a 200 take at least 0.2 + 0.4 + 0.8 s."""
    policy = NotifyPolicy(initial_seconds=0.2, max_wait_seconds=5.0)
    with webhook_server((503, 503, 503, 200)) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, policy) as orch:
            await orch.run_tests(REQUESTS)
            started = time.monotonic()
        took = time.monotonic() - started
        assert len(server.wait_for(4)) == 4
    assert 1.4 <= took < 5.0


@pytest.mark.parametrize(("answer", "tries"), [(404, 1), (400, 1), (429, 3), (408, 3)])
async def test_a_client_error_is_final_but_a_rate_limit_is_retried(
    make_config: MakeConfig, answer: int, tries: int
) -> None:
    """404 and 400 are not retried; 429 and 408 are, up to the policy's tries."""
    with webhook_server((answer,)) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, NotifyPolicy.zero_wait(max_tries=3)) as orch:
            report = await orch.run_tests(REQUESTS)
    assert len(server.received) == tries
    status = await notify_status(config, report.session_id)
    expected = f"HTTP {answer} (not retried)" if tries == 1 else f"HTTP {answer} after 3 tries"
    assert status == f"failed: {expected}"


async def test_a_dead_port_is_recorded_failed_and_the_session_is_unharmed(
    make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listening: every try refused, recorded and logged; the session is complete."""
    url = dead_url()
    config = make_config(notify_url=url)
    async with orchestrator(config, NotifyPolicy.zero_wait(max_tries=4)) as orch:
        report = await orch.run_tests(REQUESTS)
    assert report.status == "complete"
    status = await notify_status(config, report.session_id)
    assert status == "failed: Connection refused after 4 tries"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    port = url.split(":")[2].split("/")[0]
    assert f"webhook http://127.0.0.1:{port} failed: Connection refused after 4 tries" in "\n".join(
        warnings
    )
    assert all("/hook" not in w for w in warnings)  # a webhook's path can be its secret


async def test_a_slow_webhook_delays_no_session_end(make_config: MakeConfig) -> None:
    """While one delivery hangs, its session is recorded ended and the next session runs
    and ends; the delivery lands once the server answers."""
    with webhook_server(hold=True) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, NotifyPolicy.zero_wait()) as orch:
            first = await orch.run_tests(REQUESTS)
            server.wait_for(1)  # the first delivery is in the server's hands
            second = await orch.run_tests(REQUESTS)
            assert (first.status, second.status) == ("complete", "complete")
            stored = await orch.store.get_session(first.session_id)
            assert stored.status == "complete" and stored.report_json
            assert stored.notify_status == "pending"
            server.release()
        assert len(server.wait_for(2)) == 2
    for session in (first, second):
        assert await notify_status(config, session.session_id) == "delivered: HTTP 200 after 1 try"


async def test_a_server_that_never_answers_is_given_up_within_the_total_time(
    make_config: MakeConfig,
) -> None:
    """A hung server costs the delivery's total time at most; then it is recorded failed."""
    policy = NotifyPolicy(
        initial_seconds=0.0, max_wait_seconds=0.0, timeout_seconds=0.3, max_total_seconds=1.0
    )
    with webhook_server(hold=True) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, policy) as orch:
            report = await orch.run_tests(REQUESTS)
            started = time.monotonic()
        took = time.monotonic() - started
    assert took < 3.0
    status = await notify_status(config, report.session_id)
    assert re.fullmatch(
        r"failed: no delivery within 1s, \d tries \(last: timed out\)", status or ""
    )


async def test_a_delivery_stopped_short_of_its_total_time_says_the_time_ran_out(
    make_config: MakeConfig,
) -> None:
    """Tries left but no time for the next wait: recorded as out of time, not as out of tries."""
    policy = NotifyPolicy(  # try 1 ends at 0.1 s, try 2 at 0.7 s; its 1 s wait ends past 1.5 s
        initial_seconds=0.5, max_wait_seconds=10.0, timeout_seconds=0.1, max_total_seconds=1.5
    )
    with webhook_server(hold=True) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, policy) as orch:
            report = await orch.run_tests(REQUESTS)
    status = await notify_status(config, report.session_id)
    assert status == "failed: no delivery within 1.5s, 2 tries (last: timed out)"


async def test_a_session_names_its_own_webhook_and_keeps_the_configured_gates(
    make_config: MakeConfig,
) -> None:
    """Options naming only a webhook post there, and the config's gates still judge."""
    with webhook_server() as configured, webhook_server() as own:
        config = make_config(notify_url=configured.url, gates={"max_flaky": 0})
        async with orchestrator(config, NotifyPolicy.zero_wait()) as orch:
            session_id = await orch.create_session(
                REQUESTS, options=ReportOptions(notify_url=own.url)
            )
            report = await orch.wait_for_session(session_id)
        own.wait_for(1)
    assert configured.received == []
    assert [g.name for g in report.gates] == ["max_flaky"]


async def test_without_a_webhook_nothing_is_posted_or_recorded(make_config: MakeConfig) -> None:
    """No ``notify_url``: no delivery, no status."""
    config = make_config()
    async with orchestrator(config, NotifyPolicy.zero_wait()) as orch:
        report = await orch.run_tests(REQUESTS)
    assert await notify_status(config, report.session_id) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/hook", "a webhook is an http:// or https:// URL"),
        ("example.com/hook", "a webhook is an http:// or https:// URL"),
        ("http:///hook", "names no host"),
        ("http://example.com:99999/", "is not a URL"),
        ("http://example.com/a b", "spaces or control characters"),
    ],
)
def test_a_bad_webhook_url_is_a_config_error(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    """Only http and https URLs with a host, whether configured or given per session."""
    with pytest.raises(ValueError, match=problem):
        ReportOptions(notify_url=url)
    monkeypatch.setenv("PARALLEL_ORCH_NOTIFY_URL", url)
    with pytest.raises(ConfigError, match=f"invalid configuration: notify_url: .*{problem}"):
        cli_config(repo=repo.path)


async def test_closing_waits_for_a_delivery_under_way(make_config: MakeConfig) -> None:
    """Leaving ``async with`` returns only once the delivery has its answer."""
    with webhook_server(hold=True) as server:
        config = make_config(notify_url=server.url)

        async def answer_later() -> None:
            await anyio.to_thread.run_sync(server.wait_for, 1)
            await anyio.sleep(0.3)
            server.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_later)
            async with orchestrator(config, NotifyPolicy.zero_wait()) as orch:
                report = await orch.run_tests(REQUESTS)
            status = await notify_status(config, report.session_id)
    assert status == "delivered: HTTP 200 after 1 try"


async def test_a_session_a_dead_process_left_is_posted_when_marked_interrupted(
    repo: GitRepo, make_config: MakeConfig
) -> None:
    """The next orchestrator ends a dead owner's session, and its webhook hears of it."""
    with webhook_server() as server:
        config = make_config()
        async with open_store(config.resolved_state_dir) as store:
            await store.create_session(
                "deadbeef0002",
                num_workers=1,
                repo=str(repo.path),
                plan_paths=[],
                plan_key="k",
                owner=dead_owner_token(),
                executions=[NewExecution(TestRequest(id="a", command="true"), repo.head())],
                options_json=ReportOptions(notify_url=server.url).model_dump_json(),
            )
        async with orchestrator(config, NotifyPolicy.zero_wait()):
            pass
        [got] = server.wait_for(1)
    assert (got.json()["session_id"], got.json()["status"]) == ("deadbeef0002", "interrupted")
    assert await notify_status(config, "deadbeef0002") == "delivered: HTTP 200 after 1 try"


async def test_closing_waits_a_bounded_time_then_records_the_delivery_abandoned(
    make_config: MakeConfig,
) -> None:
    """A delivery still trying when the orchestrator closes gets ``drain_seconds``, then is
    cut short and recorded so."""
    policy = NotifyPolicy(timeout_seconds=20.0, drain_seconds=0.5)
    with webhook_server(hold=True) as server:
        config = make_config(notify_url=server.url)
        async with orchestrator(config, policy) as orch:
            report = await orch.run_tests(REQUESTS)
            await anyio.to_thread.run_sync(server.wait_for, 1)
            started = time.monotonic()
        took = time.monotonic() - started
    assert 0.4 < took < 3.0
    assert await notify_status(config, report.session_id) == "abandoned: stopped at try 1"
