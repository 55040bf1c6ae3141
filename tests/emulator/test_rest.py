"""The emulator's REST surface: Google's real clients with `transport="rest"` (HTTP/1.1 JSON
through `requests`) against the emulator process, and the same calls over gRPC to compare.

The scenarios both transports share (queues, tasks, deliveries, jobs) live in test_emulator.py,
each run once per transport (the `tasks_over` and `scheduler_over` fixtures); this file keeps
what only REST has: error parity, routes, JSON and query encoding, HTTP-level errors, the
certificate endpoints and the client helpers' REST arguments.

Over REST Google's client builds its exception from the HTTP status alone, and prefixes the
message with the request's method and URL: an ALREADY_EXISTS answer raises `Conflict`, an
INVALID_ARGUMENT or FAILED_PRECONDITION one `BadRequest` (CLOUD_BEHAVIOUR.md), the HTTP-level
base classes of what gRPC raises. The parity tests pin exactly that: same status, same
message, the class Google's REST client makes of it. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import pytest_asyncio
from emulator_support import LOCATION, EmulatorProcess, StartEmulator, Target, http_task
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks import (
    emulator_async_client,
    emulator_client,
    emulator_scheduler_async_client,
    emulator_scheduler_client,
)
from fastapi_cloud_tasks.emulator.http_server import HttpServer, Router
from fastapi_cloud_tasks.emulator.rest import add_rest_routes, http_rules
from fastapi_cloud_tasks.emulator.rpcs import SCHEDULER, TASKS

BAD_SCHEDULE = "Schedule or time zone is invalid."
FAR_FUTURE = "0 0 1 1 *"  # a schedule that never fires during a test
WAIT = 10.0


@pytest.fixture
def plain_http(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """Plain HTTP to the emulator's REST port, for what Google's client never sends."""
    with httpx.Client(base_url=f"http://{emulator.host}:{emulator.http_port}",
                      timeout=WAIT) as client:
        yield client


def http_job(name: str, uri: str, **settings: Any) -> scheduler_v1.Job:
    return scheduler_v1.Job(
        name=name, schedule=settings.pop("schedule", FAR_FUTURE),
        http_target=scheduler_v1.HttpTarget(uri=uri, body=settings.pop("body", b""),
                                            http_method=scheduler_v1.HttpMethod.POST),
        **settings,
    )


# -- errors: the same answer over gRPC and REST --------------------------------------------


@pytest.mark.parametrize(("schedule", "time_zone"), [
    ("61 * * * *", "UTC"), ("0 9 * * 1#2", "UTC"), ("0 9 * * *", "Mars/Olympus_Mons"),
])
def test_an_invalid_schedule_is_refused_over_rest_with_the_grpc_message(
    scheduler: scheduler_v1.CloudSchedulerClient,
    rest_scheduler: scheduler_v1.CloudSchedulerClient, target: Target, ident: str,
    schedule: str, time_zone: str,
) -> None:
    job = http_job(f"{LOCATION}/jobs/{ident}", target.url(f"/{ident}"), schedule=schedule,
                   time_zone=time_zone)
    with pytest.raises(exceptions.InvalidArgument) as over_grpc:
        scheduler.create_job(parent=LOCATION, job=job)

    with pytest.raises(exceptions.BadRequest) as over_rest:
        rest_scheduler.create_job(parent=LOCATION, job=job)

    assert over_grpc.value.message == BAD_SCHEDULE
    request = over_rest.value.response.request
    assert over_rest.value.message == f"POST {request.url}: {BAD_SCHEDULE}"
    assert over_rest.value.response.json() == {"error": {
        "code": 400, "message": BAD_SCHEDULE, "status": "INVALID_ARGUMENT"}}


@dataclass(frozen=True)
class Clients:
    tasks: tasks_v2.CloudTasksClient
    scheduler: scheduler_v1.CloudSchedulerClient
    queue: str  # exists, paused
    taken: str  # a pending named task in `queue`
    job: str  # exists, paused


def _task(url: str = "http://127.0.0.1:9/x", **settings: Any) -> tasks_v2.Task:
    return http_task(url, **settings)


BAD_CALLS: dict[str, Callable[[Clients], object]] = {
    "get-unknown-queue": lambda c: c.tasks.get_queue(name=c.queue + "-missing"),
    "pause-unknown-queue": lambda c: c.tasks.pause_queue(name=c.queue + "-missing"),
    "queue-exists": lambda c: c.tasks.create_queue(parent=LOCATION,
                                                   queue=tasks_v2.Queue(name=c.queue)),
    "queue-id-with-underscore": lambda c: c.tasks.create_queue(
        parent=LOCATION, queue=tasks_v2.Queue(name=f"{LOCATION}/queues/bad_id")),
    "min-backoff-above-max": lambda c: c.tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=c.queue + "-new", retry_config=tasks_v2.RetryConfig(
            min_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=1)))),
    "list-tasks-unknown-queue": lambda c: list(c.tasks.list_tasks(parent=c.queue + "-missing")),
    "task-name-taken": lambda c: c.tasks.create_task(parent=c.queue, task=_task(name=c.taken)),
    "bad-task-id": lambda c: c.tasks.create_task(parent=c.queue,
                                                 task=_task(name=f"{c.queue}/tasks/no spaces")),
    "url-without-scheme": lambda c: c.tasks.create_task(parent=c.queue,
                                                        task=_task("ftp://127.0.0.1/x")),
    "body-on-get": lambda c: c.tasks.create_task(parent=c.queue, task=_task(
        body=b"x", http_method=tasks_v2.HttpMethod.GET)),
    "schedule-beyond-30-days": lambda c: c.tasks.create_task(parent=c.queue, task=_task(
        schedule_time=datetime.now(timezone.utc) + timedelta(days=31))),
    "no-http-request": lambda c: c.tasks.create_task(parent=c.queue, task=tasks_v2.Task()),
    "get-unknown-task": lambda c: c.tasks.get_task(name=f"{c.queue}/tasks/nothing"),
    "delete-unknown-task": lambda c: c.tasks.delete_task(name=f"{c.queue}/tasks/nothing"),
    "run-unknown-task": lambda c: c.tasks.run_task(name=f"{c.queue}/tasks/nothing"),
    "batch-with-a-bad-task": lambda c: c.tasks.batch_create_tasks(parent=c.queue, requests=[
        tasks_v2.CreateTaskRequest(parent=c.queue, task=_task()),
        tasks_v2.CreateTaskRequest(parent=c.queue, task=_task("ftp://127.0.0.1/x"))]),
    "job-exists": lambda c: c.scheduler.create_job(parent=LOCATION,
                                                   job=http_job(c.job, "http://127.0.0.1:9/")),
    "bad-cron": lambda c: c.scheduler.create_job(parent=LOCATION, job=http_job(
        c.job + "-new", "http://127.0.0.1:9/", schedule="every 5 minutes")),
    "pause-paused-job": lambda c: c.scheduler.pause_job(name=c.job),
    "get-unknown-job": lambda c: c.scheduler.get_job(name=c.job + "-missing"),
    "update-unknown-job": lambda c: c.scheduler.update_job(
        job=scheduler_v1.Job(name=c.job + "-missing", description="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"])),
    "update-mask-unknown-field": lambda c: c.scheduler.update_job(
        job=scheduler_v1.Job(name=c.job, description="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["nothing"])),
    "retry-count-above-5": lambda c: c.scheduler.create_job(parent=LOCATION, job=http_job(
        c.job + "-new", "http://127.0.0.1:9/",
        retry_config=scheduler_v1.RetryConfig(retry_count=6))),
}


@pytest.fixture
def paused_job(scheduler: scheduler_v1.CloudSchedulerClient, ident: str) -> Iterator[str]:
    name = f"{LOCATION}/jobs/{ident}"
    scheduler.create_job(parent=LOCATION, job=http_job(name, "http://127.0.0.1:9/"))
    scheduler.pause_job(name=name)
    yield name
    scheduler.delete_job(name=name)


def _raised(call: Callable[[], object]) -> exceptions.GoogleAPICallError:
    try:
        call()
    except exceptions.GoogleAPICallError as exc:
        return exc
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_an_error_is_the_same_over_grpc_and_rest(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient,
    scheduler: scheduler_v1.CloudSchedulerClient, rest_tasks: tasks_v2.CloudTasksClient,
    rest_scheduler: scheduler_v1.CloudSchedulerClient, queue_name: str, paused_job: str,
    call: Callable[[Clients], object],
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    tasks.pause_queue(name=queue_name)
    taken = tasks.create_task(parent=queue_name, task=_task(name=f"{queue_name}/tasks/taken"))

    over_grpc = _raised(lambda: call(Clients(tasks, scheduler, queue_name, taken.name,
                                             paused_job)))
    over_rest = _raised(lambda: call(Clients(rest_tasks, rest_scheduler, queue_name, taken.name,
                                             paused_job)))

    # The class Google's REST client makes of the same HTTP status: the gRPC class itself
    # (NotFound) or its HTTP-level base (AlreadyExists -> Conflict, InvalidArgument and
    # FailedPrecondition -> BadRequest).
    assert type(over_rest) is exceptions.exception_class_for_http_status(over_grpc.code)
    assert isinstance(over_grpc, type(over_rest))
    request = over_rest.response.request
    assert over_rest.message == f"{request.method} {request.url}: {over_grpc.message}"
    assert over_grpc.grpc_status_code is not None
    assert over_rest.response.json() == {"error": {
        "code": over_grpc.code, "message": over_grpc.message,
        "status": over_grpc.grpc_status_code.name}}
    assert emulator.alive()


# -- the HTTP surface itself -------------------------------------------------------------


def test_every_rpc_of_both_services_has_a_rest_route() -> None:
    for service in (TASKS, SCHEDULER):
        rules = http_rules(service)
        assert set(rules) == {rpc.name for rpc in service.rpcs}
        assert all(rules.values())


def test_enums_are_names_unless_numbers_are_asked_for_and_field_names_are_camel_case(
    rest_tasks: tasks_v2.CloudTasksClient, plain_http: httpx.Client, queue_name: str
) -> None:
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    rest_tasks.pause_queue(name=queue_name)

    by_name = plain_http.get(f"/v2/{queue_name}")
    by_number = plain_http.get(f"/v2/{queue_name}", params={"$alt": "json;enum-encoding=int"})

    assert by_name.status_code == by_number.status_code == 200
    assert by_name.headers["content-type"] == "application/json; charset=UTF-8"
    assert by_name.json()["state"] == "PAUSED"
    assert by_number.json()["state"] == tasks_v2.Queue.State.PAUSED.value
    assert by_name.json()["rateLimits"]["maxConcurrentDispatches"] == 1000


@pytest.mark.parametrize("params", [
    {"pageSize": "1", "responseView": "FULL"},
    {"page_size": "1", "response_view": "2"},
], ids=["camelCase-enum-name", "snake_case-enum-number"])
def test_query_parameters_take_either_spelling(
    rest_tasks: tasks_v2.CloudTasksClient, plain_http: httpx.Client, queue_name: str,
    params: dict[str, str],
) -> None:
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    rest_tasks.pause_queue(name=queue_name)
    for _ in range(2):
        rest_tasks.create_task(parent=queue_name, task=_task(body=b"full"))

    page = plain_http.get(f"/v2/{queue_name}/tasks", params=params).json()

    [task] = page["tasks"]
    assert task["view"] == "FULL"
    assert task["httpRequest"]["body"] == "ZnVsbA=="  # base64 of b"full"
    assert page["nextPageToken"]


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v2/projects/p/nothing", 404),
    ("GET", "/dashboard/nothing", 404),
    ("POST", "/", 405),  # the dashboard: GET only
    ("POST", "/v3/projects/p/locations/l/queues", 404),
    ("GET", "/v2/projects/p/locations/l/queues/q:pause", 405),  # POST only
    ("PUT", "/v1/projects/p/locations/l/jobs/j", 405),
    ("POST", "/oauth2/v1/certs", 405),
])
def test_unknown_paths_are_404_and_wrong_methods_405(
    emulator: EmulatorProcess, plain_http: httpx.Client, method: str, path: str, status: int
) -> None:
    response = plain_http.request(method, path)

    assert response.status_code == status
    assert response.json()["error"]["code"] == status
    if status == 405:
        assert response.headers["allow"]
    assert emulator.alive()


@pytest.mark.parametrize("body", [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"[1, 2]", id="not-an-object"),
    pytest.param(b'{"task": {"httpRequest": {"headers": []}}}', id="wrong-type"),
    pytest.param(b'{"task": {"scheduleTime": "yesterday"}}', id="bad-timestamp"),
    pytest.param(b"\xff\xfe", id="not-utf-8"),
])
def test_a_bad_json_body_is_400_invalid_argument_and_the_connection_serves_on(
    emulator: EmulatorProcess, rest_tasks: tasks_v2.CloudTasksClient, queue_name: str,
    body: bytes,
) -> None:
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    connection = http.client.HTTPConnection(emulator.host, emulator.http_port, timeout=WAIT)
    try:
        connection.request("POST", f"/v2/{queue_name}/tasks", body=body,
                           headers={"Content-Type": "application/json"})
        bad = connection.getresponse()
        error = json.loads(bad.read())["error"]
        first_socket = connection.sock
        connection.request("GET", f"/v2/{queue_name}")
        after = connection.getresponse()
        after.read()
        second_socket = connection.sock
    finally:
        connection.close()

    assert bad.status == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid JSON payload received.")
    assert after.status == 200
    assert first_socket is not None
    assert second_socket is first_socket  # kept alive after the 400
    assert emulator.alive()


def test_a_bad_query_parameter_value_is_400(rest_tasks: tasks_v2.CloudTasksClient,
                                            plain_http: httpx.Client, queue_name: str) -> None:
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))

    response = plain_http.get(f"/v2/{queue_name}/tasks", params={"pageSize": "many"})

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_the_certificate_endpoints_answer_on_a_kept_alive_connection(
    emulator: EmulatorProcess, plain_http: httpx.Client
) -> None:
    pem = plain_http.get("/oauth2/v1/certs")
    jwks = plain_http.get("/oauth2/v3/certs")

    assert pem.status_code == jwks.status_code == 200
    assert pem.headers["content-type"] == "application/json"
    assert pem.headers["cache-control"] == "public, max-age=300"
    assert all(v.startswith("-----BEGIN CERTIFICATE-----") for v in pem.json().values())
    assert set(pem.json()) == {key["kid"] for key in jwks.json()["keys"]}


@pytest.mark.parametrize("mask", ["rate_limits.max_dispatches_per_second",
                                  "rateLimits.maxDispatchesPerSecond"],
                         ids=["snake_case", "camelCase"])
def test_update_queue_masks_take_either_spelling(
    rest_tasks: tasks_v2.CloudTasksClient, plain_http: httpx.Client, queue_name: str, mask: str
) -> None:
    """Node's REST transport sends snake_case paths; json_format alone refuses them."""
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))

    response = plain_http.patch(f"/v2/{queue_name}", params={"updateMask": mask},
                                json={"rateLimits": {"maxDispatchesPerSecond": 7,
                                                     "maxConcurrentDispatches": 3}})

    assert response.status_code == 200, response.text
    queue = rest_tasks.get_queue(name=queue_name)
    assert queue.rate_limits.max_dispatches_per_second == 7
    assert queue.rate_limits.max_concurrent_dispatches == 1000  # not in the mask


