"""Hostile and out-of-range input through Google's real clients, on both engines: each is
refused at once as INVALID_ARGUMENT (never an INTERNAL error from inside the engine), what
could never be sent is refused at create instead of failing every attempt, a user's numbers
never overflow the engine's arithmetic, and one task's failure costs that attempt alone.

Protobuf enums are open and its integers wide, so Google's clients send what the proto-plus
constructors would not build: those values are written into the raw protobuf here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, DispatchError, Outcome
from fastapi_cloud_tasks.engine.transports import scheduler_client, tasks_client

LOCATION = "projects/test-project/locations/asia-south1"
QUEUE = f"{LOCATION}/queues/test-queue"
OTHER_QUEUE = f"{LOCATION}/queues/other-queue"
JOB = f"{LOCATION}/jobs/nightly"
URL = "https://worker.example.com/tasks/work"
START = datetime(2024, 7, 17, 17, 11, 5, tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
HUGE = 2**62  # seconds: far outside both Timestamp's and Duration's range


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def engine(clock: VirtualClock) -> CloudTasksEngine:
    return CloudTasksEngine(clock)


@pytest.fixture
def tasks(engine: CloudTasksEngine) -> tasks_v2.CloudTasksClient:
    return tasks_client(engine)


@pytest.fixture
def scheduler_engine(clock: VirtualClock) -> CloudSchedulerEngine:
    return CloudSchedulerEngine(clock)


@pytest.fixture
def scheduler(scheduler_engine: CloudSchedulerEngine) -> scheduler_v1.CloudSchedulerClient:
    return scheduler_client(scheduler_engine)


def raw_task(url: str = URL, edit: Callable[[Any], None] = lambda raw: None,
             **http: Any) -> tasks_v2.Task:
    """An HTTP task; `edit` changes its raw protobuf (values proto-plus refuses to build)."""
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url, **http))
    edit(tasks_v2.Task.pb(task))
    return task


def raw_job(uri: str = URL, edit: Callable[[Any], None] = lambda raw: None,
            **target: Any) -> scheduler_v1.Job:
    job = scheduler_v1.Job(name=JOB, schedule="0 0 * * *",
                           http_target=scheduler_v1.HttpTarget(uri=uri, **target))
    edit(scheduler_v1.Job.pb(job))
    return job


def refused(call: Callable[[], object]) -> str:
    """The message of the INVALID_ARGUMENT `call` raises."""
    with pytest.raises(exceptions.InvalidArgument) as raised:
        call()
    return str(raised.value.message)


def set_field(path: str, **values: int) -> Callable[[Any], None]:
    """An `edit` setting the fields of the message at dotted `path` to `values`."""
    def edit(raw: Any) -> None:
        for part in path.split("."):
            raw = getattr(raw, part)
        for name, value in values.items():
            setattr(raw, name, value)
    return edit


# -- enum values no HttpMethod has ---------------------------------------------------------


def test_a_task_with_an_unknown_http_method_is_refused(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient
) -> None:
    message = refused(lambda: tasks.create_task(
        parent=QUEUE, task=raw_task(edit=set_field("http_request", http_method=99))))

    assert message == ("HttpRequest.http_method 99 is not an HttpMethod: use one of POST, GET, "
                       "HEAD, PUT, DELETE, PATCH, OPTIONS.")
    assert engine.pending() == []


def test_a_job_with_an_unknown_http_method_is_refused_at_create_and_update(
    scheduler: scheduler_v1.CloudSchedulerClient,
) -> None:
    bad = raw_job(edit=set_field("http_target", http_method=99))
    assert "http_method 99 is not an HttpMethod" in refused(
        lambda: scheduler.create_job(parent=LOCATION, job=bad))
    scheduler.create_job(parent=LOCATION, job=raw_job())

    assert "http_method 99 is not an HttpMethod" in refused(lambda: scheduler.update_job(
        job=bad, update_mask=field_mask_pb2.FieldMask(paths=["http_target.http_method"])))
    assert scheduler.get_job(name=JOB).http_target.http_method == scheduler_v1.HttpMethod.POST


# -- one failure costs one attempt ---------------------------------------------------------


def failing_tokens(engine: CloudTasksEngine | CloudSchedulerEngine,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Inject a bug into building one request: minting the OIDC token raises."""
    def broken(**_: Any) -> str:
        raise RuntimeError("injected: the token issuer broke")
    monkeypatch.setattr(engine.tokens, "id_token", broken)


