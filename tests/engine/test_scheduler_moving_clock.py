"""Cloud Scheduler's engine on a clock that moves between two reads, as the real one does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from google.cloud import scheduler_v1

from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine

LOCATION = "projects/p/locations/l"


class MovingClock:
    """A microsecond later at every read: no two reads of real time are equal either."""

    def __init__(self) -> None:
        self._now = datetime(2026, 3, 8, tzinfo=timezone.utc)

    def now(self) -> datetime:
        self._now += timedelta(microseconds=1)
        return self._now


def test_a_forced_run_is_taken_although_time_moved_since_take_due_read_it() -> None:
    engine = CloudSchedulerEngine(MovingClock())
    engine.create_job(scheduler_v1.CreateJobRequest(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/j", schedule="0 7 * * *",
        http_target=scheduler_v1.HttpTarget(uri="http://127.0.0.1:9/job"))))
    engine.run_job(scheduler_v1.RunJobRequest(name=f"{LOCATION}/jobs/j"))

    dispatch = engine.take_due()

    assert dispatch is not None
    assert dispatch.url == "http://127.0.0.1:9/job"
