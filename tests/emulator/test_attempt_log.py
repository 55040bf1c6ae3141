"""The dashboard's recent attempts: what the dispatcher's sources report, in a bounded ring."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import tasks_v2

from fastapi_cloud_tasks.emulator.attempt_log import AttemptLog
from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine

QUEUE = "projects/p/locations/l/queues/q"


def engine_with_tasks(clock: VirtualClock, count: int) -> CloudTasksEngine:
    engine = CloudTasksEngine(clock)
    for number in range(count):
        engine.create_task(tasks_v2.CreateTaskRequest(parent=QUEUE, task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(url=f"http://127.0.0.1:9/{number}"))))
    return engine


def test_it_keeps_the_last_attempts_newest_first_with_what_was_sent() -> None:
    clock = VirtualClock(datetime(2026, 3, 8, tzinfo=timezone.utc))
    log = AttemptLog(clock, size=2)
    source = log.observe(engine_with_tasks(clock, 3))

    for status in (503, 200, 201):
        dispatch = source.take_due()
        clock.advance(timedelta(milliseconds=40))
        source.finish(dispatch, status)

    assert [(e.url, e.status, e.outcome, e.number) for e in log.recent()] == [
        ("http://127.0.0.1:9/2", 201, "succeeded", 3),
        ("http://127.0.0.1:9/1", 200, "succeeded", 2),
    ]
    newest = log.recent()[0]
    assert newest.duration == timedelta(milliseconds=40)
    assert newest.retry_count == 0
    assert newest.headers["X-CloudTasks-TaskRetryCount"] == "0"


def test_a_retry_counts_the_attempts_before_it() -> None:
    clock = VirtualClock(datetime(2026, 3, 8, tzinfo=timezone.utc))
    log = AttemptLog(clock)
    source = log.observe(engine_with_tasks(clock, 1))

    source.finish(source.take_due(), None)  # no response: retried after its backoff
    clock.advance(timedelta(seconds=1))
    source.finish(source.take_due(), 200)

    assert [(e.status, e.outcome, e.retry_count) for e in log.recent()] == [
        (200, "succeeded", 1), (None, "retrying", 0)]


def test_an_outcome_the_engine_failed_to_record_is_still_listed() -> None:
    clock = VirtualClock(datetime(2026, 3, 8, tzinfo=timezone.utc))
    engine = engine_with_tasks(clock, 1)
    log = AttemptLog(clock)
    source = log.observe(engine)
    dispatch = source.take_due()

    def broken(*args: object) -> None:
        raise RuntimeError("the engine broke")

    source._finish = broken
    with pytest.raises(RuntimeError):
        source.finish(dispatch, 200)

    assert [(e.status, e.outcome) for e in log.recent()] == [(200, "not recorded")]