def test_a_request_that_cannot_be_built_fails_that_attempt_and_the_next_task_goes_out(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient, clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = tasks.create_task(parent=QUEUE, task=raw_task(
        oidc_token=tasks_v2.OidcToken(service_account_email="sa@p.iam.gserviceaccount.com")))
    tasks.create_task(parent=OTHER_QUEUE, task=raw_task(URL + "/other"))
    failing_tokens(engine, monkeypatch)

    with pytest.raises(DispatchError, match="that attempt counts as failed") as raised:
        engine.take_due()
    dispatch = engine.take_due()

    assert isinstance(raised.value.__cause__, RuntimeError)
    assert dispatch is not None
    assert dispatch.url == URL + "/other"
    assert engine.finish(dispatch, 200) is Outcome.SUCCEEDED
    # The failed attempt is counted and retried with the queue's backoff, not left in flight.
    task = tasks.get_task(name=broken.name)
    assert task.dispatch_count == 1
    assert task.response_count == 0
    assert task.last_attempt.response_status.code == 4  # no response, as after a timeout
    assert task.schedule_time == START + timedelta(seconds=0.1)
    assert engine.next_due_time() == START + timedelta(seconds=0.1)


def test_a_job_request_that_cannot_be_built_fails_that_attempt_only(
    scheduler_engine: CloudSchedulerEngine, scheduler: scheduler_v1.CloudSchedulerClient,
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler.create_job(parent=LOCATION, job=raw_job(
        oidc_token=scheduler_v1.OidcToken(service_account_email="sa@p.iam.gserviceaccount.com")))
    failing_tokens(scheduler_engine, monkeypatch)
    scheduler.run_job(name=JOB)

    with pytest.raises(DispatchError, match="that attempt counts as failed"):
        scheduler_engine.take_due()

    job = scheduler.get_job(name=JOB)
    assert job.status.code == 4  # no response, as after a timeout (DEADLINE_EXCEEDED)
    assert job.last_attempt_time == START
    assert scheduler_engine.take_due() is None  # retry_count 0: the run is over
    assert scheduler_engine.next_due_time() == datetime(2024, 7, 18, tzinfo=timezone.utc)


# -- numbers that must not overflow --------------------------------------------------------


def test_many_doublings_never_overflow_the_backoff(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient, clock: VirtualClock
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE, retry_config=tasks_v2.RetryConfig(max_attempts=-1, max_doublings=60)))
    tasks.create_task(parent=QUEUE, task=raw_task())

    waits = []
    for _ in range(80):  # past the 51st attempt, where 0.1 s * 2**51 overflowed timedelta
        dispatch = engine.take_due()
        assert dispatch is not None
        assert engine.finish(dispatch, 503) is Outcome.RETRYING
        [record] = engine.pending()
        waits.append(record.schedule_time - clock.now())
        clock.move_to(record.schedule_time)

    assert waits[:3] == [timedelta(seconds=s) for s in (0.1, 0.2, 0.4)]
    assert waits[-30:] == [timedelta(hours=1)] * 30


def test_backoffs_of_ten_thousand_years_schedule_the_retry_at_the_end_of_time(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient,
) -> None:
    longest = timedelta(seconds=315_576_000_000)
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE, retry_config=tasks_v2.RetryConfig(
            max_attempts=-1, min_backoff=longest, max_backoff=longest,
            max_retry_duration=longest)))
    created = tasks.create_task(parent=QUEUE, task=raw_task())

    dispatch = engine.take_due()
    assert dispatch is not None
    assert engine.finish(dispatch, 500) is Outcome.RETRYING

    assert tasks.get_task(name=created.name).schedule_time == LATEST
    assert engine.next_due_time() == LATEST


