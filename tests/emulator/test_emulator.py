"""The emulator end to end: Google's real clients over gRPC to the emulator process, real HTTP
deliveries to a uvicorn worker on loopback, the real clock.

The scenarios a client can reach over either transport run twice (the `tasks_over` and
`scheduler_over` fixtures): with the gRPC client and with the REST one (`transport="rest"`).
Over REST Google's client raises by HTTP status alone, so `error_over` names the class each
transport raises, and `as_sent` reads back the status and message the emulator sent.

Expectations are the facts in CLOUD_BEHAVIOUR.md. Every wait has a deadline; tests use their
own queue, job and worker paths on one shared emulator.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import httpx
import pytest
from emulator_support import (
    FIXED_AUDIENCE,
    LOCATION,
    SERVICE_ACCOUNT,
    Delivery,
    EmulatorProcess,
    Target,
    http_task,
)
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks import emulator_async_client, emulator_scheduler_async_client

T = TypeVar("T")
Client = tasks_v2.CloudTasksClient | scheduler_v1.CloudSchedulerClient
QUEUE_MISSING = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the queue "
    "to initialize."
)
NOT_FOUND = "Requested entity was not found."
ALREADY_EXISTS = "Requested entity already exists"
BAD_SCHEDULE = "Schedule or time zone is invalid."
TOLERANCE = 0.005  # seconds: wall clock read in two processes
FAR_FUTURE = "0 0 1 1 *"  # a schedule that never fires during a test (Jan 1, 00:00)
CLOUD_TASKS_HEADERS = {
    "x-cloudtasks-queuename", "x-cloudtasks-taskname", "x-cloudtasks-taskretrycount",
    "x-cloudtasks-taskexecutioncount", "x-cloudtasks-tasketa",
}
TRANSPORT_HEADERS = {"host", "accept", "accept-encoding", "connection", "content-length"}


def eventually(check: Callable[[], T], timeout: float = 10.0) -> T:
    """`check()` once it stops raising AssertionError or an API error, polled every 20 ms."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, exceptions.GoogleAPICallError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


def error_over(client: Client, error: type[exceptions.GoogleAPICallError],
               ) -> type[exceptions.GoogleAPICallError]:
    """The class `client` raises where gRPC raises `error`: over REST the class of its HTTP
    status alone (AlreadyExists -> Conflict; InvalidArgument, FailedPrecondition -> BadRequest)."""
    if client.transport.kind == "rest":
        return exceptions.exception_class_for_http_status(error.code)
    return error


def as_sent(client: Client, error: exceptions.GoogleAPICallError) -> tuple[str, str]:
    """The status name and message the emulator sent: over REST, the JSON body's `error`, which
    Google's client prefixes with "METHOD URL: " in its message."""
    if client.transport.kind == "rest":
        sent = error.response.json()["error"]
        request = error.response.request
        assert error.message == f"{request.method} {request.url}: {sent['message']}"
        assert sent["code"] == error.code
        return sent["status"], sent["message"]
    assert error.grpc_status_code is not None
    return error.grpc_status_code.name, error.message


def task_gone(tasks: tasks_v2.CloudTasksClient, name: str) -> Callable[[], None]:
    def check() -> None:
        try:
            task = tasks.get_task(name=name)
        except exceptions.NotFound as exc:
            sent = as_sent(tasks, exc)
        else:
            raise AssertionError(f"still there after {task.dispatch_count} attempt(s): {name}")
        assert sent == ("NOT_FOUND", NOT_FOUND)
    return check


def gaps(deliveries: list[Delivery]) -> list[float]:
    """Seconds from each answer to the next attempt."""
    return [later.received - (earlier.finished or float("inf"))
            for earlier, later in itertools.pairwise(deliveries)]


def make_queue(tasks: tasks_v2.CloudTasksClient, name: str, **settings: Any) -> tasks_v2.Queue:
    return tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name, **settings))


def short(name: str) -> str:
    return name.rsplit("/", 1)[1]


# -- delivery ------------------------------------------------------------------------------


