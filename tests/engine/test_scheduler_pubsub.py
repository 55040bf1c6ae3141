"""Pub/Sub target jobs through Google's real CloudSchedulerClient, on a virtual clock.

The checks are Google's (PubsubTarget's docs, Pub/Sub's resource limits); a run is one
`JobPublish` for the driver to publish, retried per the job's RetryConfig when it fails.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine, JobPublish
from fastapi_cloud_tasks.engine.cloud_tasks import Outcome
from fastapi_cloud_tasks.engine.transports import scheduler_client

LOCATION = "projects/test-project/locations/asia-south1"
TOPIC = "projects/test-project/topics/cron-topic"
START = datetime(2026, 4, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def engine(clock: VirtualClock) -> CloudSchedulerEngine:
    return CloudSchedulerEngine(clock)


@pytest.fixture
def client(engine: CloudSchedulerEngine) -> scheduler_v1.CloudSchedulerClient:
    return scheduler_client(engine)


def create(client: scheduler_v1.CloudSchedulerClient, *, retry: dict[str, Any] | None = None,
           **target: Any) -> scheduler_v1.Job:
    target.setdefault("topic_name", TOPIC)
    job = scheduler_v1.Job(name=f"{LOCATION}/jobs/tick", schedule="0 * * * *",
                           pubsub_target=scheduler_v1.PubsubTarget(**target))
    if retry is not None:
        job.retry_config = scheduler_v1.RetryConfig(**retry)
    return client.create_job(parent=LOCATION, job=job)


def take(engine: CloudSchedulerEngine, clock: VirtualClock) -> JobPublish:
    due = engine.next_due_time()
    assert due is not None
    clock.move_to(due)
    publish = engine.take_due()
    assert isinstance(publish, JobPublish)
    return publish


def test_a_run_is_a_publish_of_the_jobs_data_and_attributes(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, data=b"Hello", attributes={"kind": "tick"})

    publish = take(engine, clock)

    assert (publish.topic_name, publish.data, publish.attributes) == (
        TOPIC, b"Hello", {"kind": "tick"})
    assert publish.schedule_time == publish.dispatch_time == START + timedelta(hours=1)
    # Its HTTP form is Pub/Sub's own REST publish call.
    assert (publish.method, publish.url) == (
        "POST", f"https://pubsub.googleapis.com/v1/{TOPIC}:publish")
    assert json.loads(publish.body) == {"messages": [
        {"data": base64.b64encode(b"Hello").decode(), "attributes": {"kind": "tick"}}]}


def test_after_a_publish_the_job_shows_ok_and_its_last_attempt_time(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    job = create(client, data=b"x")
    publish = take(engine, clock)

    assert engine.finish(publish, 200) is Outcome.SUCCEEDED

    shown = client.get_job(name=job.name)
    assert shown.status.code == 0
    assert shown.last_attempt_time == START + timedelta(hours=1)
    assert shown.schedule_time == START + timedelta(hours=2)


def test_a_failed_publish_is_retried_per_the_retry_config(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    job = create(client, data=b"x", retry={"retry_count": 1,
                                           "min_backoff_duration": timedelta(seconds=10)})
    first = take(engine, clock)
    assert engine.finish(first, None) is Outcome.RETRYING
    failed = client.get_job(name=job.name).status
    assert (failed.code, failed.message) == (
        14, "The message could not be published to the Pub/Sub topic.")

    retry = take(engine, clock)

    assert retry.dispatch_time - first.dispatch_time == timedelta(seconds=10)
    assert retry.schedule_time == first.schedule_time
    assert engine.finish(retry, None) is Outcome.FAILED  # its one retry used up


def test_attempt_deadline_is_not_checked_for_pubsub_targets(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    # Job.attempt_deadline: "For Pub/Sub targets, this field is ignored."
    job = scheduler_v1.Job(name=f"{LOCATION}/jobs/tick", schedule="0 * * * *",
                           attempt_deadline=timedelta(hours=2),
                           pubsub_target=scheduler_v1.PubsubTarget(topic_name=TOPIC, data=b"x"))
    assert client.create_job(parent=LOCATION, job=job).pubsub_target.topic_name == TOPIC


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"topic_name": "cron-topic", "data": b"x"}, "must be projects/PROJECT_ID/topics/"),
        ({"topic_name": "projects/test-project/topics/ab", "data": b"x"}, "3 to 255"),
        ({"topic_name": "projects/test-project/topics/google-x", "data": b"x"}, "'goog'"),
        ({"topic_name": "projects/other/topics/cron-topic", "data": b"x"},
         "not in the job's project 'test-project'"),
        ({}, "either non-empty data, or at least one attribute"),
        ({"attributes": {f"k{i}": "v" for i in range(101)}}, "has 101 attributes"),
        ({"attributes": {"k" * 257: "v"}}, "1 to 256 bytes"),
        ({"attributes": {"googkey": "v"}}, "must not start with 'goog'"),
        ({"attributes": {"k": "v" * 1025}}, "is 1025 bytes"),
        ({"data": b"x" * 10_000_001}, "at most 10000000"),
    ],
)
def test_pubsub_targets_google_refuses_are_invalid_arguments(
    client: scheduler_v1.CloudSchedulerClient, target: dict[str, Any], message: str,
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message.replace("(", r"\(")):
        create(client, **target)


def test_a_job_updated_from_http_to_pubsub_publishes(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    job = client.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/tick", schedule="0 * * * *",
        http_target=scheduler_v1.HttpTarget(uri="https://worker.example.com/tick")))

    client.update_job(job=scheduler_v1.Job(
        name=job.name, pubsub_target=scheduler_v1.PubsubTarget(topic_name=TOPIC, data=b"x")),
        update_mask={"paths": ["pubsub_target"]})

    assert take(engine, clock).topic_name == TOPIC