def test_backoffs_of_ten_thousand_years_never_overflow_a_jobs_retry(
    scheduler_engine: CloudSchedulerEngine, scheduler: scheduler_v1.CloudSchedulerClient,
) -> None:
    longest = timedelta(seconds=315_576_000_000)
    scheduler.create_job(parent=LOCATION, job=raw_job(), )
    scheduler.update_job(job=scheduler_v1.Job(name=JOB, retry_config=scheduler_v1.RetryConfig(
        retry_count=5, min_backoff_duration=longest, max_backoff_duration=longest,
        max_retry_duration=longest)))
    scheduler.run_job(name=JOB)

    dispatch = scheduler_engine.take_due()
    assert dispatch is not None
    # The retry would come after the next occurrence: this run is over, the schedule goes on.
    assert scheduler_engine.finish(dispatch, 500) is Outcome.FAILED
    assert scheduler_engine.next_due_time() == datetime(2024, 7, 18, tzinfo=timezone.utc)


# -- Timestamps and Durations out of range -------------------------------------------------


@pytest.mark.parametrize(("edit", "named"), [
    pytest.param(set_field("schedule_time", seconds=HUGE), "task.schedule_time", id="ts-huge"),
    pytest.param(set_field("schedule_time", seconds=-HUGE), "task.schedule_time", id="ts-neg"),
    pytest.param(set_field("schedule_time", nanos=2_000_000_000), "task.schedule_time",
                 id="ts-nanos"),
    pytest.param(set_field("dispatch_deadline", seconds=HUGE), "task.dispatch_deadline",
                 id="deadline"),
    pytest.param(set_field("retry_config.max_backoff", seconds=HUGE),
                 "task.retry_config.max_backoff", id="task-backoff"),
    pytest.param(set_field("first_attempt.dispatch_time", seconds=HUGE),
                 "task.first_attempt.dispatch_time", id="output-only"),
])
def test_a_task_with_a_time_out_of_range_is_refused(
    tasks: tasks_v2.CloudTasksClient, edit: Callable[[Any], None], named: str
) -> None:
    message = refused(lambda: tasks.create_task(parent=QUEUE, task=raw_task(edit=edit)))
    assert message.startswith(f"{named} (seconds=")
    assert "is not a valid" in message


@pytest.mark.parametrize("field", ["min_backoff", "max_backoff", "max_retry_duration"])
def test_a_queue_with_a_duration_out_of_range_is_refused_at_create_and_update(
    tasks: tasks_v2.CloudTasksClient, field: str
) -> None:
    queue = tasks_v2.Queue(name=QUEUE)
    set_field(f"retry_config.{field}", seconds=HUGE)(tasks_v2.Queue.pb(queue))

    assert "is not a valid Duration" in refused(
        lambda: tasks.create_queue(parent=LOCATION, queue=queue))
    assert "is not a valid Duration" in refused(lambda: tasks.update_queue(queue=queue))
    with pytest.raises(exceptions.NotFound):
        tasks.get_queue(name=QUEUE)


@pytest.mark.parametrize("path", ["attempt_deadline", "retry_config.min_backoff_duration",
                                  "retry_config.max_backoff_duration",
                                  "retry_config.max_retry_duration"])
