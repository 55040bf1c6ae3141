"""Hostile input against the emulator: Google's real clients over gRPC and REST, raw HTTP for
what they never send, and an emulator in this process to inject a failure into one delivery.

One bad request never stops the server: each is refused as INVALID_ARGUMENT (never INTERNAL
with a traceback in the log), what no HTTP request could carry is refused at create instead
of being retried 100 times, and a failure inside one delivery costs that attempt alone while
every other queue's tasks are still delivered. The rules themselves are the engine's
(tests/engine/test_bad_input.py); this proves both surfaces reach them and the process
serves on. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from emulator_support import LOCATION, SERVICE_ACCOUNT, EmulatorProcess, Target, http_task
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks import emulator_async_client
from fastapi_cloud_tasks.emulator.server import Emulator
from fastapi_cloud_tasks.engine.cloud_tasks import DispatchError

Client = tasks_v2.CloudTasksClient | scheduler_v1.CloudSchedulerClient
HUGE = 2**62  # seconds: outside both Timestamp's and Duration's range
FAR_FUTURE = "0 0 1 1 *"
WAIT = 10.0


def invalid_argument(client: Client, call: Callable[[], object]) -> str:
    """The message of the INVALID_ARGUMENT answer to `call`, over either transport (REST:
    Google's client raises BadRequest, and the JSON error body names the status)."""
    with pytest.raises(exceptions.BadRequest) as raised:
        call()
    if client.transport.kind == "rest":
        error = raised.value.response.json()["error"]
        assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
        return str(error["message"])
    assert isinstance(raised.value, exceptions.InvalidArgument)
    return str(raised.value.message)


@pytest.fixture
def no_traceback(emulator: EmulatorProcess) -> Iterator[None]:
    """The emulator logs no traceback (an INTERNAL answer) while the test runs."""
    before = len(emulator.log())
    yield
    assert "Traceback" not in emulator.log()[before:]
    assert emulator.alive()


def delivered_after(tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str,
                    prefix: str) -> None:
    """The emulator still delivers: a good task to `queue_name` arrives."""
    tasks.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/after")))
    target.wait_under(f"{prefix}/after")


def with_method(task: tasks_v2.Task, value: int) -> tasks_v2.Task:
    """`task` with an HttpMethod no enum member has (protobuf enums are open)."""
    tasks_v2.Task.pb(task).http_request.http_method = value
    return task


# -- refused at create: what no request could carry ----------------------------------------


UNSENDABLE_TASKS = [
    pytest.param(lambda url: with_method(http_task(url), 99), "http_method 99",
                 id="unknown-http-method"),
    pytest.param(lambda url: http_task("http://127.0.0.1:99999/x"), "is not a valid URL",
                 id="port-out-of-range"),
    pytest.param(lambda url: http_task("http://bad host/x"), "is not a valid URL",
                 id="space-in-host"),
    pytest.param(lambda url: http_task(url, headers={"X-Note": "caf\u00e9"}), "X-Note",
                 id="non-ascii-header-value"),
    pytest.param(lambda url: http_task(url, headers={"X-Note": "a\r\nX-Injected: b"}),
                 "X-Note", id="crlf-in-header-value"),
    pytest.param(lambda url: http_task(url, headers={"X Note": "1"}), "'X Note'",
                 id="space-in-header-name"),
]


@pytest.mark.usefixtures("no_traceback")
@pytest.mark.parametrize(("make", "named"), UNSENDABLE_TASKS)
def test_a_task_no_request_could_carry_is_refused_at_create(
    tasks_over: tasks_v2.CloudTasksClient, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str, make: Callable[[str], tasks_v2.Task], named: str,
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))

    message = invalid_argument(tasks_over, lambda: tasks_over.create_task(
        parent=queue_name, task=make(target.url(f"{prefix}/bad"))))

    assert named in message
    assert list(tasks.list_tasks(parent=queue_name)) == []
    delivered_after(tasks, target, queue_name, prefix)
    assert target.under(f"{prefix}/bad") == []


