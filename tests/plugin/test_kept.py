"""What the harness keeps of every attempt: lean (a day of 100 every-minute jobs is 144,000
attempts), yet each attempt still reports its own run."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from fastapi import FastAPI
from google.cloud import scheduler_v1

from pytest_cloudtasks.harness import Harness, HarnessConfig
from pytest_cloudtasks.queue import CloudTasksQueue
from pytest_cloudtasks.scheduler import CloudTasksScheduler

LOCATION = "projects/p/locations/l"
URL = "https://kept.example/tick"
START = datetime(2026, 3, 1, tzinfo=timezone.utc)

app = FastAPI()


@app.post("/tick")
async def tick() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
def harness() -> Iterator[Harness]:
    harness = Harness(lambda: app, HarnessConfig(start=START, max_deliveries=10_000))
    yield harness
    harness.close()


def every_minute(harness: Harness, count: int) -> None:
    for i in range(count):
        harness.scheduler_client.create_job(parent=LOCATION, job=scheduler_v1.Job(
            name=f"{LOCATION}/jobs/minutely-{i}", schedule="* * * * *",
            http_target=scheduler_v1.HttpTarget(uri=URL, headers={"X-Team": "billing"})))


def test_an_attempt_keeps_little_of_its_own(harness: Harness) -> None:
    # Given ten every-minute jobs that already ran once (first-use costs out of the way)
    every_minute(harness, 10)
    queue = CloudTasksQueue(harness)
    queue.advance(minutes=1)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # When an hour runs: 600 attempts, all kept
        attempts = queue.advance(hours=1)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(attempts) == 600
    # Then each costs well under the ~1.8 KB (plus a protobuf copy) it used to
    assert kept / len(attempts) < 1200


def test_each_run_still_reports_its_own_occurrence_and_the_job_as_it_was(
        harness: Harness) -> None:
    every_minute(harness, 1)
    queue = CloudTasksQueue(harness)
    first, second = queue.advance(minutes=2)
    name = f"{LOCATION}/jobs/minutely-0"
    harness.scheduler_client.pause_job(name=name)
    harness.scheduler_client.resume_job(name=name)
    harness.scheduler_client.update_job(job=scheduler_v1.Job(name=name, schedule="*/5 * * * *"))
    (third,) = queue.advance(minutes=5)
    assert [a.task.next_run for a in (first, second, third)] == [
        START + timedelta(minutes=2), START + timedelta(minutes=3),
        START + timedelta(minutes=10)]
    assert [a.task.schedule for a in (first, second, third)] == ["* * * * *"] * 2 + [
        "*/5 * * * *"]
    assert first.task.job.schedule == "* * * * *"
    assert third.task.job.schedule == "*/5 * * * *"
    assert third.task.job.state == scheduler_v1.Job.State.ENABLED
    assert third.task.headers == {"X-Team": "billing"}
    assert third.request_headers["x-team"] == "billing"
    assert third.response is not None
    assert third.response.json() == {"ok": True}
    # A job read from the fixture carries the last attempt's output, as GetJob does
    assert CloudTasksScheduler(harness).jobs["minutely-0"].job.status.code == 0
