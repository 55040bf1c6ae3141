"""Cloud Tasks' retry rules: the backoff formula and when retrying stops."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fastapi_cloud_tasks.engine.retry import backoff, retries_exhausted

T0 = datetime(2024, 7, 17, 12, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def seconds(*values: float) -> list[timedelta]:
    return [timedelta(seconds=v) for v in values]


def test_backoff_worked_example_10s_300s_3_doublings() -> None:
    waits = [backoff(k, 10 * SECOND, 300 * SECOND, 3) for k in range(1, 9)]
    assert waits == seconds(10, 20, 40, 80, 160, 240, 300, 300)


def test_backoff_with_one_doubling_as_recorded() -> None:
    waits = [backoff(k, SECOND, 5 * SECOND, 1) for k in range(1, 6)]
    assert waits == seconds(1, 2, 4, 5, 5)


def test_backoff_without_doublings_grows_linearly() -> None:
    waits = [backoff(k, 10 * SECOND, 300 * SECOND, 0) for k in range(1, 5)]
    assert waits == seconds(10, 20, 30, 40)


def test_backoff_defaults_double_from_a_tenth_of_a_second_up_to_an_hour() -> None:
    waits = [backoff(k, 0.1 * SECOND, 3600 * SECOND, 16) for k in (1, 2, 3, 15, 16, 30)]
    assert waits == seconds(0.1, 0.2, 0.4, 1638.4, 3276.8, 3600)


def test_backoff_never_exceeds_max_backoff() -> None:
    assert backoff(100, SECOND, 7 * SECOND, 16) == 7 * SECOND


def test_backoff_with_equal_min_and_max_is_constant() -> None:
    assert {backoff(k, 5 * SECOND, 5 * SECOND, 16) for k in range(1, 20)} == {5 * SECOND}


def exhausted(
    attempts: int,
    max_attempts: int,
    *,
    duration: timedelta = timedelta(0),
    since_first: timedelta = timedelta(minutes=1),
    age: timedelta | None = None,
) -> bool:
    now = T0 + since_first
    return retries_exhausted(
        attempts=attempts,
        max_attempts=max_attempts,
        first_attempt=T0,
        max_retry_duration=duration,
        created=now - (age if age is not None else since_first),
        now=now,
    )


def test_attempts_below_the_limit_keep_retrying() -> None:
    assert not exhausted(2, 3)


def test_attempt_limit_counts_the_first_attempt() -> None:
    assert exhausted(3, 3)
    assert exhausted(1, 1)


def test_zero_retry_duration_means_only_attempts_count() -> None:
    assert exhausted(100, 100, duration=timedelta(0), since_first=timedelta(days=10))
    assert not exhausted(99, 100, duration=timedelta(0), since_first=timedelta(days=10))


def test_attempt_limit_reached_but_retry_duration_left_keeps_retrying() -> None:
    assert not exhausted(5, 3, duration=timedelta(hours=1), since_first=timedelta(minutes=59))


def test_retry_duration_used_up_but_attempts_left_keeps_retrying() -> None:
    assert not exhausted(2, 3, duration=timedelta(hours=1), since_first=timedelta(hours=2))


def test_both_limits_used_up_stops() -> None:
    assert exhausted(3, 3, duration=timedelta(hours=1), since_first=timedelta(hours=1))


def test_unlimited_attempts_with_zero_duration_never_stop_before_31_days() -> None:
    assert not exhausted(100_000, -1, since_first=timedelta(days=30))


def test_unlimited_attempts_keep_retrying_after_the_retry_duration() -> None:
    # Both limits must be used up, and an unlimited attempt count never is.
    assert not exhausted(50, -1, duration=timedelta(hours=1), since_first=timedelta(days=2))


@pytest.mark.parametrize("max_attempts", [-1, 1000])
def test_tasks_stop_after_31_days_whatever_the_limits(max_attempts: int) -> None:
    assert exhausted(1, max_attempts, duration=timedelta(days=60), age=timedelta(days=31))
    assert not exhausted(
        1, max_attempts, duration=timedelta(days=60),
        age=timedelta(days=31) - timedelta(microseconds=1),
    )


def test_31_days_count_from_creation_not_from_the_first_attempt() -> None:
    # Created 31 days ago, first attempted only a day ago.
    assert exhausted(1, -1, since_first=timedelta(days=1), age=timedelta(days=31))