def test_delivery_carries_exactly_the_cloud_tasks_headers_and_keeps_body_path_and_query(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    payload = {"order": 42, "items": ["pav", "bhaji"], "note": "caf\u00e9"}
    url = target.url(f"{prefix}/orders/42?source=emu&tag=a%20b&tag=c")
    eta = datetime.now(timezone.utc) + timedelta(seconds=0.5)  # read back as sent, both ways
    created = tasks.create_task(parent=queue_name, task=http_task(
        url, body=json.dumps(payload).encode(), schedule_time=eta,
        headers={"Content-Type": "application/json", "X-Custom": "kept", "User-Agent": "mine"},
    ))

    [delivery] = target.wait_under(prefix, finished=True)

    assert re.fullmatch(r"\d{19,20}", short(created.name))
    assert created.schedule_time == eta
    assert delivery.received >= eta.timestamp() - TOLERANCE
    assert delivery.method == "POST"
    assert delivery.path == f"{prefix}/orders/42"
    assert delivery.query == "source=emu&tag=a%20b&tag=c"
    assert json.loads(delivery.body) == payload
    headers = delivery.headers
    assert {k: v for k, v in headers.items() if k.startswith("x-cloudtasks-")} == {
        "x-cloudtasks-queuename": short(queue_name),
        "x-cloudtasks-taskname": short(created.name),
        "x-cloudtasks-taskretrycount": "0",
        "x-cloudtasks-taskexecutioncount": "0",
        "x-cloudtasks-tasketa": f"{eta.timestamp():.6f}",
    }
    assert headers["user-agent"] == "Google-Cloud-Tasks"  # the sender's is replaced
    assert headers["content-type"] == "application/json"
    assert headers["x-custom"] == "kept"
    assert set(headers) - TRANSPORT_HEADERS == CLOUD_TASKS_HEADERS | {
        "user-agent", "content-type", "x-custom"
    }
    eventually(task_gone(tasks, created.name))  # 2xx: the task is deleted


def test_http_method_is_kept_and_no_content_type_is_added(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    get = tasks.create_task(parent=queue_name, task=http_task(
        target.url(f"{prefix}/get?id=7"), http_method=tasks_v2.HttpMethod.GET))
    put = tasks.create_task(parent=queue_name, task=http_task(
        target.url(f"{prefix}/put"), http_method=tasks_v2.HttpMethod.PUT, body=b"raw bytes"))

    deliveries = target.wait_under(prefix, 2)

    # The enum comes back as sent, through JSON over REST.
    assert get.http_request.http_method == tasks_v2.HttpMethod.GET
    assert put.http_request.http_method == tasks_v2.HttpMethod.PUT
    by_method = {d.method: d for d in deliveries}
    assert set(by_method) == {"GET", "PUT"}
    assert by_method["GET"].query == "id=7"
    assert by_method["GET"].body == b""
    assert by_method["PUT"].body == b"raw bytes"
    assert "content-type" not in by_method["PUT"].headers  # the sender must set it


def test_task_scheduled_ahead_is_delivered_no_earlier(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    eta = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    created = tasks.create_task(parent=queue_name,
                                task=http_task(target.url(f"{prefix}/later"), schedule_time=eta))
    assert [t.name for t in tasks.list_tasks(parent=queue_name)] == [created.name]

    [delivery] = target.wait_under(prefix, timeout=10)

    assert delivery.received >= eta.timestamp() - TOLERANCE
    assert delivery.received < eta.timestamp() + 2.0, "delivered far too late"
    assert delivery.headers["x-cloudtasks-tasketa"] == f"{eta.timestamp():.6f}"


def test_failed_attempts_are_retried_with_backoff_and_retry_headers(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    make_queue(tasks, queue_name, retry_config=tasks_v2.RetryConfig(
        max_attempts=3, min_backoff=timedelta(seconds=0.2), max_backoff=timedelta(seconds=10)))
    created = tasks.create_task(
        parent=queue_name, task=http_task(target.url(f"{prefix}/flaky?status=503,503,200")))

    deliveries = target.wait_under(prefix, 3, timeout=15, finished=True)

    assert [d.status for d in deliveries] == [503, 503, 200]
    assert [d.headers["x-cloudtasks-taskretrycount"] for d in deliveries] == ["0", "1", "2"]
    assert [d.headers["x-cloudtasks-taskexecutioncount"] for d in deliveries] == ["0", "0", "0"]
    assert [d.headers.get("x-cloudtasks-taskpreviousresponse") for d in deliveries] == [
        None, "503", "503"
    ]
    assert [d.headers.get("x-cloudtasks-taskretryreason") for d in deliveries] == [None, "", ""]
    assert {d.task_name for d in deliveries} == {short(created.name)}
    # Backoff from each failed answer: 0.2 s, then doubled.
    waits = gaps(deliveries)
    assert waits[0] >= 0.2 - TOLERANCE
    assert waits[1] >= 0.4 - TOLERANCE
    eventually(task_gone(tasks, created.name))


def test_unlimited_attempts_retry_until_success(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    queue = make_queue(tasks, queue_name, retry_config=tasks_v2.RetryConfig(
        max_attempts=-1, min_backoff=timedelta(seconds=0.05),
        max_backoff=timedelta(seconds=0.1)))
    assert queue.retry_config.max_attempts == -1
    tasks.create_task(parent=queue_name, task=http_task(
        target.url(f"{prefix}/stubborn?status=404,429,503,302,200")))

    deliveries = target.wait_under(prefix, 5, timeout=10, finished=True)

    assert [d.status for d in deliveries] == [404, 429, 503, 302, 200]
    # 4xx and 3xx answers count as executions, 5xx do not.
    assert [d.headers["x-cloudtasks-taskexecutioncount"] for d in deliveries] == [
        "0", "1", "2", "2", "3"
    ]
    assert [d.headers.get("x-cloudtasks-taskpreviousresponse") for d in deliveries] == [
        None, "404", "429", "503", "302"
    ]


def test_slow_worker_does_not_hold_up_other_tasks(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    # Held open until the quick one is answered (a sleep raced the quick task under load).
    tasks.create_task(parent=queue_name,
                      task=http_task(target.url(f"{prefix}/slow?hold={prefix}")))
    [slow] = target.wait_under(f"{prefix}/slow")
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/quick")))

    [quick] = target.wait_under(f"{prefix}/quick", finished=True)

    assert slow.finished is None
    target.release(prefix)
    [slow] = target.wait_under(f"{prefix}/slow", finished=True)
    assert slow.status == 200
    assert quick.finished is not None
    assert quick.finished < slow.finished  # type: ignore[operator]


def test_rate_below_one_per_second_is_accepted_and_spaces_deliveries(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    queue = make_queue(tasks, queue_name,
                       rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=0.5))
    assert queue.rate_limits.max_dispatches_per_second == 0.5
    assert queue.rate_limits.max_burst_size == 1
    before = time.time()
    for i in range(2):
        tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/{i}")))

    first, second = target.wait_under(prefix, 2)

    # One token every 2 s: the second is sent 2 s after the first was, which was no earlier
    # than its create. (Not second.received - first.received: under load the first request
    # can be delayed on its way more than the second, and the gap measured shrinks.)
    assert first.received >= before - TOLERANCE
    assert second.received >= before + 2.0 - TOLERANCE


# -- names ---------------------------------------------------------------------------------


def test_named_task_is_deduplicated_before_and_after_it_ran(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    name = f"{queue_name}/tasks/order-42_v1"
    task = http_task(target.url(f"{prefix}/order"), name=name)
    created = tasks.create_task(parent=queue_name, task=task)
    assert created.name == name
    already_exists = error_over(tasks, exceptions.AlreadyExists)

    with pytest.raises(already_exists, match=ALREADY_EXISTS) as raised:
        tasks.create_task(parent=queue_name, task=task)
    assert raised.value.code == 409
    assert as_sent(tasks, raised.value) == ("ALREADY_EXISTS", ALREADY_EXISTS)
    [delivery] = target.wait_under(prefix, finished=True)
    assert delivery.task_name == "order-42_v1"
    eventually(task_gone(tasks, name))
    with pytest.raises(already_exists, match=ALREADY_EXISTS):
        tasks.create_task(parent=queue_name, task=task)

    assert len(target.under(prefix)) == 1


def test_deleted_named_task_stays_reserved(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    task = http_task(target.url(f"{prefix}/x"), name=f"{queue_name}/tasks/once",
                     schedule_time=later)
    tasks.create_task(parent=queue_name, task=task)
    tasks.delete_task(name=task.name)

    with pytest.raises(exceptions.AlreadyExists, match=ALREADY_EXISTS):
        tasks.create_task(parent=queue_name, task=task)


# -- queue state and task RPCs ---------------------------------------------------------


def test_paused_queue_holds_tasks_until_resumed(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    make_queue(tasks, queue_name)
    assert tasks.pause_queue(name=queue_name).state == tasks_v2.Queue.State.PAUSED
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/held")))

    # The one real-time wait for nothing: the emulator's own clock and timers. Every other
    # "nothing arrives" check runs on a virtual clock (test_emulator_virtual_clock.py).
    time.sleep(1.0)
    assert target.under(prefix) == []
    assert tasks.get_queue(name=queue_name).state == tasks_v2.Queue.State.PAUSED
    assert len(list(tasks.list_tasks(parent=queue_name))) == 1

    assert tasks.resume_queue(name=queue_name).state == tasks_v2.Queue.State.RUNNING
    [delivery] = target.wait_under(prefix)
    assert delivery.headers["x-cloudtasks-taskretrycount"] == "0"


def test_purge_removes_every_pending_task(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    make_queue(tasks, queue_name)
    assert tasks.pause_queue(name=queue_name).state == tasks_v2.Queue.State.PAUSED
    for i in range(3):
        tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/old/{i}")))
    assert len(list(tasks.list_tasks(parent=queue_name))) == 3

    purged = tasks.purge_queue(name=queue_name)

    assert purged.purge_time.timestamp() == pytest.approx(time.time(), abs=5)
    assert list(tasks.list_tasks(parent=queue_name)) == []
    assert tasks.resume_queue(name=queue_name).state == tasks_v2.Queue.State.RUNNING
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/new")))
    target.wait_under(f"{prefix}/new")
    # The purged ones were due first. That none is ever sent: test_emulator_virtual_clock.py.
    assert target.under(f"{prefix}/old") == []


def test_run_task_delivers_a_paused_queues_task_now(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    make_queue(tasks, queue_name)
    tasks.pause_queue(name=queue_name)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    created = tasks.create_task(parent=queue_name,
                                task=http_task(target.url(f"{prefix}/forced"), schedule_time=later))

    ran = tasks.run_task(name=created.name)

    assert ran.name == created.name
    [delivery] = target.wait_under(prefix, finished=True)
    assert delivery.task_name == short(created.name)
    assert delivery.headers["x-cloudtasks-taskretrycount"] == "0"
    eventually(task_gone(tasks, created.name))
    assert tasks.get_queue(name=queue_name).state == tasks_v2.Queue.State.PAUSED
    with pytest.raises(exceptions.NotFound, match=re.escape(NOT_FOUND)):
        tasks.run_task(name=created.name)


def test_get_and_list_show_the_body_only_in_the_full_view_and_delete_removes(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    make_queue(tasks, queue_name)
    tasks.pause_queue(name=queue_name)
    body = b'{"big": "payload"}'
    created = tasks.create_task(parent=queue_name,
                                task=http_task(target.url(f"{prefix}/x"), body=body))
    full = tasks_v2.Task.View.FULL

    basic = tasks.get_task(name=created.name)
    assert basic.view == tasks_v2.Task.View.BASIC
    assert basic.http_request.body == b""
    assert basic.http_request.url == target.url(f"{prefix}/x")
    got = tasks.get_task(request={"name": created.name, "response_view": full})
    assert got.view == full
    assert got.http_request.body == body
    [listed] = tasks.list_tasks(parent=queue_name)
    assert (listed.name, listed.http_request.body) == (created.name, b"")
    [listed] = tasks.list_tasks(request={"parent": queue_name, "response_view": full})
    assert listed.http_request.body == body

    tasks.delete_task(name=created.name)

    with pytest.raises(exceptions.NotFound, match=re.escape(NOT_FOUND)):
        tasks.get_task(name=created.name)
    with pytest.raises(exceptions.NotFound, match=re.escape(NOT_FOUND)):
        tasks.delete_task(name=created.name)
    assert list(tasks.list_tasks(parent=queue_name)) == []


def test_list_tasks_pages(tasks_over: tasks_v2.CloudTasksClient, target: Target,
                          queue_name: str, prefix: str) -> None:
    tasks = tasks_over
    make_queue(tasks, queue_name)
    tasks.pause_queue(name=queue_name)
    names = {tasks.create_task(parent=queue_name,
                               task=http_task(target.url(f"{prefix}/{i}"))).name
             for i in range(7)}

    pages = list(tasks.list_tasks(request={"parent": queue_name, "page_size": 3}).pages)

    assert [len(page.tasks) for page in pages] == [3, 3, 1]
    assert {t.name for page in pages for t in page.tasks} == names
    tasks.purge_queue(name=queue_name)


def test_queue_lifecycle(tasks_over: tasks_v2.CloudTasksClient, target: Target,
                         queue_name: str, prefix: str) -> None:
    tasks = tasks_over
    created = make_queue(tasks, queue_name, rate_limits=tasks_v2.RateLimits(
        max_dispatches_per_second=20, max_concurrent_dispatches=3))
    assert created.state == tasks_v2.Queue.State.RUNNING
    assert created.retry_config.max_attempts == 100  # Cloud Tasks' defaults filled in
    assert created.retry_config.min_backoff == timedelta(seconds=0.1)  # REST: a JSON string
    with pytest.raises(error_over(tasks, exceptions.AlreadyExists), match="Queue already exists"):
        make_queue(tasks, queue_name)
    assert tasks.get_queue(name=queue_name) == created
    assert queue_name in {q.name for q in tasks.list_queues(parent=LOCATION)}

    updated = tasks.update_queue(
        queue=tasks_v2.Queue(name=queue_name,
                             rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7)),
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 7
    assert updated.rate_limits.max_concurrent_dispatches == 3  # outside the mask: kept
    assert tasks.get_queue(name=queue_name).rate_limits.max_dispatches_per_second == 7

    tasks.delete_queue(name=queue_name)

    with pytest.raises(exceptions.NotFound, match=re.escape(NOT_FOUND)):
        tasks.get_queue(name=queue_name)
    with pytest.raises(exceptions.NotFound, match=re.escape(QUEUE_MISSING)):
        tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/x")))


# -- bad input: answered with the right status, the server keeps serving -----------------

BAD_CALLS: list[tuple[str, type[Exception], str, Callable[[tasks_v2.CloudTasksClient, str],
                                                            object]]] = [
    ("purge-unknown-queue", exceptions.NotFound, NOT_FOUND,
     lambda c, q: c.purge_queue(name=q + "-missing")),
    ("pause-unknown-queue", exceptions.NotFound, NOT_FOUND,
     lambda c, q: c.pause_queue(name=q + "-missing")),
    ("resume-unknown-queue", exceptions.NotFound, NOT_FOUND,
     lambda c, q: c.resume_queue(name=q + "-missing")),
    ("delete-unknown-queue", exceptions.NotFound, NOT_FOUND,
     lambda c, q: c.delete_queue(name=q + "-missing")),
    ("list-tasks-unknown-queue", exceptions.NotFound, "Queue does not exist",
     lambda c, q: list(c.list_tasks(parent=q + "-missing"))),
    ("queue-id-with-underscore", exceptions.InvalidArgument, "letters, numbers and hyphens",
     lambda c, q: c.create_queue(parent=LOCATION,
                                 queue=tasks_v2.Queue(name=f"{LOCATION}/queues/bad_id"))),
    ("queue-in-other-location", exceptions.InvalidArgument, "must be",
     lambda c, q: c.create_queue(parent="projects/p/locations/elsewhere",
                                 queue=tasks_v2.Queue(name=q + "-new"))),
    ("task-to-queue-id-with-underscore", exceptions.InvalidArgument, "Invalid parent",
     lambda c, q: c.create_task(parent=f"{LOCATION}/queues/bad_id",
                                task=http_task("http://127.0.0.1:9/x"))),
    ("negative-rate", exceptions.InvalidArgument, "max_dispatches_per_second",
     lambda c, q: c.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
         name=q + "-new", rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=-1)))),
    ("too-many-concurrent", exceptions.InvalidArgument, "max_concurrent_dispatches",
     lambda c, q: c.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
         name=q + "-new", rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=100000)))),
    ("max-attempts-below-minus-one", exceptions.InvalidArgument, "max_attempts",
     lambda c, q: c.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
         name=q + "-new", retry_config=tasks_v2.RetryConfig(max_attempts=-2)))),
    ("min-backoff-above-max", exceptions.InvalidArgument, "min_backoff",
     lambda c, q: c.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
         name=q + "-new", retry_config=tasks_v2.RetryConfig(min_backoff=timedelta(seconds=10),
                                                  max_backoff=timedelta(seconds=1))))),
    ("url-without-scheme", exceptions.InvalidArgument, "must start with 'http://'",
     lambda c, q: c.create_task(parent=q, task=http_task("ftp://127.0.0.1/x"))),
    ("bad-task-id", exceptions.InvalidArgument, "TASK_ID",
     lambda c, q: c.create_task(parent=q, task=http_task("http://127.0.0.1:9/x",
                                                          name=f"{q}/tasks/no spaces"))),
    ("task-name-in-other-queue", exceptions.InvalidArgument, "must equal the parent",
     lambda c, q: c.create_task(parent=q, task=http_task(
         "http://127.0.0.1:9/x", name=f"{LOCATION}/queues/other/tasks/t"))),
    ("body-on-get", exceptions.InvalidArgument, "Body can only be set",
     lambda c, q: c.create_task(parent=q, task=http_task(
         "http://127.0.0.1:9/x", body=b"x", http_method=tasks_v2.HttpMethod.GET))),
    ("short-dispatch-deadline", exceptions.InvalidArgument, "dispatch_deadline",
     lambda c, q: c.create_task(parent=q, task=http_task(
         "http://127.0.0.1:9/x", dispatch_deadline=timedelta(seconds=5)))),
    ("schedule-beyond-30-days", exceptions.InvalidArgument, "30 days",
     lambda c, q: c.create_task(parent=q, task=http_task(
         "http://127.0.0.1:9/x",
         schedule_time=datetime.now(timezone.utc) + timedelta(days=31)))),
    ("reserved-header", exceptions.InvalidArgument, "reserved",
     lambda c, q: c.create_task(parent=q, task=http_task(
         "http://127.0.0.1:9/x", headers={"X-Google-Thing": "1"}))),
    ("no-http-request", exceptions.InvalidArgument, "http_request",
     lambda c, q: c.create_task(parent=q, task=tasks_v2.Task())),
    ("get-unknown-task", exceptions.NotFound, NOT_FOUND,
     lambda c, q: c.get_task(name=f"{q}/tasks/nothing")),
    ("run-unknown-task", exceptions.NotFound, NOT_FOUND,
     lambda c, q: c.run_task(name=f"{q}/tasks/nothing")),
]


@pytest.mark.parametrize(("call", "error", "message"),
                         [pytest.param(c, e, m, id=i) for i, e, m, c in BAD_CALLS])
def test_bad_input_is_answered_and_the_server_keeps_serving(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str, call: Callable[[tasks_v2.CloudTasksClient, str], object],
    error: type[Exception], message: str,
) -> None:
    make_queue(tasks, queue_name)

    with pytest.raises(error, match=re.escape(message)):
        call(tasks, queue_name)

    assert emulator.alive()
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/after")))
    [delivery] = target.wait_under(prefix)
    assert delivery.headers["x-cloudtasks-queuename"] == short(queue_name)


def test_a_request_that_cannot_be_sent_is_a_failed_attempt_not_a_stuck_task(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str,
) -> None:
    # A valid URL no request reaches (what could never be sent is refused at create: see
    # test_emulator_bad_input.py).
    make_queue(tasks, queue_name, retry_config=tasks_v2.RetryConfig(
        max_attempts=2, min_backoff=timedelta(seconds=0.05), max_backoff=timedelta(seconds=0.1)))
    created = tasks.create_task(parent=queue_name, task=http_task(
        "http://unresolvable.invalid/x"))

    # Two attempts without a response, then dropped: it must not stay "in flight" forever.
    eventually(task_gone(tasks, created.name), timeout=20)  # two name lookups: DNS may be slow

    assert emulator.alive()
    assert target.under(prefix) == []
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/ok")))
    target.wait_under(prefix)


def test_settings_the_go_emulator_chokes_on_are_accepted(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str,
) -> None:
    slow = make_queue(tasks, f"{queue_name}-slow",
                      rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=0.5))
    unlimited = make_queue(tasks, f"{queue_name}-unlimited",
                           retry_config=tasks_v2.RetryConfig(max_attempts=-1))

    assert slow.rate_limits.max_dispatches_per_second == 0.5
    assert tasks.get_queue(name=slow.name).rate_limits.max_dispatches_per_second == 0.5
    assert unlimited.retry_config.max_attempts == -1
    assert tasks.get_queue(name=unlimited.name).retry_config.max_attempts == -1
    assert emulator.alive()
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/normal")))
    target.wait_under(prefix)


# -- OIDC ------------------------------------------------------------------------------


def _jwt_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def test_oidc_token_verifies_against_the_emulator_certificates(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str,
) -> None:
    make_queue(tasks, queue_name, retry_config=tasks_v2.RetryConfig(max_attempts=1))
    fixed_url = target.url(f"/secure/fixed{prefix}/audit")
    default_url = target.url(f"/secure/url{prefix}/audit?user=7")
    tasks.create_task(parent=queue_name, task=http_task(fixed_url, oidc_token=tasks_v2.OidcToken(
        service_account_email=SERVICE_ACCOUNT, audience=FIXED_AUDIENCE)))
    tasks.create_task(parent=queue_name, task=http_task(default_url, oidc_token=tasks_v2.OidcToken(
        service_account_email=SERVICE_ACCOUNT)))  # audience: the full task URL

    deliveries = target.wait_for(lambda d: prefix in d.path, 2, timeout=10, finished=True)

    by_path: dict[str, Delivery] = {d.path.split("/")[2]: d for d in deliveries}
    for kind, audience in [("fixed", FIXED_AUDIENCE), ("url", default_url)]:
        delivery = by_path[kind]
        assert delivery.auth_error is None
        assert delivery.status == 200
        assert delivery.headers["authorization"].startswith("Bearer ")
        claims = delivery.claims
        assert claims is not None
        assert claims["aud"] == audience
        assert claims["email"] == SERVICE_ACCOUNT
        assert claims["email_verified"] is True
        assert claims["iss"] == "https://accounts.google.com"
        assert 3500 <= claims["exp"] - claims["iat"] <= 3700

    token = by_path["fixed"].headers["authorization"].removeprefix("Bearer ")
    header = _jwt_header(token)
    assert header["alg"] == "RS256"
    with httpx.Client(timeout=5) as http:
        pem = http.get(emulator.certs_url)
        jwks = http.get(f"http://{emulator.host}:{emulator.http_port}/oauth2/v3/certs")
        missing = http.get(f"http://{emulator.host}:{emulator.http_port}/nothing")
    assert pem.status_code == 200
    assert pem.json()[header["kid"]].startswith("-----BEGIN CERTIFICATE-----")
    assert "max-age=" in pem.headers["cache-control"]
    assert jwks.status_code == 200
    [key] = jwks.json()["keys"]
    assert (key["kid"], key["kty"], key["alg"]) == (header["kid"], "RSA", "RS256")
    assert missing.status_code == 404


# -- Cloud Scheduler -------------------------------------------------------------------


def http_job(name: str, uri: str, **settings: Any) -> scheduler_v1.Job:
    body = settings.pop("body", b"")
    return scheduler_v1.Job(
        name=name, schedule=settings.pop("schedule", FAR_FUTURE),
        http_target=scheduler_v1.HttpTarget(uri=uri, body=body,
                                            http_method=scheduler_v1.HttpMethod.POST),
        **settings,
    )


def test_run_job_delivers_with_the_cloud_scheduler_headers(
    scheduler_over: scheduler_v1.CloudSchedulerClient, target: Target, ident: str, prefix: str
) -> None:
    scheduler = scheduler_over
    name = f"{LOCATION}/jobs/{ident}"
    created = scheduler.create_job(parent=LOCATION, job=http_job(
        name, target.url(f"{prefix}/cron?from=scheduler"), body=b"tick",
        time_zone="Asia/Kolkata", retry_config=scheduler_v1.RetryConfig(retry_count=2)))
    assert created.state == scheduler_v1.Job.State.ENABLED
    assert created.schedule_time > datetime.now(timezone.utc) + timedelta(days=1)
    assert scheduler.get_job(name=name).retry_config.retry_count == 2
    with pytest.raises(error_over(scheduler, exceptions.AlreadyExists)):
        scheduler.create_job(parent=LOCATION, job=http_job(name, target.url(prefix)))

    before = datetime.now(timezone.utc)
    scheduler.run_job(name=name)
    [delivery] = target.wait_under(prefix, finished=True)

    assert (delivery.method, delivery.path, delivery.query) == (
        "POST", f"{prefix}/cron", "from=scheduler")
    assert delivery.body == b"tick"
    headers = delivery.headers
    assert headers["x-cloudscheduler"] == "true"
    assert headers["x-cloudscheduler-jobname"] == ident
    assert headers["user-agent"] == "Google-Cloud-Scheduler"
    assert headers["content-type"] == "application/octet-stream"
    assert not any(k.startswith("x-cloudtasks-") for k in headers)
    when = datetime.fromisoformat(headers["x-cloudscheduler-scheduletime"])
    assert when.utcoffset() == timedelta(hours=5, minutes=30)  # the job's time zone
    assert before - timedelta(seconds=1) <= when <= datetime.now(timezone.utc)

    def attempted() -> None:
        job = scheduler.get_job(name=name)
        assert job.last_attempt_time is not None  # the emulator may not have read the answer yet
        assert job.last_attempt_time >= before - timedelta(seconds=1)
        assert job.status.code == 0
    eventually(attempted)
    assert [j.name for j in scheduler.list_jobs(parent=LOCATION) if j.name == name] == [name]
    scheduler.delete_job(name=name)
    with pytest.raises(exceptions.NotFound):
        scheduler.get_job(name=name)


def test_a_failed_job_run_is_retried_with_the_same_schedule_time(
    scheduler: scheduler_v1.CloudSchedulerClient, target: Target, ident: str, prefix: str
) -> None:
    name = f"{LOCATION}/jobs/{ident}"
    scheduler.create_job(parent=LOCATION, job=http_job(
        name, target.url(f"{prefix}/flaky?status=503,500,200"),
        retry_config=scheduler_v1.RetryConfig(
            retry_count=2, min_backoff_duration=timedelta(seconds=0.2),
            max_backoff_duration=timedelta(seconds=5))))

    scheduler.run_job(name=name)
    deliveries = target.wait_under(prefix, 3, timeout=10, finished=True)

    assert [d.status for d in deliveries] == [503, 500, 200]
    assert len({d.headers["x-cloudscheduler-scheduletime"] for d in deliveries}) == 1
    waits = gaps(deliveries)
    assert waits[0] >= 0.2 - TOLERANCE
    assert waits[1] >= 0.4 - TOLERANCE
    eventually(lambda: _assert_status_ok(scheduler, name))
    scheduler.delete_job(name=name)


def _assert_status_ok(scheduler: scheduler_v1.CloudSchedulerClient, name: str) -> None:
    assert scheduler.get_job(name=name).status.code == 0


@pytest.mark.parametrize(("schedule", "time_zone"), [
    ("61 * * * *", "UTC"),
    ("* * * *", "UTC"),
    ("0 9 * * 1#2", "UTC"),
    ("0 9 * * *", "Mars/Olympus_Mons"),
])
def test_invalid_schedule_or_time_zone_is_rejected(
    emulator: EmulatorProcess, scheduler: scheduler_v1.CloudSchedulerClient, target: Target,
    ident: str, schedule: str, time_zone: str,
) -> None:
    name = f"{LOCATION}/jobs/{ident}"
    job = http_job(name, target.url(f"/{ident}"), schedule=schedule, time_zone=time_zone)

    with pytest.raises(exceptions.InvalidArgument, match=re.escape(BAD_SCHEDULE)):
        scheduler.create_job(parent=LOCATION, job=job)

    assert emulator.alive()
    with pytest.raises(exceptions.NotFound):
        scheduler.get_job(name=name)


def test_pause_and_resume_follow_the_state_rules_and_update_keeps_the_state(
    scheduler_over: scheduler_v1.CloudSchedulerClient, target: Target, ident: str, prefix: str
) -> None:
    scheduler = scheduler_over
    name = f"{LOCATION}/jobs/{ident}"
    scheduler.create_job(parent=LOCATION,
                         job=http_job(name, target.url(prefix), time_zone="Asia/Kolkata"))
    paused = scheduler_v1.Job.State.PAUSED
    failed_precondition = error_over(scheduler, exceptions.FailedPrecondition)

    assert scheduler.pause_job(name=name).state == paused
    with pytest.raises(failed_precondition, match="Only an ENABLED job can be paused"):
        scheduler.pause_job(name=name)
    assert scheduler.resume_job(name=name).state == scheduler_v1.Job.State.ENABLED
    with pytest.raises(failed_precondition, match="Only a PAUSED job can be resumed"):
        scheduler.resume_job(name=name)
    scheduler.pause_job(name=name)

    updated = scheduler.update_job(
        job=scheduler_v1.Job(name=name, schedule="30 6 * * *", description="new",
                             time_zone="UTC"),
        update_mask=field_mask_pb2.FieldMask(paths=["schedule", "description"]),
    )

    assert (updated.state, updated.schedule, updated.description, updated.time_zone) == (
        paused, "30 6 * * *", "new", "Asia/Kolkata")  # time_zone is outside the mask
    assert scheduler.get_job(name=name).state == paused
    with pytest.raises(error_over(scheduler, exceptions.InvalidArgument),
                       match=re.escape(BAD_SCHEDULE)):
        scheduler.update_job(job=scheduler_v1.Job(name=name, schedule="not cron"),
                             update_mask=field_mask_pb2.FieldMask(paths=["schedule"]))
    assert scheduler.get_job(name=name).schedule == "30 6 * * *"
    with pytest.raises(exceptions.NotFound):
        scheduler.update_job(job=scheduler_v1.Job(name=f"{name}-missing", description="x"))
    with pytest.raises(exceptions.NotFound):
        scheduler.pause_job(name=f"{name}-missing")
    assert target.under(prefix) == []


# -- async clients ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_clients_create_and_get(
    emulator: EmulatorProcess, target: Target, queue_name: str, ident: str, prefix: str
) -> None:
    tasks = emulator_async_client(emulator.address)
    scheduler = emulator_scheduler_async_client(emulator.address)
    try:
        created = await tasks.create_task(parent=queue_name, task=http_task(
            target.url(f"{prefix}/async"), body=b"async"))
        queue = await tasks.get_queue(name=queue_name)
        job = await scheduler.create_job(parent=LOCATION, job=http_job(
            f"{LOCATION}/jobs/{ident}", target.url(f"{prefix}/job")))
        got_job = await scheduler.get_job(name=job.name)
        [delivery] = await asyncio.to_thread(target.wait_under, f"{prefix}/async")
        with pytest.raises(exceptions.AlreadyExists):
            await tasks.create_task(parent=queue_name, task=http_task(
                target.url(f"{prefix}/async"), name=created.name))
    finally:
        await tasks.transport.close()
        await scheduler.transport.close()

    assert queue.name == queue_name
    assert got_job.name == job.name
    assert got_job.state == scheduler_v1.Job.State.ENABLED
    assert delivery.task_name == short(created.name)
    assert delivery.body == b"async"


