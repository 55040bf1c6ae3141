"""Queue settings as Cloud Tasks stores them: defaults filled in, ranges enforced, and the
token bucket that turns `max_dispatches_per_second` into dispatch times."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks.engine.queue_target import check_queue_target

__all__ = ["TokenBucket", "burst_size", "complete_queue"]

MAX_RATE = 500.0
MAX_CONCURRENT = 5000
DEFAULT_RETRY: dict[str, Any] = {
    "max_attempts": 100,
    "min_backoff": timedelta(seconds=0.1),
    "max_backoff": timedelta(seconds=3600),
    "max_doublings": 16,
    "max_retry_duration": timedelta(0),
}


def burst_size(rate: float) -> int:
    """Cloud Tasks picks the burst from the rate (100 at 500/s); we use min(rate, 100)."""
    return max(1, min(100, math.ceil(rate)))


def complete_queue(queue: tasks_v2.Queue, *, max_rate: float = MAX_RATE) -> tasks_v2.Queue:
    """A copy of `queue` with every unset setting at Cloud Tasks' default; InvalidArgument for
    a value the service rejects."""
    queue = tasks_v2.Queue(queue)
    retry = queue.retry_config
    if retry.max_attempts == 0:
        retry.max_attempts = DEFAULT_RETRY["max_attempts"]
    elif retry.max_attempts < -1:
        raise exceptions.InvalidArgument(
            "RetryConfig.max_attempts must be -1 (unlimited) or positive, got "
            f"{retry.max_attempts}."
        )
    for field in ("min_backoff", "max_backoff", "max_retry_duration"):
        if field not in retry:
            setattr(retry, field, DEFAULT_RETRY[field])
        elif getattr(retry, field) < timedelta(0):
            raise exceptions.InvalidArgument(f"RetryConfig.{field} must not be negative.")
    if "max_doublings" not in retry and retry.max_doublings == 0:
        retry.max_doublings = DEFAULT_RETRY["max_doublings"]
    if retry.max_doublings < 0:
        raise exceptions.InvalidArgument("RetryConfig.max_doublings must not be negative.")
    if retry.min_backoff > retry.max_backoff:
        raise exceptions.InvalidArgument(
            "RetryConfig.min_backoff must be less than or equal to RetryConfig.max_backoff."
        )
    rates = queue.rate_limits
    if rates.max_dispatches_per_second == 0:
        rates.max_dispatches_per_second = min(500.0, max_rate)
    if not 0 < rates.max_dispatches_per_second <= max_rate:
        raise exceptions.InvalidArgument(
            f"RateLimits.max_dispatches_per_second must be in (0, {max_rate:g}], "
            f"got {rates.max_dispatches_per_second:g}."
        )
    if rates.max_concurrent_dispatches == 0:
        rates.max_concurrent_dispatches = 1000
    if not 0 < rates.max_concurrent_dispatches <= MAX_CONCURRENT:
        raise exceptions.InvalidArgument(
            f"RateLimits.max_concurrent_dispatches must be in [1, {MAX_CONCURRENT}], "
            f"got {rates.max_concurrent_dispatches}."
        )
    rates.max_burst_size = burst_size(rates.max_dispatches_per_second)
    check_queue_target(tasks_v2.Queue.pb(queue))
    if queue.state == tasks_v2.Queue.State.STATE_UNSPECIFIED:
        queue.state = tasks_v2.Queue.State.RUNNING  # type: ignore[assignment]
    return queue


class TokenBucket:
    """Dispatch tokens refilled at `rate` per second up to `burst`."""

    def __init__(self, rate: float, burst: int, now: datetime) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: datetime) -> None:
        stamp = self._stamp
        if now > stamp:
            self._stamp = now
            if self._tokens < self.burst:  # a full bucket (most of a burst's) stays full
                tokens = self._tokens + (now - stamp).total_seconds() * self.rate
                self._tokens = tokens if tokens < self.burst else float(self.burst)

    def ready_at(self, now: datetime) -> datetime:
        """The first time a token is available (now, or later when the bucket is empty)."""
        # Float rounding must not stall a due dispatch. A token already here needs no refill
        # first: tokens accrue linearly up to the cap, so refilling later from the same
        # stamp gives the same count.
        if self._tokens >= 1 - 1e-9:
            return now
        self._refill(now)
        if self._tokens >= 1 - 1e-9:
            return now
        return self._stamp + timedelta(seconds=(1 - self._tokens) / self.rate)

    def take(self, now: datetime) -> None:
        self._refill(now)
        self._tokens -= 1
