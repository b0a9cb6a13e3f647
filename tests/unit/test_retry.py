"""RetryPolicy: the backoff formula, its caps, what is retryable, zero-wait mode."""

from __future__ import annotations

import random

import pytest

from parallel_orch import ExecutionStatus, RetryPolicy


def test_wait_follows_the_exponential_formula_without_jitter() -> None:
    """wait(n) = initial * base**(n-1), capped at max_wait_seconds."""
    policy = RetryPolicy(initial_seconds=0.5, base=2.0, max_wait_seconds=5.0, jitter_seconds=0.0)
    assert [policy.wait_seconds(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_adds_at_most_jitter_seconds_and_is_reproducible() -> None:
    """Jitter is uniform in [0, jitter_seconds] on top of the backoff; a seeded rng repeats it."""
    policy = RetryPolicy(initial_seconds=1.0, base=3.0, max_wait_seconds=100.0, jitter_seconds=0.5)
    waits = [policy.wait_seconds(2, random.Random(seed)) for seed in range(200)]
    assert all(3.0 <= w <= 3.5 for w in waits)
    assert len(set(waits)) > 1
    assert policy.wait_seconds(2, random.Random(7)) == policy.wait_seconds(2, random.Random(7))


def test_jitter_never_exceeds_the_cap() -> None:
    """The cap applies after jitter: the wait is never above max_wait_seconds."""
    policy = RetryPolicy(initial_seconds=10.0, max_wait_seconds=10.0, jitter_seconds=5.0)
    assert all(policy.wait_seconds(1, random.Random(s)) == 10.0 for s in range(50))


@pytest.mark.parametrize(
    "status", [ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ERROR]
)
def test_failures_are_retried_while_retries_remain(status: ExecutionStatus) -> None:
    """failed, timed_out and error get another attempt until the request's retries are used."""
    policy = RetryPolicy(initial_seconds=1.0, base=2.0, jitter_seconds=0.0, max_retries=5)
    decide = [
        policy.decide(status, attempt=n, allowed_retries=2, elapsed_seconds=0.0) for n in (1, 2, 3)
    ]
    assert decide == [1.0, 2.0, None]


@pytest.mark.parametrize(
    "status",
    [
        ExecutionStatus.PASSED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.INTERRUPTED,
        ExecutionStatus.SKIPPED,
    ],
)
def test_non_failures_are_final(status: ExecutionStatus) -> None:
    """Passed, cancelled, interrupted and skipped attempts are never retried."""
    policy = RetryPolicy.zero_wait()
    assert policy.decide(status, attempt=1, allowed_retries=3, elapsed_seconds=0.0) is None


def test_max_retries_caps_what_a_request_asks_for() -> None:
    """A request asking for 10 retries gets at most max_retries of them."""
    policy = RetryPolicy.zero_wait(max_retries=2)
    failed = ExecutionStatus.FAILED
    assert policy.decide(failed, attempt=2, allowed_retries=10, elapsed_seconds=0.0) == 0.0
    assert policy.decide(failed, attempt=3, allowed_retries=10, elapsed_seconds=0.0) is None


def test_no_retry_after_max_total_seconds() -> None:
    """Once max_total_seconds have passed since the first attempt, a failure is final."""
    policy = RetryPolicy(max_total_seconds=60.0)
    failed = ExecutionStatus.FAILED
    assert policy.decide(failed, attempt=1, allowed_retries=3, elapsed_seconds=59.0) is not None
    assert policy.decide(failed, attempt=1, allowed_retries=3, elapsed_seconds=60.0) is None


def test_zero_wait_retries_immediately() -> None:
    """RetryPolicy.zero_wait() retries with no delay at all, for tests and benchmarks."""
    policy = RetryPolicy.zero_wait()
    assert [policy.wait_seconds(n) for n in (1, 5, 20)] == [0.0, 0.0, 0.0]
    assert (
        policy.decide(ExecutionStatus.FAILED, attempt=1, allowed_retries=1, elapsed_seconds=0)
        == 0.0
    )


def test_retryable_set_is_configurable() -> None:
    """Only statuses in `retryable` are retried: a policy can refuse to retry timeouts."""
    policy = RetryPolicy(retryable=frozenset({ExecutionStatus.FAILED}), jitter_seconds=0.0)
    assert (
        policy.decide(ExecutionStatus.TIMED_OUT, attempt=1, allowed_retries=3, elapsed_seconds=0)
        is None
    )
    assert (
        policy.decide(ExecutionStatus.FAILED, attempt=1, allowed_retries=3, elapsed_seconds=0)
        == 0.5
    )


def test_policy_is_frozen() -> None:
    """A policy is immutable data: assigning to it raises."""
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 9  # type: ignore[misc]
