"""Edges of the drain found in review: small advances before the clock is frozen, job runs'
attempt numbers."""

from __future__ import annotations

import pytest

APP = """
from fastapi import APIRouter, FastAPI, HTTPException
from google.cloud import scheduler_v1
from fastapi_cloud_tasks import (
    DelayedRouteBuilder, ScheduledRouteBuilder, location_path, queue_path)

tasks = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://edges.example", queue_path=queue_path("p", "l", "q")))
jobs = APIRouter(route_class=ScheduledRouteBuilder(
    base_url="https://edges.example", location_path=location_path("p", "l")))

@tasks.post("/ping")
def ping() -> None: ...

@jobs.post("/broken")
def broken() -> None:
    raise HTTPException(500, "down")

app = FastAPI()
app.include_router(tasks)
app.include_router(jobs)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(edges_app=APP)
    pytester.makeini(
        "[pytest]\ncloudtasks_app = edges_app:app\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.syspathinsert()
    return pytester


def test_advance_by_zero_right_after_delay_delivers_without_a_start(project):
    project.makepyfile(
        """
        from edges_app import ping

        def test_zero(cloudtasks_queue):
            ping.delay()
            [attempt] = cloudtasks_queue.advance(seconds=0)
            assert attempt.status_code == 200
        """
    )
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_failing_job_reports_how_many_attempts_its_run_made(project):
    project.makepyfile(
        """
        import pytest
        from edges_app import broken
        from pytest_cloudtasks import TaskFailed

        @pytest.mark.cloudtasks(start="2026-01-01T00:00:00+00:00")
        def test_job(cloudtasks_scheduler):
            broken.scheduler(name="broken", schedule="0 * * * *",
                             retry_config={"retry_count": 2}).schedule()
            with pytest.raises(TaskFailed, match="after 3 attempt"):
                cloudtasks_scheduler.advance(hours=1, minutes=1)
            assert [a.retry_count for a in cloudtasks_scheduler.attempts] == [0, 1, 2]
        """
    )
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
