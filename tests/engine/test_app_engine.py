"""App Engine tasks through Google's real CloudTasksClient: the request each attempt makes to
the local App Engine host, App Engine's headers, deadlines and routing override (Google's
AppEngineHttpRequest reference and "Create App Engine task handlers")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, Dispatch, DispatchError
from fastapi_cloud_tasks.engine.transports import tasks_client

LOCATION = "projects/test-project/locations/us-central1"
QUEUE = f"{LOCATION}/queues/default"
HOST = "127.0.0.1:8081"
AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"
POST = tasks_v2.HttpMethod.POST


@pytest.fixture
def engine() -> CloudTasksEngine:
    return CloudTasksEngine(VirtualClock(datetime(2026, 4, 1, tzinfo=timezone.utc)),
                            app_engine_host=HOST)


@pytest.fixture
def client(engine: CloudTasksEngine) -> tasks_v2.CloudTasksClient:
    return tasks_client(engine)


def create(client: tasks_v2.CloudTasksClient, queue: tasks_v2.Queue | None = None,
           **request: Any) -> tasks_v2.Task:
    client.create_queue(parent=LOCATION, queue=queue or tasks_v2.Queue(name=QUEUE))
    task = tasks_v2.Task(app_engine_http_request=tasks_v2.AppEngineHttpRequest(**request))
    return client.create_task(parent=QUEUE, task=task)


def first(engine: CloudTasksEngine) -> Dispatch:
    dispatch = engine.take_due()
    assert dispatch is not None
    return dispatch


def test_googles_flexible_sample_task_is_posted_to_the_app_engine_host(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    # Google's appengine/flexible/tasks create_app_engine_queue_task.py, as it builds the task.
    create(client, http_method=POST, relative_uri="/example_task_handler", body=b"hello")
    dispatch = first(engine)
    assert (dispatch.method, dispatch.url, dispatch.body) == (
        "POST", f"http://{HOST}/example_task_handler", b"hello")
    assert dispatch.headers["User-Agent"] == AGENT
    assert dispatch.headers["Content-Type"] == "application/octet-stream"
    assert dispatch.deadline == timedelta(minutes=10)


def test_an_attempt_carries_app_engine_headers_and_no_cloud_tasks_ones(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    task = create(client, relative_uri="/work?x=1")
    dispatch = first(engine)
    assert dispatch.url == f"http://{HOST}/work?x=1"
    assert dispatch.method == "POST"  # unset means POST
    assert {k: v for k, v in dispatch.headers.items() if k.startswith("X-")} == {
        "X-AppEngine-QueueName": "default",
        "X-AppEngine-TaskName": task.name.rsplit("/", 1)[1],
        "X-AppEngine-TaskRetryCount": "0",
        "X-AppEngine-TaskExecutionCount": "0",
        "X-AppEngine-TaskETA": f"{task.schedule_time.timestamp():.6f}",
    }
    engine.finish(dispatch, 500)
    engine.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    retry = first(engine).headers
    assert retry["X-AppEngine-TaskRetryCount"] == "1"
    assert retry["X-AppEngine-TaskPreviousResponse"] == "500"
    assert retry["X-AppEngine-TaskRetryReason"] == ""


def test_the_users_agent_is_kept_with_app_engines_appended(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, relative_uri="/w", headers={"user-agent": "mine/1",
                                               "Content-Type": "application/json"}, body=b"{}")
    headers = first(engine).headers
    assert headers["User-Agent"] == f"mine/1 {AGENT}"
    assert headers["Content-Type"] == "application/json"


def test_an_empty_relative_uri_means_the_root(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    task = create(client)
    assert task.app_engine_http_request.relative_uri == "/"
    assert first(engine).url == f"http://{HOST}/"


@pytest.mark.parametrize("status", [200, 204, 299])
def test_a_2xx_answer_deletes_the_task(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient, status: int
) -> None:
    create(client, relative_uri="/w")
    engine.finish(first(engine), status)
    assert engine.pending() == []


def test_the_queues_routing_override_replaces_the_tasks_routing(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    override = tasks_v2.AppEngineRouting(service="worker", version="v2")
    task = create(client, tasks_v2.Queue(name=QUEUE, app_engine_routing_override=override),
                  relative_uri="/w",
                  app_engine_routing=tasks_v2.AppEngineRouting(service="web"))
    first(engine)
    routing = client.get_task(name=task.name).app_engine_http_request.app_engine_routing
    assert (routing.service, routing.version) == ("worker", "v2")


def test_app_engine_deadlines_reach_24_hours_15_seconds(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE))
    long = tasks_v2.Task(app_engine_http_request=tasks_v2.AppEngineHttpRequest(relative_uri="/w"),
                         dispatch_deadline=duration_pb2.Duration(seconds=86415))
    client.create_task(parent=QUEUE, task=long)
    assert first(engine).deadline == timedelta(hours=24, seconds=15)
    long.dispatch_deadline = duration_pb2.Duration(seconds=86416)
    with pytest.raises(exceptions.InvalidArgument, match="24 hours 15 seconds"):
        client.create_task(parent=QUEUE, task=long)


def test_basic_view_keeps_the_app_engine_request_without_its_body(
    client: tasks_v2.CloudTasksClient,
) -> None:
    create(client, relative_uri="/w", body=b"secret")
    (listed,) = client.list_tasks(parent=QUEUE)
    assert listed.app_engine_http_request.relative_uri == "/w"
    assert listed.app_engine_http_request.body == b""


@pytest.mark.parametrize(("request_fields", "message"), [
    ({"relative_uri": "work"}, "must begin with '/'"),
    ({"relative_uri": "/a b"}, "no spaces"),
    ({"relative_uri": "/" + "a" * 2083}, "2083"),
    ({"relative_uri": "/w", "http_method": tasks_v2.HttpMethod.PATCH, "body": b"x"},
     "POST or PUT"),
    ({"relative_uri": "/w", "headers": {"X-AppEngine-QueueName": "q"}},
     "'X-AppEngine-QueueName' cannot be set"),
    ({"relative_uri": "/w", "headers": {"Host": "a"}}, "'Host' cannot be set"),
])
def test_bad_app_engine_requests_are_refused(
    client: tasks_v2.CloudTasksClient, request_fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message):
        create(client, **request_fields)


def test_without_an_app_engine_host_app_engine_tasks_are_refused_at_create() -> None:
    engine = CloudTasksEngine(VirtualClock(datetime(2026, 4, 1, tzinfo=timezone.utc)))
    with pytest.raises(exceptions.InvalidArgument, match="--app-engine-host HOST:PORT"):
        create(tasks_client(engine), relative_uri="/w")
    assert engine.pending() == []


def test_a_429_does_not_slow_an_app_engine_task_but_a_503_does(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    # AppEngineHttpRequest: 503 triggers congestion control; "Unlike other types of task
    # targets, a 429 (Too Many Requests) response from an app handler does not".
    create(client, relative_uri="/w")
    start = engine.clock.now()
    engine.finish(first(engine), 429, retry_after=timedelta(seconds=30))
    assert engine.next_due_time() == start + timedelta(seconds=0.1)  # the queue's min_backoff
    engine.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    retried = engine.clock.now()
    engine.finish(first(engine), 503, retry_after=timedelta(seconds=30))
    assert engine.next_due_time() == retried + timedelta(seconds=30)


def test_an_app_engine_task_without_a_host_at_dispatch_fails_that_attempt_saying_why(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    # Taken back from --data-dir by an emulator started without --app-engine-host.
    create(client, relative_uri="/w")
    engine.app_engine_host = None
    with pytest.raises(DispatchError) as raised:
        engine.take_due()
    assert "restart the emulator with --app-engine-host" in str(raised.value.__cause__)
    assert engine.pending()[0].dispatch_count == 1  # retried as any failed attempt
