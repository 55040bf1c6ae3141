"""Cloud Tasks' retry rules, shared by the queue engine and the scheduler engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["backoff", "later", "retries_exhausted", "retry_after"]

MAX_TASK_AGE = timedelta(days=31)
_MICROSECOND = timedelta(microseconds=1)
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def backoff(
    failed_attempts: int, min_backoff: timedelta, max_backoff: timedelta, max_doublings: int
) -> timedelta:
    """The wait after the `failed_attempts`-th failure: doubling `max_doublings` times, then
    growing linearly, never above `max_backoff`.

    10 s / 300 s / 3 doublings gives 10, 20, 40, 80, 160, 240, 300, 300.

    Counted in whole microseconds, and the doublings stop once past `max_backoff`: a queue's
    numbers (`max_doublings` 60, backoffs of centuries) never overflow a `timedelta`.
    """
    k = max(failed_attempts, 1)
    low, high = min_backoff // _MICROSECOND, max_backoff // _MICROSECOND
    if low <= 0 or high <= 0:
        return min(max_backoff, max(min_backoff, timedelta(0)))
    # low * 2**d exceeds high once d reaches high's bit length: more doublings change nothing.
    doublings = min(k - 1, max(max_doublings, 0), high.bit_length())
    # While doubling (k - 1 <= d) the linear factor k - doublings is 1.
    wait = low * (2**doublings) * (k - doublings)
    return timedelta(microseconds=min(high, wait))


def later(when: datetime, wait: timedelta) -> datetime:
    """`when + wait`, or the last representable instant (a retry that never comes) when the
    sum would be past year 9999."""
    try:
        return when + wait
    except OverflowError:
        return _LATEST


def retry_after(value: str | None) -> timedelta | None:
    """A worker's `Retry-After` header, when it gives a delay in seconds (at most the 31 days
    a task lives: a longer one means the same, and a huge number must not overflow)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        return None
    seconds = MAX_TASK_AGE.total_seconds()
    if len(value) < 10:
        seconds = min(seconds, int(value))
    return timedelta(seconds=seconds)


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