def test_batch_create_delivers_every_task_and_rejects_a_bad_batch_whole(
    tasks_over: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str
) -> None:
    tasks = tasks_over
    requests = [
        tasks_v2.CreateTaskRequest(parent=queue_name, task=http_task(target.url(f"{prefix}/b")))
        for _ in range(20)
    ]
    operation = tasks.batch_create_tasks(parent=queue_name, requests=requests)

    assert operation.done()  # the emulator answers with a finished operation
    result = operation.result(timeout=10)
    assert isinstance(result, tasks_v2.BatchCreateTasksResponse)
    assert len({t.name for t in result.tasks}) == 20
    assert len(target.wait_under(prefix, count=20, finished=True)) == 20
    # Answered is not yet recorded: the emulator deletes each task once it reads the answer.
    eventually(lambda: _assert_no_tasks(tasks, queue_name))

    duplicate = f"{queue_name}/tasks/same"
    bad = [
        tasks_v2.CreateTaskRequest(parent=queue_name, task=http_task(target.url("/x"), name=name))
        for name in (duplicate, duplicate)
    ]
    with pytest.raises(error_over(tasks, exceptions.InvalidArgument), match="same task twice"):
        tasks.batch_create_tasks(parent=queue_name, requests=bad)
    _assert_no_tasks(tasks, queue_name)


def _assert_no_tasks(tasks: tasks_v2.CloudTasksClient, queue_name: str) -> None:
    assert list(tasks.list_tasks(parent=queue_name)) == []
