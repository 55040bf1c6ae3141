"""Cloud Tasks' retry rules, shared by the queue engine and the scheduler engine."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["backoff", "retries_exhausted", "retry_after"]

MAX_TASK_AGE = timedelta(days=31)


def backoff(
    failed_attempts: int, min_backoff: timedelta, max_backoff: timedelta, max_doublings: int
) -> timedelta:
    """The wait after the `failed_attempts`-th failure: doubling `max_doublings` times, then
    growing linearly, never above `max_backoff`.

    10 s / 300 s / 3 doublings gives 10, 20, 40, 80, 160, 240, 300, 300.
    """
    k = max(failed_attempts, 1)
    wait: timedelta
    if k - 1 <= max_doublings:
        wait = min_backoff * (2 ** (k - 1))
    else:
        wait = min_backoff * (2**max_doublings) * (k - max_doublings)
    return min(max_backoff, wait)


def retry_after(value: str | None) -> timedelta | None:
    """A worker's `Retry-After` header, when it gives a delay in seconds."""
    if value is not None and value.strip().isdigit():
        return timedelta(seconds=int(value))
    return None


def retries_exhausted(
    *,
    attempts: int,
    max_attempts: int,
    first_attempt: datetime,
    max_retry_duration: timedelta,
    created: datetime,
    now: datetime,
) -> bool:
    """Whether a failed task is dropped: both the attempt limit (-1: none) and the retry
    duration since the first attempt (0: none) used up, or the task 31 days old."""
    if now - created >= MAX_TASK_AGE:
        return True
    attempts_used = max_attempts != -1 and attempts >= max_attempts
    duration_used = max_retry_duration <= timedelta(0) or now - first_attempt >= max_retry_duration
    return attempts_used and duration_used