@pytest.mark.usefixtures("no_traceback")
@pytest.mark.parametrize(("target_settings", "named"), [
    pytest.param({"uri": "http://127.0.0.1:99999/x"}, "is not a valid URL", id="port"),
    pytest.param({"headers": {"X-Note": "a\nb"}}, "X-Note", id="lf-in-header-value"),
    pytest.param({"headers": {"X Note": "1"}}, "'X Note'", id="space-in-header-name"),
    pytest.param({"http_method": 99}, "http_method 99", id="unknown-http-method"),
])
def test_a_job_no_request_could_carry_is_refused_at_create(
    scheduler_over: scheduler_v1.CloudSchedulerClient, ident: str,
    target_settings: dict[str, Any], named: str,
) -> None:
    job = scheduler_v1.Job(name=f"{LOCATION}/jobs/{ident}", schedule=FAR_FUTURE,
                           http_target=scheduler_v1.HttpTarget(uri="http://127.0.0.1:9/x"))
    raw = scheduler_v1.Job.pb(job).http_target
    for key, value in target_settings.items():
        if key == "headers":
            raw.headers.update(value)
        else:
            setattr(raw, key, value)

    message = invalid_argument(scheduler_over, lambda: scheduler_over.create_job(
        parent=LOCATION, job=job))

    assert named in message
    with pytest.raises(exceptions.NotFound):
        scheduler_over.get_job(name=job.name)


# -- INVALID_ARGUMENT, not INTERNAL --------------------------------------------------------


def out_of_range_task(path: str, **values: int) -> Callable[[str, str], tasks_v2.Task]:
    def make(url: str, queue_name: str) -> tasks_v2.Task:
        task = http_task(url)
        message = tasks_v2.Task.pb(task)
        for part in path.split("."):
            message = getattr(message, part)
        for name, value in values.items():
            setattr(message, name, value)
        return task
    return make


@pytest.mark.usefixtures("no_traceback")
@pytest.mark.parametrize(("make", "named"), [
    pytest.param(out_of_range_task("schedule_time", seconds=HUGE), "task.schedule_time",
                 id="timestamp-huge"),
    pytest.param(out_of_range_task("schedule_time", seconds=-HUGE), "task.schedule_time",
                 id="timestamp-negative"),
    pytest.param(out_of_range_task("schedule_time", nanos=2_000_000_000), "task.schedule_time",
                 id="timestamp-nanos"),
    pytest.param(out_of_range_task("dispatch_deadline", seconds=HUGE), "task.dispatch_deadline",
                 id="dispatch-deadline"),
])
def test_a_time_out_of_range_is_invalid_argument_over_grpc(
    tasks: tasks_v2.CloudTasksClient, target: Target, queue_name: str, prefix: str,
    make: Callable[[str, str], tasks_v2.Task], named: str,
) -> None:
    """gRPC only: Google's REST client cannot even write such a value as JSON."""
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))

    message = invalid_argument(tasks, lambda: tasks.create_task(
        parent=queue_name, task=make(target.url(f"{prefix}/bad"), queue_name)))

    assert message.startswith(f"{named} (seconds=")
    delivered_after(tasks, target, queue_name, prefix)