def test_a_job_with_a_duration_out_of_range_is_refused_at_create_and_update(
    scheduler: scheduler_v1.CloudSchedulerClient, path: str
) -> None:
    bad = raw_job(edit=set_field(path, seconds=HUGE))
    assert f"job.{path} (seconds={HUGE}" in refused(
        lambda: scheduler.create_job(parent=LOCATION, job=bad))
    scheduler.create_job(parent=LOCATION, job=raw_job())
    assert "is not a valid Duration" in refused(lambda: scheduler.update_job(
        job=bad, update_mask=field_mask_pb2.FieldMask(paths=[path])))


def test_a_duration_whose_nanos_have_the_other_sign_is_refused(
    tasks: tasks_v2.CloudTasksClient,
) -> None:
    edit = set_field("dispatch_deadline", seconds=20, nanos=-1)
    assert "is not a valid Duration" in refused(
        lambda: tasks.create_task(parent=QUEUE, task=raw_task(edit=edit)))


def test_the_limits_of_timestamp_and_duration_are_accepted(
    tasks: tasks_v2.CloudTasksClient,
) -> None:
    queue = tasks_v2.Queue(name=QUEUE, retry_config=tasks_v2.RetryConfig(
        max_backoff=timedelta(seconds=315_576_000_000)))
    tasks.create_queue(parent=LOCATION, queue=queue)
    task = tasks.create_task(parent=QUEUE, task=raw_task(
        edit=set_field("schedule_time", seconds=-62_135_596_800)))  # 0001-01-01: now
    assert task.schedule_time == START


# -- update masks --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["no_such_field", "rateLimits", "rate_limits.bogus",
                                  "rate_limits.max_burst_size.x", "name.x"])
def test_an_update_queue_mask_path_that_names_no_field_is_refused(
    tasks: tasks_v2.CloudTasksClient, path: str
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE))
    message = refused(lambda: tasks.update_queue(
        queue=tasks_v2.Queue(name=QUEUE), update_mask=field_mask_pb2.FieldMask(paths=[path])))
    assert message == (f"Unknown field in update_mask: {path!r}. Name a field of Queue in "
                       "snake_case, dotted for a nested one.")


@pytest.mark.parametrize("path", ["retry_config.bogus", "http_target.headers.x", "bogus"])
def test_an_update_job_mask_path_that_names_no_field_is_refused(
    scheduler: scheduler_v1.CloudSchedulerClient, path: str
) -> None:
    scheduler.create_job(parent=LOCATION, job=raw_job())
    assert f"Unknown field in update_mask: {path!r}." in refused(lambda: scheduler.update_job(
        job=raw_job(), update_mask=field_mask_pb2.FieldMask(paths=[path])))


def test_a_nested_mask_path_sets_that_field_only_and_an_unset_one_takes_the_default(
    tasks: tasks_v2.CloudTasksClient,
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE, retry_config=tasks_v2.RetryConfig(max_attempts=7, max_doublings=3)))
    queue = tasks.update_queue(
        queue=tasks_v2.Queue(name=QUEUE, retry_config=tasks_v2.RetryConfig(max_doublings=4)),
        update_mask=field_mask_pb2.FieldMask(paths=["retry_config.max_doublings",
                                                    "rate_limits.max_concurrent_dispatches"]))
    assert (queue.retry_config.max_attempts, queue.retry_config.max_doublings) == (7, 4)
    assert queue.rate_limits.max_concurrent_dispatches == 1000


# -- paging --------------------------------------------------------------------------------


def listings(tasks: tasks_v2.CloudTasksClient, scheduler: scheduler_v1.CloudSchedulerClient,
             ) -> dict[str, Callable[..., Any]]:
    return {
        "queues": lambda **kw: tasks.list_queues(
            request=tasks_v2.ListQueuesRequest(parent=LOCATION, **kw)),
        "tasks": lambda **kw: tasks.list_tasks(
            request=tasks_v2.ListTasksRequest(parent=QUEUE, **kw)),
        "jobs": lambda **kw: scheduler.list_jobs(
            request=scheduler_v1.ListJobsRequest(parent=LOCATION, **kw)),
    }


