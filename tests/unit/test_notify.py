"""The webhook's retry policy, what it retries, and how it names a URL in logs."""

from __future__ import annotations

import pytest

from parallel_orch.notify import NotifyPolicy, Outcome, where
from parallel_orch.report.options import check_notify_url


def test_the_wait_doubles_up_to_its_cap() -> None:
    """0.5, 1, 2, 4, then capped at 5 s, while tries and total time last."""
    policy = NotifyPolicy(max_tries=10, max_wait_seconds=5.0, max_total_seconds=1000.0)
    refused = Outcome(error="Connection refused")
    waits = [policy.decide(refused, tries=n, elapsed_seconds=0.0) for n in range(1, 7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_no_try_after_the_last_or_past_the_total_time() -> None:
    """``max_tries`` tries at most, and no wait that would end past ``max_total_seconds``."""
    policy = NotifyPolicy(max_tries=3, max_total_seconds=10.0)
    refused = Outcome(error="Connection refused")
    assert policy.decide(refused, tries=3, elapsed_seconds=0.0) is None
    assert policy.decide(refused, tries=2, elapsed_seconds=9.5) is None
    assert policy.decide(refused, tries=2, elapsed_seconds=5.0) == 1.0


@pytest.mark.parametrize(
    ("outcome", "retried"),
    [
        (Outcome(error="Connection refused"), True),
        (Outcome(error="timed out"), True),
        (Outcome(status=500), True),
        (Outcome(status=503), True),
        (Outcome(status=408), True),
        (Outcome(status=429), True),
        (Outcome(status=400), False),
        (Outcome(status=401), False),
        (Outcome(status=404), False),
        (Outcome(status=301), False),  # a redirect is not followed, nor retried
        (Outcome(status=200), False),  # delivered
        (Outcome(status=204), False),
    ],
)
def test_what_is_retried(outcome: Outcome, retried: bool) -> None:
    """No answer, 5xx, 408 and 429 are tried again; other answers are final."""
    decided = NotifyPolicy().decide(outcome, tries=1, elapsed_seconds=0.0)
    assert (decided is not None) == retried


def test_zero_wait_retries_at_once() -> None:
    """The tests' policy waits nothing between tries."""
    assert NotifyPolicy.zero_wait().decide(Outcome(status=503), tries=1, elapsed_seconds=0) == 0.0


def test_logs_name_the_server_never_the_path_or_credentials() -> None:
    """A webhook's path and user info are often its secret: logs show scheme, host, port."""
    assert where("https://user:pw@hooks.example.com/T000/B000/XXXX?x=1") == (
        "https://hooks.example.com"
    )
    assert where("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://hooks.example.com/T0/B0/x?a=1", "http://[::1]/"]
)
def test_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    """What a webhook may be: http or https, a host, any path and query."""
    assert check_notify_url(url) == url