@pytest.mark.usefixtures("no_traceback")
def test_durations_out_of_range_on_queues_and_jobs_are_invalid_argument_over_grpc(
    tasks: tasks_v2.CloudTasksClient, scheduler: scheduler_v1.CloudSchedulerClient,
    queue_name: str, ident: str,
) -> None:
    queue = tasks_v2.Queue(name=queue_name)
    tasks_v2.Queue.pb(queue).retry_config.max_backoff.seconds = HUGE
    job = scheduler_v1.Job(name=f"{LOCATION}/jobs/{ident}", schedule=FAR_FUTURE,
                           http_target=scheduler_v1.HttpTarget(uri="http://127.0.0.1:9/x"))
    scheduler_v1.Job.pb(job).attempt_deadline.seconds = HUGE
    backoff = scheduler_v1.Job(job)
    backoff.attempt_deadline = timedelta(minutes=1)
    scheduler_v1.Job.pb(backoff).retry_config.max_backoff_duration.seconds = HUGE

    assert "queue.retry_config.max_backoff" in invalid_argument(
        tasks, lambda: tasks.create_queue(parent=LOCATION, queue=queue))
    assert "queue.retry_config.max_backoff" in invalid_argument(
        tasks, lambda: tasks.update_queue(queue=queue))
    assert "job.attempt_deadline" in invalid_argument(
        scheduler, lambda: scheduler.create_job(parent=LOCATION, job=job))
    assert "job.retry_config.max_backoff_duration" in invalid_argument(
        scheduler, lambda: scheduler.create_job(parent=LOCATION, job=backoff))


@pytest.mark.usefixtures("no_traceback")
@pytest.mark.parametrize("path", ["no_such_field", "rate_limits.bogus"])
def test_an_update_mask_path_naming_no_field_is_invalid_argument(
    tasks_over: tasks_v2.CloudTasksClient, queue_name: str, path: str
) -> None:
    tasks_over.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    message = invalid_argument(tasks_over, lambda: tasks_over.update_queue(
        queue=tasks_v2.Queue(name=queue_name),
        update_mask=field_mask_pb2.FieldMask(paths=[path])))
    assert message.startswith(f"Unknown field in update_mask: {path!r}.")


@pytest.mark.usefixtures("no_traceback")
def test_update_mask_paths_in_camel_case_over_grpc_and_update_job_deep_paths_are_refused(
    tasks: tasks_v2.CloudTasksClient, scheduler: scheduler_v1.CloudSchedulerClient,
    queue_name: str, ident: str,
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    job = scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{ident}", schedule=FAR_FUTURE,
        http_target=scheduler_v1.HttpTarget(uri="http://127.0.0.1:9/x")))

    assert "'rateLimits'" in invalid_argument(tasks, lambda: tasks.update_queue(
        queue=tasks_v2.Queue(name=queue_name),
        update_mask=field_mask_pb2.FieldMask(paths=["rateLimits"])))
    assert "'retry_config.bogus'" in invalid_argument(scheduler, lambda: scheduler.update_job(
        job=job, update_mask=field_mask_pb2.FieldMask(paths=["retry_config.bogus"])))
    scheduler.delete_job(name=job.name)


@pytest.mark.usefixtures("no_traceback")
@pytest.mark.parametrize("listing", ["queues", "tasks", "jobs"])
@pytest.mark.parametrize("bad", [{"page_size": -1}, {"page_token": "-1"}],
                         ids=["negative-page-size", "foreign-page-token"])
def test_a_bad_page_size_or_token_is_invalid_argument(
    tasks_over: tasks_v2.CloudTasksClient, request: pytest.FixtureRequest, queue_name: str,
    listing: str, bad: dict[str, Any],
) -> None:
    tasks_over.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    client: Client = tasks_over
    if listing == "jobs":  # the Cloud Scheduler client on the same transport
        client = request.getfixturevalue(
            "rest_scheduler" if tasks_over.transport.kind == "rest" else "scheduler")
    requests: dict[str, Callable[[], Any]] = {
        "queues": lambda: tasks_over.list_queues(
            request=tasks_v2.ListQueuesRequest(parent=LOCATION, **bad)),
        "tasks": lambda: tasks_over.list_tasks(
            request=tasks_v2.ListTasksRequest(parent=queue_name, **bad)),
        "jobs": lambda: client.list_jobs(  # type: ignore[union-attr]
            request=scheduler_v1.ListJobsRequest(parent=LOCATION, **bad)),
    }

    message = invalid_argument(client, lambda: next(iter(requests[listing]())))
    assert message.startswith(("page_size must not be negative", "Invalid page_token '-1'"))