@pytest.fixture
def three_of_each(tasks: tasks_v2.CloudTasksClient,
                  scheduler: scheduler_v1.CloudSchedulerClient) -> None:
    for index in range(3):
        tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=f"{QUEUE}-{index}"))
        tasks.create_task(parent=QUEUE, task=raw_task())
        scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
            name=f"{JOB}-{index}", schedule="0 0 * * *",
            http_target=scheduler_v1.HttpTarget(uri=URL)))


@pytest.mark.usefixtures("three_of_each")
@pytest.mark.parametrize("listing", ["queues", "tasks", "jobs"])
def test_a_negative_page_size_is_refused(
    tasks: tasks_v2.CloudTasksClient, scheduler: scheduler_v1.CloudSchedulerClient,
    listing: str,
) -> None:
    message = refused(lambda: next(iter(listings(tasks, scheduler)[listing](page_size=-1))))
    assert message.startswith("page_size must not be negative, got -1")


@pytest.mark.usefixtures("three_of_each")
@pytest.mark.parametrize("listing", ["queues", "tasks", "jobs"])
@pytest.mark.parametrize("token", ["-1", "2", "not base64!", "AAAA", "%%%"])
def test_a_page_token_this_listing_did_not_hand_out_is_refused(
    tasks: tasks_v2.CloudTasksClient, scheduler: scheduler_v1.CloudSchedulerClient,
    listing: str, token: str,
) -> None:
    message = refused(lambda: next(iter(listings(tasks, scheduler)[listing](page_token=token))))
    assert message.startswith(f"Invalid page_token {token!r}")


@pytest.mark.usefixtures("three_of_each")
def test_a_page_token_is_good_for_its_own_listing_only(
    tasks: tasks_v2.CloudTasksClient, scheduler: scheduler_v1.CloudSchedulerClient,
) -> None:
    lists = listings(tasks, scheduler)
    tokens = {name: next(lists[name](page_size=1).pages).next_page_token for name in lists}

    assert all(tokens.values())
    for name, listing in lists.items():
        assert len(list(listing(page_size=1, page_token=tokens[name]))) >= 2
        for other, token in tokens.items():
            if other != name:
                with pytest.raises(exceptions.InvalidArgument, match="Invalid page_token"):
                    next(iter(listing(page_token=token)))


def test_a_page_size_above_the_maximum_gets_the_maximum(
    tasks: tasks_v2.CloudTasksClient,
) -> None:
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE, state=tasks_v2.Queue.State.PAUSED))
    tasks.batch_create_tasks(parent=QUEUE, requests=[
        tasks_v2.CreateTaskRequest(parent=QUEUE, task=raw_task()) for _ in range(100)])
    request = tasks_v2.ListTasksRequest(parent=QUEUE, page_size=10**6)
    assert [len(page.tasks) for page in tasks.list_tasks(request=request).pages] == [100]

    for _ in range(10):
        tasks.batch_create_tasks(parent=QUEUE, requests=[
            tasks_v2.CreateTaskRequest(parent=QUEUE, task=raw_task()) for _ in range(100)])
    # ListTasksRequest.page_size: "The maximum page size is 1000."
    assert [len(page.tasks) for page in tasks.list_tasks(request=request).pages] == [1000, 100]


# -- requests no HTTP client could send ----------------------------------------------------


