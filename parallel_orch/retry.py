"""Retries as data: a frozen policy and a pure decision function."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from parallel_orch.models import FAILURE_STATUSES, ExecutionStatus

#: Attempt outcomes worth another attempt: the failures. ``cancelled`` and ``interrupted`` are not.
RETRYABLE: frozenset[ExecutionStatus] = FAILURE_STATUSES


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a failed attempt again.

    The wait before attempt ``n + 1`` (after ``n`` failed attempts) is
    ``min(max_wait_seconds, initial_seconds * base ** (n - 1) + uniform(0, jitter_seconds))``.
    A test gets at most ``1 + min(request.retries, max_retries)`` attempts; no
    retry starts once ``max_total_seconds`` have passed since its first attempt.
    """

    initial_seconds: float = 0.5
    base: float = 2.0
    max_wait_seconds: float = 30.0
    jitter_seconds: float = 0.5
    max_retries: int = 3
    max_total_seconds: float = 3600.0
    #: Attempts ``interrupted`` because their machine was lost (a Dask worker killed) go
    #: again at once, this many times per test, not counted as retries.
    max_lost: int = 2
    retryable: frozenset[ExecutionStatus] = field(default=RETRYABLE)

    @classmethod
    def zero_wait(cls, max_retries: int = 3) -> RetryPolicy:
        """No backoff at all: for tests and benchmarks."""
        return cls(
            initial_seconds=0.0, jitter_seconds=0.0, max_wait_seconds=0.0, max_retries=max_retries
        )

    def wait_seconds(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Backoff before the next attempt, after ``failed_attempts`` (>= 1) failures."""
        jitter = (rng or random).uniform(0.0, self.jitter_seconds) if self.jitter_seconds else 0.0
        return min(
            self.max_wait_seconds,
            self.initial_seconds * self.base ** (failed_attempts - 1) + jitter,
        )

    def decide(
        self,
        status: ExecutionStatus,
        *,
        attempt: int,
        allowed_retries: int,
        elapsed_seconds: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before retrying, or ``None`` when this outcome is final.

        :param attempt: the number of the attempt that just ended (1-based).
        :param allowed_retries: the request's own ``retries``.
        :param elapsed_seconds: time since the request's first attempt started.
        """
        if status not in self.retryable:
            return None
        if attempt > min(allowed_retries, self.max_retries):
            return None
        if elapsed_seconds >= self.max_total_seconds:
            return None
        return self.wait_seconds(attempt, rng)