# -- REST: what Google's client never sends ------------------------------------------------


@pytest.fixture
def plain_http(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{emulator.host}:{emulator.http_port}",
                      timeout=WAIT) as client:
        yield client


@pytest.mark.usefixtures("no_traceback")
@pytest.mark.parametrize("body", [
    pytest.param(b'{"task": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", id="arrays"),
    pytest.param(b'{"task": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
                 id="objects"),
])
def test_json_nested_50000_deep_is_400_invalid_argument(
    plain_http: httpx.Client, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str, body: bytes,
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))

    response = plain_http.post(f"/v2/{queue_name}/tasks", content=body,
                               headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid JSON payload received. It is nested too deeply")
    delivered_after(tasks, target, queue_name, prefix)


@pytest.mark.usefixtures("no_traceback")
def test_an_unknown_http_method_number_in_json_is_400_invalid_argument(
    plain_http: httpx.Client, tasks: tasks_v2.CloudTasksClient, target: Target,
    queue_name: str, prefix: str,
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))

    response = plain_http.post(f"/v2/{queue_name}/tasks", content=json.dumps({"task": {
        "httpRequest": {"url": target.url(f"{prefix}/bad"), "httpMethod": 99}}}))

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("HttpRequest.http_method 99 ")
    delivered_after(tasks, target, queue_name, prefix)
    assert target.under(f"{prefix}/bad") == []


# -- one failing delivery costs that attempt alone -----------------------------------------


@pytest.mark.asyncio
async def test_a_failure_inside_one_delivery_fails_that_attempt_and_other_queues_go_on(
    target: Target, queue_name: str, prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an emulator in this process whose token issuer breaks (a bug inside building
    # one task's request), and a task that needs a token queued before another queue's task.
    emulator = Emulator("127.0.0.1", 0, http_port=0)

    def broken(**_: Any) -> str:
        raise RuntimeError("injected: the token issuer broke")

    monkeypatch.setattr(emulator.tokens, "id_token", broken)
    await emulator.start()
    client = emulator_async_client(f"127.0.0.1:{emulator.port}")
    try:
        for name in (queue_name, f"{queue_name}-other"):
            await client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
                name=name, state=tasks_v2.Queue.State.PAUSED,
                retry_config=tasks_v2.RetryConfig(max_attempts=2)))
        broken_task = await client.create_task(parent=queue_name, task=http_task(
            target.url(f"{prefix}/token"),
            oidc_token=tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT)))
        await client.create_task(parent=f"{queue_name}-other",
                                 task=http_task(target.url(f"{prefix}/other")))

        # When both queues resume (the broken task first: it was created first)
        await client.resume_queue(name=queue_name)
        await client.resume_queue(name=f"{queue_name}-other")

        # Then the other queue's task is delivered, and so is a later one on the same queue,
        [other] = await asyncio.to_thread(target.wait_under, f"{prefix}/other")
        await client.create_task(parent=queue_name,
                                 task=http_task(target.url(f"{prefix}/later")))
        await asyncio.to_thread(target.wait_under, f"{prefix}/later")

        # while the broken task's attempts fail one by one (counted, retried, then dropped).
        for _ in range(500):  # 10 s at least
            try:
                await client.get_task(name=broken_task.name)
            except exceptions.NotFound:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the broken task was never dropped after its 2 attempts")
    finally:
        await client.transport.close()
        await emulator.stop(grace=1.0)

    assert other.headers["x-cloudtasks-queuename"].endswith("-other")
    assert target.under(f"{prefix}/token") == []
    failures = [r.exc_info[1] for r in caplog.records
                if r.getMessage() == "could not start a delivery" and r.exc_info]
    assert len(failures) == 2  # logged with the traceback, once per failed attempt
    assert all(isinstance(exc, DispatchError) and "injected" in str(exc.__cause__)
               for exc in failures)