def test_an_empty_string_body_is_the_empty_message(
    rest_tasks: tasks_v2.CloudTasksClient, plain_http: httpx.Client, queue_name: str
) -> None:
    """Node's REST transport sends `""` for a body field with nothing but the path's name:
    here an UpdateQueue resetting the masked retry config to its defaults."""
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=queue_name, retry_config=tasks_v2.RetryConfig(max_attempts=3)))

    response = plain_http.patch(f"/v2/{queue_name}", params={"updateMask": "retry_config"},
                                content=b'""', headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text
    assert rest_tasks.get_queue(name=queue_name).retry_config.max_attempts == 100


@pytest.mark.parametrize("mask", ["attempt_deadline,description", "attemptDeadline,description"],
                         ids=["snake_case", "camelCase"])
def test_update_job_masks_take_either_spelling(
    rest_scheduler: scheduler_v1.CloudSchedulerClient, plain_http: httpx.Client, ident: str,
    mask: str,
) -> None:
    name = f"{LOCATION}/jobs/{ident}"
    rest_scheduler.create_job(parent=LOCATION, job=http_job(name, "http://127.0.0.1:9/"))

    response = plain_http.patch(f"/v1/{name}", params={"update_mask": mask}, json={
        "attemptDeadline": "60s", "description": "masked", "schedule": "1 1 1 1 *"})

    assert response.status_code == 200, response.text
    job = rest_scheduler.get_job(name=name)
    assert (job.attempt_deadline, job.description) == (timedelta(seconds=60), "masked")
    assert job.schedule == FAR_FUTURE  # not in the mask
    rest_scheduler.delete_job(name=name)


# -- requests a web page could send: refused ----------------------------------------------


def _raw(emulator: EmulatorProcess, method: str, path: str, headers: dict[str, str],
         body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One request over http.client on 127.0.0.1, whatever its Host says."""
    connection = http.client.HTTPConnection(emulator.host, emulator.http_port, timeout=WAIT)
    try:
        connection.putrequest(method, path, skip_host="Host" in headers,
                              skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("headers", [
    pytest.param({"Origin": "http://attacker.example"}, id="cross-site-post"),
    pytest.param({"Host": "attacker.example:8124", "Origin": "http://attacker.example:8124"},
                 id="dns-rebinding"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site-fetch"),
])
def test_a_web_pages_create_task_is_403_and_creates_nothing(
    rest_tasks: tasks_v2.CloudTasksClient, emulator: EmulatorProcess, queue_name: str,
    headers: dict[str, str],
) -> None:
    """What a page's fetch() sends: text/plain needs no preflight, so nothing else stops it."""
    rest_tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    rest_tasks.pause_queue(name=queue_name)
    body = json.dumps({"task": {"httpRequest": {
        "url": "http://169.254.169.254/computeMetadata/v1/", "httpMethod": "GET",
        "headers": {"Metadata-Flavor": "Google"}}}}).encode()

    status, answer = _raw(emulator, "POST", f"/v2/{queue_name}/tasks",
                          {"Content-Type": "text/plain;charset=UTF-8", **headers}, body)

    assert status == 403
    assert answer["error"]["status"] == "PERMISSION_DENIED"
    assert "--allow-host" in answer["error"]["message"]
    assert list(rest_tasks.list_tasks(parent=queue_name)) == []


def test_the_certificates_are_under_the_same_rule(emulator: EmulatorProcess) -> None:
    own = {"Origin": f"http://{emulator.host}:{emulator.http_port}"}

    assert _raw(emulator, "GET", "/oauth2/v3/certs", own)[0] == 200
    assert _raw(emulator, "GET", "/oauth2/v3/certs", {"Origin": "http://attacker.example"})[0] \
        == 403
    assert _raw(emulator, "GET", "/oauth2/v3/certs", {"Host": "attacker.example"})[0] == 403


def test_allow_host_names_answer_and_others_still_do_not(start_emulator: StartEmulator) -> None:
    emulator = start_emulator("--allow-host", "tasks-emulator", "--allow-host", "other", "-q")
    path = f"/v2/{LOCATION}/queues"

    allowed = _raw(emulator, "GET", path, {"Host": f"tasks-emulator:{emulator.http_port}"})
    page = _raw(emulator, "GET", path, {"Host": f"tasks-emulator:{emulator.http_port}",
                                        "Origin": f"http://tasks-emulator:{emulator.http_port}"})
    foreign = _raw(emulator, "GET", path, {"Host": "attacker.example"})

    assert (allowed[0], page[0], foreign[0]) == (200, 200, 403)
    assert "--allow-host attacker.example" in foreign[1]["error"]["message"]
    client = emulator_client(emulator.address, transport="rest", http_port=emulator.http_port)
    try:
        assert list(client.list_queues(parent=LOCATION)) == []  # Google's client
    finally:
        client.transport.close()


# -- an engine bug: 500 INTERNAL, and the server serves on --------------------------------


class BrokenEngine:
    """Every RPC fails as a bug would; GetQueue answers, to show the server still serves."""

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        def fail(request: Any) -> Any:
            raise RuntimeError(f"a bug in {name}")
        return fail

    def get_queue(self, request: tasks_v2.GetQueueRequest) -> tasks_v2.Queue:
        return tasks_v2.Queue(name=request.name)


@pytest_asyncio.fixture
async def broken_server() -> AsyncIterator[HttpServer]:
    router = Router()
    add_rest_routes(router, TASKS, BrokenEngine())
    server = HttpServer(router)
    await server.start("127.0.0.1", 0)
    yield server
    await asyncio.wait_for(server.stop(), WAIT)


@pytest.mark.asyncio
async def test_an_engine_bug_is_500_internal_and_the_server_serves_on(
    broken_server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = emulator_client("127.0.0.1:1", transport="rest", http_port=broken_server.port)
    queue = f"{LOCATION}/queues/q"
    try:
        with pytest.raises(exceptions.InternalServerError) as raised:
            await asyncio.to_thread(client.create_task, parent=queue, task=_task(), timeout=WAIT)
        got = await asyncio.to_thread(client.get_queue, name=queue, timeout=WAIT)
    finally:
        client.transport.close()

    assert raised.value.message.endswith(": CreateTask failed in the emulator")
    assert raised.value.response.json()["error"]["status"] == "INTERNAL"
    assert "a bug in create_task" in caplog.text
    assert got.name == queue


# -- the client helpers --------------------------------------------------------------------


def test_rest_clients_default_to_the_grpc_port_plus_one() -> None:
    tasks = emulator_client("localhost:8123", transport="rest")
    scheduler = emulator_scheduler_client("[::1]:9000", transport="rest")
    explicit = emulator_client("127.0.0.1:8123", transport="rest", http_port=9999)
    try:
        assert tasks.transport._host == "http://localhost:8124"
        assert scheduler.transport._host == "http://[::1]:9001"
        assert explicit.transport._host == "http://127.0.0.1:9999"
        assert tasks.transport.kind == scheduler.transport.kind == "rest"
    finally:
        for client in (tasks, scheduler, explicit):
            client.transport.close()


def test_rest_clients_neither_connect_nor_need_credentials_when_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import google.auth

    def no_credentials(*args: object, **kwargs: object) -> None:
        raise google.auth.exceptions.DefaultCredentialsError("no credentials")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        tasks = emulator_client("127.0.0.1:1", transport="rest", http_port=port)
        scheduler = emulator_scheduler_client("127.0.0.1:1", transport="rest", http_port=port)
        with pytest.raises(TimeoutError):
            listener.accept()
    tasks.transport.close()
    scheduler.transport.close()


@pytest.mark.parametrize("factory", [emulator_async_client, emulator_scheduler_async_client])
def test_async_clients_refuse_rest_with_a_clear_error(factory: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"asyncio clients .* have no REST transport"):
        factory("localhost:8123", transport="rest")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"transport": "http"}, "use 'grpc' or 'rest'"),
    ({"transport": "grpc", "http_port": 8124}, "pass transport='rest'"),
    ({"host": "localhost", "transport": "rest"}, "expected HOST:PORT"),
    ({"host": "dns:///localhost:8123", "transport": "rest"}, "expected HOST:PORT"),
])
def test_client_helpers_refuse_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        emulator_client(**kwargs)
