"""Cloud Scheduler App Engine target jobs through Google's real CloudSchedulerClient: each run
reaches the local App Engine host with Scheduler's and App Engine's headers (Google's
AppEngineHttpTarget and Job.attempt_deadline reference)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1
from google.protobuf import duration_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine, JobDispatch
from fastapi_cloud_tasks.engine.cloud_tasks import Outcome
from fastapi_cloud_tasks.engine.transports import scheduler_client

LOCATION = "projects/test-project/locations/us-central1"
HOST = "127.0.0.1:8081"
AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"
START = datetime(2026, 4, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def engine(clock: VirtualClock) -> CloudSchedulerEngine:
    return CloudSchedulerEngine(clock, app_engine_host=HOST)


@pytest.fixture
def client(engine: CloudSchedulerEngine) -> scheduler_v1.CloudSchedulerClient:
    return scheduler_client(engine)


def create(client: scheduler_v1.CloudSchedulerClient, job_id: str = "cron",
           **target: Any) -> scheduler_v1.Job:
    # Google's cloud_scheduler/snippets create_job.py shape: an App Engine target job.
    job = scheduler_v1.Job(name=f"{LOCATION}/jobs/{job_id}", schedule="*/5 * * * *",
                           time_zone="America/Los_Angeles",
                           app_engine_http_target=scheduler_v1.AppEngineHttpTarget(**target))
    return client.create_job(parent=LOCATION, job=job)


def run(engine: CloudSchedulerEngine, clock: VirtualClock) -> JobDispatch:
    clock.advance(timedelta(minutes=5))
    dispatch = engine.take_due()
    assert dispatch is not None
    return dispatch


def test_a_run_posts_to_the_app_engine_host_with_schedulers_and_app_engines_headers(
    engine: CloudSchedulerEngine, client: scheduler_v1.CloudSchedulerClient,
    clock: VirtualClock,
) -> None:
    job = create(client, relative_uri="/log_payload", body=b"Hello World",
                 app_engine_routing=scheduler_v1.AppEngineRouting(service="my-service"))
    assert job.attempt_deadline == timedelta(minutes=10)
    dispatch = run(engine, clock)
    assert (dispatch.method, dispatch.url, dispatch.body) == (
        "POST", f"http://{HOST}/log_payload", b"Hello World")
    assert dispatch.deadline == timedelta(minutes=10)
    headers = dispatch.headers
    assert headers["User-Agent"] == AGENT
    assert headers["X-CloudScheduler"] == "true"
    assert headers["X-AppEngine-Cron"] == "true"
    assert headers["X-CloudScheduler-JobName"] == "cron"
    assert headers["X-CloudScheduler-ScheduleTime"] == "2026-03-31T17:05:00-07:00"
    assert headers["Content-Type"] == "application/octet-stream"
    assert engine.finish(dispatch, 204) is Outcome.SUCCEEDED


def test_the_jobs_user_agent_is_kept_and_the_fragment_is_not_sent(
    engine: CloudSchedulerEngine, client: scheduler_v1.CloudSchedulerClient,
    clock: VirtualClock,
) -> None:
    create(client, relative_uri="/w?a=1#part", http_method=scheduler_v1.HttpMethod.GET,
           headers={"User-Agent": "mine/2"})
    dispatch = run(engine, clock)
    assert (dispatch.method, dispatch.url) == ("GET", f"http://{HOST}/w?a=1")
    assert dispatch.headers["User-Agent"] == f"mine/2 {AGENT}"


def test_deadlines_up_to_24_hours_15_seconds_are_accepted(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    job = scheduler_v1.Job(name=f"{LOCATION}/jobs/long", schedule="0 * * * *",
                           app_engine_http_target=scheduler_v1.AppEngineHttpTarget(),
                           attempt_deadline=duration_pb2.Duration(seconds=86415))
    assert client.create_job(parent=LOCATION, job=job).attempt_deadline == timedelta(
        hours=24, seconds=15)
    job.name = f"{LOCATION}/jobs/longer"
    job.attempt_deadline = duration_pb2.Duration(seconds=86416)
    with pytest.raises(exceptions.InvalidArgument, match="24h15s"):
        client.create_job(parent=LOCATION, job=job)


@pytest.mark.parametrize(("target", "message"), [
    ({"relative_uri": "nope"}, "must begin with '/'"),
    ({"http_method": scheduler_v1.HttpMethod.PATCH}, "is not permitted"),
    ({"http_method": scheduler_v1.HttpMethod.GET, "body": b"x"}, "POST or PUT"),
    ({"headers": {"X-AppEngine-Cron": "true"}}, "'X-AppEngine-Cron' cannot be set"),
])
def test_bad_app_engine_targets_are_refused(
    client: scheduler_v1.CloudSchedulerClient, target: dict[str, Any], message: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message):
        create(client, **target)


def test_without_an_app_engine_host_the_job_is_refused(clock: VirtualClock) -> None:
    client = scheduler_client(CloudSchedulerEngine(clock))
    with pytest.raises(exceptions.InvalidArgument, match="--app-engine-host HOST:PORT"):
        create(client, relative_uri="/w")