UNSENDABLE_URLS = [
    pytest.param("http://127.0.0.1:99999/x", "port", id="port-out-of-range"),
    pytest.param("http://127.0.0.1:0/x", "port 0", id="port-zero"),
    pytest.param("http://127.0.0.1:http/x", "port", id="port-not-a-number"),
    pytest.param("http://bad host/x", "has characters no host name has", id="space-in-host"),
    pytest.param("http://a..\u00e9xample.com/x", "internationalized", id="bad-idna"),
    pytest.param("http://[::1/x", "cannot be parsed", id="unclosed-bracket"),
]
UNSENDABLE_HEADERS = [
    pytest.param({"X-Note": "one\r\nX-Injected: two"}, "X-Note", id="crlf-in-value"),
    pytest.param({"X-Note": "line\nbreak"}, "X-Note", id="lf-in-value"),
    pytest.param({"X-Note": "caf\u00e9"}, "X-Note", id="non-ascii-value"),
    pytest.param({"X-Note": "nul\x00"}, "X-Note", id="nul-in-value"),
    pytest.param({"X Note": "1"}, "Header name 'X Note'", id="space-in-name"),
    pytest.param({"X-Note:": "1"}, "Header name 'X-Note:'", id="colon-in-name"),
    pytest.param({"": "1"}, "Header name ''", id="empty-name"),
    pytest.param({"X-Caf\u00e9": "1"}, "Header name", id="non-ascii-name"),
]


@pytest.mark.parametrize(("url", "reason"), UNSENDABLE_URLS)
def test_a_task_url_no_request_can_go_to_is_refused(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient, url: str, reason: str
) -> None:
    message = refused(lambda: tasks.create_task(parent=QUEUE, task=raw_task(url)))
    assert message.startswith(f"HttpTarget.url {url!r} is not a valid URL: ")
    assert reason in message
    assert engine.pending() == []


@pytest.mark.parametrize(("headers", "named"), UNSENDABLE_HEADERS)
def test_a_task_header_no_request_can_carry_is_refused(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient, headers: dict[str, str],
    named: str,
) -> None:
    message = refused(lambda: tasks.create_task(parent=QUEUE, task=raw_task(headers=headers)))
    assert named in message
    assert "cannot be sent" in message or "is not an HTTP token" in message
    assert engine.pending() == []


@pytest.mark.parametrize(("url", "reason"), UNSENDABLE_URLS)
def test_a_job_uri_no_request_can_go_to_is_refused(
    scheduler: scheduler_v1.CloudSchedulerClient, url: str, reason: str
) -> None:
    message = refused(lambda: scheduler.create_job(parent=LOCATION, job=raw_job(url)))
    assert message.startswith(f"HttpTarget.uri {url!r} is not a valid URL: ")
    assert reason in message


@pytest.mark.parametrize(("headers", "named"), UNSENDABLE_HEADERS)
def test_a_job_header_no_request_can_carry_is_refused_at_create_and_update(
    scheduler: scheduler_v1.CloudSchedulerClient, headers: dict[str, str], named: str
) -> None:
    assert named in refused(lambda: scheduler.create_job(
        parent=LOCATION, job=raw_job(headers=headers)))
    scheduler.create_job(parent=LOCATION, job=raw_job())
    assert named in refused(lambda: scheduler.update_job(
        job=raw_job(headers=headers),
        update_mask=field_mask_pb2.FieldMask(paths=["http_target.headers"])))


@pytest.mark.parametrize("headers", [
    {"X-Tab": "a\tb", "X-Trim": "  spaced  ", "X-Empty": "", "X-Symbols": "!#$%&'*+-.^_`|~"},
    {"!#$%&'*+-.^_`|~": "token characters only"},
])
def test_headers_any_http_request_can_carry_are_accepted(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient, headers: dict[str, str]
) -> None:
    tasks.create_task(parent=QUEUE, task=raw_task(headers=headers))
    dispatch = engine.take_due()
    assert dispatch is not None
    assert {k: dispatch.headers[k] for k in headers} == headers


@pytest.mark.parametrize("url", ["http://[::1]:8080/x", "http://b\u00fccher.example/x",
                                 "https://user:pw@example.com:65535/a b?q=\u00e9"])
def test_urls_a_request_can_go_to_are_accepted(
    engine: CloudTasksEngine, tasks: tasks_v2.CloudTasksClient, url: str
) -> None:
    tasks.create_task(parent=QUEUE, task=raw_task(url))
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.url == url
