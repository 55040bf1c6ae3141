"""CloudTasksEngine through Google's real CloudTasksClient, on a virtual clock.

Every expectation here is a fact of the real service (see CLOUD_BEHAVIOUR.md): the headers a
worker receives, retries and backoff, dedup, validation errors with Google's exception classes
and messages, queue RPCs, rate limits and OIDC tokens.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, Dispatch, Outcome
from fastapi_cloud_tasks.engine.transports import tasks_client

LOCATION = "projects/test-project/locations/asia-south1"
QUEUE = f"{LOCATION}/queues/test-queue"
OTHER_QUEUE = f"{LOCATION}/queues/other-queue"
URL = "https://worker.example.com/tasks/work"
START = datetime(2024, 7, 17, 17, 11, 5, 266817, tzinfo=timezone.utc)
QUEUE_MISSING = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the queue "
    "to initialize."
)
ETA = re.compile(r"^\d+\.\d{6}$")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def engine(clock: VirtualClock) -> CloudTasksEngine:
    return CloudTasksEngine(clock)


@pytest.fixture
def client(engine: CloudTasksEngine) -> tasks_v2.CloudTasksClient:
    return tasks_client(engine)


def http_task(
    url: str = URL, *, name: str | None = None, body: bytes = b"", **http: Any
) -> tasks_v2.Task:
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url, body=body, **http))
    if name is not None:
        task.name = name
    return task


def create(client: tasks_v2.CloudTasksClient, parent: str = QUEUE, **kwargs: Any) -> tasks_v2.Task:
    return client.create_task(parent=parent, task=http_task(**kwargs))


def make_queue(client: tasks_v2.CloudTasksClient, name: str = QUEUE, **settings: Any) -> None:
    parent = name.rsplit("/queues/", 1)[0]
    client.create_queue(parent=parent, queue=tasks_v2.Queue(name=name, **settings))


def drive(
    engine: CloudTasksEngine,
    clock: VirtualClock,
    answer: Callable[[Dispatch], int | None],
    *,
    limit: int = 1000,
) -> list[tuple[Dispatch, Outcome]]:
    """What a driver does: jump to each due time, send, report; until nothing is due."""
    done: list[tuple[Dispatch, Outcome]] = []
    while (due := engine.next_due_time()) is not None:
        assert len(done) < limit, "the engine keeps dispatching"
        clock.move_to(due)
        dispatch = engine.take_due()
        assert dispatch is not None, f"next_due_time() said {due} but nothing was due"
        done.append((dispatch, engine.finish(dispatch, answer(dispatch))))
    return done


def answers(*statuses: int | None) -> Callable[[Dispatch], int | None]:
    remaining = list(statuses)
    return lambda dispatch: remaining.pop(0)


def jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


# -- the headers a worker receives -------------------------------------------------------


@pytest.fixture
def recorded_run(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> list[tuple[Dispatch, Outcome]]:
    """The recorded real sequence: max_attempts 10, backoff 1 s..5 s with 1 doubling, the
    worker answering 503, 404, 429, 500, 302, 200."""
    make_queue(
        client,
        retry_config=tasks_v2.RetryConfig(
            max_attempts=10,
            min_backoff=timedelta(seconds=1),
            max_backoff=timedelta(seconds=5),
            max_doublings=1,
        ),
    )
    create(client, headers={"User-Agent": "my-app/1.0", "Content-Type": "application/json"},
           body=b'{"a": 1}')
    return drive(engine, clock, answers(503, 404, 429, 500, 302, 200))


def test_recorded_sequence_retry_counts(recorded_run: list[tuple[Dispatch, Outcome]]) -> None:
    counts = [d.headers["X-CloudTasks-TaskRetryCount"] for d, _ in recorded_run]
    assert counts == ["0", "1", "2", "3", "4", "5"]


def test_recorded_sequence_execution_counts_only_non_5xx_answers(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    counts = [d.headers["X-CloudTasks-TaskExecutionCount"] for d, _ in recorded_run]
    assert counts == ["0", "0", "1", "2", "2", "3"]


def test_recorded_sequence_previous_response_is_absent_then_the_last_status(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    previous = [d.headers.get("X-CloudTasks-TaskPreviousResponse") for d, _ in recorded_run]
    assert previous == [None, "503", "404", "429", "500", "302"]


def test_recorded_sequence_retry_reason_is_present_and_empty_only_on_retries(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    reasons = [d.headers.get("X-CloudTasks-TaskRetryReason") for d, _ in recorded_run]
    assert reasons == [None, "", "", "", "", ""]


def test_recorded_sequence_outcomes_retry_until_the_2xx(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    assert [outcome for _, outcome in recorded_run] == [Outcome.RETRYING] * 5 + [
        Outcome.SUCCEEDED
    ]


def test_recorded_sequence_waits_follow_the_backoff_with_one_doubling(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    times = [d.dispatch_time for d, _ in recorded_run]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert times[0] == START
    assert gaps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_eta_is_unix_seconds_with_six_decimals_of_the_schedule_time(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    for dispatch, _ in recorded_run:
        eta = dispatch.headers["X-CloudTasks-TaskETA"]
        assert ETA.match(eta), eta
        assert eta == f"{dispatch.schedule_time.timestamp():.6f}"
    assert recorded_run[0][0].headers["X-CloudTasks-TaskETA"] == "1721236265.266817"


def test_user_agent_is_replaced_and_other_user_headers_kept(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    dispatch = recorded_run[0][0]
    user_agents = [v for k, v in dispatch.headers.items() if k.lower() == "user-agent"]
    assert user_agents == ["Google-Cloud-Tasks"]
    assert dispatch.headers["Content-Type"] == "application/json"
    assert dispatch.body == b'{"a": 1}'
    assert (dispatch.method, dispatch.url) == ("POST", URL)


def test_queue_and_task_names_are_short_and_generated_ids_have_19_digits(
    recorded_run: list[tuple[Dispatch, Outcome]],
) -> None:
    dispatch = recorded_run[0][0]
    assert dispatch.headers["X-CloudTasks-QueueName"] == "test-queue"
    assert re.fullmatch(r"\d{19}", dispatch.headers["X-CloudTasks-TaskName"])
    assert dispatch.record.name == f"{QUEUE}/tasks/{dispatch.headers['X-CloudTasks-TaskName']}"


def test_generated_task_ids_are_19_digits_and_distinct(client: tasks_v2.CloudTasksClient) -> None:
    ids = {create(client).name.rsplit("/", 1)[1] for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"\d{19}", task_id) for task_id in ids)


def test_host_and_content_length_from_the_user_are_replaced(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, headers={"Host": "evil.example.com", "Content-Length": "999"})
    dispatch = engine.take_due()
    assert dispatch is not None
    assert {k.lower() for k in dispatch.headers} & {"host", "content-length"} == set()


def test_no_content_type_is_added_for_http_targets(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, body=b"raw")
    dispatch = engine.take_due()
    assert dispatch is not None
    assert "content-type" not in {k.lower() for k in dispatch.headers}


def test_unset_http_method_is_sent_as_post(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, body=b"x")
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.method == "POST"


def test_a_timeout_is_seen_as_504_by_the_next_attempt_and_is_no_execution(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    create(client)
    run = drive(engine, clock, answers(None, 200))
    second = run[1][0].headers
    assert second["X-CloudTasks-TaskPreviousResponse"] == "504"
    assert second["X-CloudTasks-TaskRetryCount"] == "1"
    assert second["X-CloudTasks-TaskExecutionCount"] == "0"


def test_dispatch_deadline_defaults_to_ten_minutes_and_keeps_the_tasks_own(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, name=f"{QUEUE}/tasks/default")
    client.create_task(parent=QUEUE, task=tasks_v2.Task(
        name=f"{QUEUE}/tasks/own", dispatch_deadline=timedelta(seconds=30),
        http_request=tasks_v2.HttpRequest(url=URL)))
    first, second = engine.take_due(), engine.take_due()
    assert first is not None
    assert second is not None
    assert (first.deadline, second.deadline) == (timedelta(minutes=10), timedelta(seconds=30))


def test_retry_after_on_429_lengthens_the_wait(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    create(client)
    dispatch = engine.take_due()
    assert dispatch is not None
    engine.finish(dispatch, 429, retry_after=timedelta(seconds=30))
    assert engine.next_due_time() == START + timedelta(seconds=30)


# -- retries stop -----------------------------------------------------------------------


def test_task_fails_for_good_after_max_attempts(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(max_attempts=3))
    create(client)
    run = drive(engine, clock, lambda dispatch: 500)
    assert [outcome for _, outcome in run] == [Outcome.RETRYING, Outcome.RETRYING, Outcome.FAILED]
    assert engine.pending() == []


def test_backoff_worked_example_between_attempts(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(
        max_attempts=9, min_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=300),
        max_doublings=3))
    create(client)
    times = [d.dispatch_time for d, _ in drive(engine, clock, lambda dispatch: 500)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps == [10, 20, 40, 80, 160, 240, 300, 300]


def test_max_retry_duration_keeps_retrying_past_max_attempts_until_it_is_used_up(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(
        max_attempts=2, min_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=10),
        max_retry_duration=timedelta(seconds=60)))
    create(client)
    run = drive(engine, clock, lambda dispatch: 500)
    # Attempts at 0, 10, ..., 60 s: the duration is used up at the attempt 60 s in.
    assert [(d.dispatch_time - START).total_seconds() for d, _ in run] == [
        0, 10, 20, 30, 40, 50, 60]
    assert run[-1][1] is Outcome.FAILED


def test_a_task_retry_config_overrides_the_queues(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(max_attempts=10))
    task = http_task()
    if "retry_config" not in tasks_v2.Task.meta.fields:
        pytest.skip("this google-cloud-tasks has no Task.retry_config")
    task.retry_config = tasks_v2.RetryConfig(max_attempts=2)
    client.create_task(parent=QUEUE, task=task)
    assert len(drive(engine, clock, lambda dispatch: 500)) == 2


# -- create_task errors -------------------------------------------------------------------


def test_duplicate_name_of_a_pending_task_is_already_exists(
    client: tasks_v2.CloudTasksClient,
) -> None:
    create(client, name=f"{QUEUE}/tasks/once")
    with pytest.raises(exceptions.AlreadyExists) as raised:
        create(client, name=f"{QUEUE}/tasks/once")
    assert raised.value.message == "Requested entity already exists"


def test_name_of_a_succeeded_task_stays_reserved_for_24_hours(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, name=f"{QUEUE}/tasks/once")
    drive(engine, clock, answers(200))
    clock.advance(timedelta(hours=24) - timedelta(microseconds=1))
    with pytest.raises(exceptions.AlreadyExists, match="Requested entity already exists"):
        create(client, name=f"{QUEUE}/tasks/once")
    clock.advance(timedelta(microseconds=1))
    assert create(client, name=f"{QUEUE}/tasks/once").name == f"{QUEUE}/tasks/once"


def test_name_of_a_deleted_task_stays_reserved_for_24_hours(
    clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, name=f"{QUEUE}/tasks/once")
    client.delete_task(name=f"{QUEUE}/tasks/once")
    clock.advance(timedelta(hours=23))
    with pytest.raises(exceptions.AlreadyExists, match="Requested entity already exists"):
        create(client, name=f"{QUEUE}/tasks/once")
    clock.advance(timedelta(hours=1))
    create(client, name=f"{QUEUE}/tasks/once")


def test_name_of_a_task_that_failed_for_good_stays_reserved(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(max_attempts=1))
    create(client, name=f"{QUEUE}/tasks/once")
    drive(engine, clock, answers(500))
    with pytest.raises(exceptions.AlreadyExists):
        create(client, name=f"{QUEUE}/tasks/once")


def test_name_reservation_is_configurable(clock: VirtualClock) -> None:
    client = tasks_client(CloudTasksEngine(clock, name_reservation=timedelta(hours=1)))
    create(client, name=f"{QUEUE}/tasks/once")
    client.delete_task(name=f"{QUEUE}/tasks/once")
    clock.advance(timedelta(hours=1))
    create(client, name=f"{QUEUE}/tasks/once")


@pytest.mark.parametrize("task_id", ["has space", "dot.ted", "slash%2F", "", "x" * 501])
def test_bad_task_id_is_invalid_argument(
    client: tasks_v2.CloudTasksClient, task_id: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as raised:
        create(client, name=f"{QUEUE}/tasks/{task_id}")
    assert "TASK_ID can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or " \
        "underscores (_). The maximum length is 500 characters." in raised.value.message


def test_task_id_of_500_allowed_characters_is_accepted(client: tasks_v2.CloudTasksClient) -> None:
    task_id = ("aZ0_-" * 100)[:500]
    assert create(client, name=f"{QUEUE}/tasks/{task_id}").name.endswith("/" + task_id)


def test_task_named_under_another_queue_is_invalid_argument(
    client: tasks_v2.CloudTasksClient,
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as raised:
        create(client, name=f"{OTHER_QUEUE}/tasks/x")
    assert raised.value.message == (
        f"The queue in the task name ({OTHER_QUEUE}) must equal the parent ({QUEUE})."
    )


@pytest.mark.parametrize("url", ["ftp://worker.example.com/x", "worker.example.com/x", "/x"])
def test_url_without_http_scheme_is_invalid_argument(
    client: tasks_v2.CloudTasksClient, url: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as raised:
        create(client, url=url)
    assert raised.value.message == "HttpTarget.url must start with 'http://' or 'https://'."


def test_url_longer_than_2083_characters_is_invalid_argument(
    client: tasks_v2.CloudTasksClient,
) -> None:
    base = "https://worker.example.com/"
    create(client, url=base + "x" * (2083 - len(base)))
    with pytest.raises(exceptions.InvalidArgument, match="at most 2083"):
        create(client, url=base + "x" * (2084 - len(base)))


def test_schedule_time_more_than_30_days_ahead_is_invalid_argument(
    client: tasks_v2.CloudTasksClient,
) -> None:
    client.create_task(parent=QUEUE, task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=URL), schedule_time=START + timedelta(days=30)))
    with pytest.raises(exceptions.InvalidArgument, match="at most 30 days ahead"):
        client.create_task(parent=QUEUE, task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(url=URL),
            schedule_time=START + timedelta(days=30, seconds=1)))


def test_past_or_unset_schedule_time_means_now(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    unset = create(client)
    past = client.create_task(parent=QUEUE, task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=URL), schedule_time=START - timedelta(days=3)))
    assert unset.schedule_time == past.schedule_time == START
    assert engine.next_due_time() == START


def test_create_time_is_whole_seconds(client: tasks_v2.CloudTasksClient) -> None:
    assert create(client).create_time == START.replace(microsecond=0)


def test_task_larger_than_1_mib_is_invalid_argument(client: tasks_v2.CloudTasksClient) -> None:
    create(client, body=b"x" * (1024 * 1024 - 1024))
    with pytest.raises(exceptions.InvalidArgument) as raised:
        create(client, body=b"x" * (1024 * 1024))
    assert raised.value.message == "Task size exceeds the maximum of 1 MiB."


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS"])
def test_body_with_a_method_other_than_post_put_patch_is_invalid_argument(
    client: tasks_v2.CloudTasksClient, method: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as raised:
        create(client, body=b"x", http_method=tasks_v2.HttpMethod[method])
    assert raised.value.message == "Body can only be set for POST, PUT or PATCH HTTP requests."


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_with_post_put_patch_is_accepted(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient, method: str
) -> None:
    create(client, body=b"x", http_method=tasks_v2.HttpMethod[method])
    dispatch = engine.take_due()
    assert dispatch is not None
    assert (dispatch.method, dispatch.body) == (method, b"x")


@pytest.mark.parametrize("deadline", [timedelta(seconds=14), timedelta(minutes=30, seconds=1)])
def test_dispatch_deadline_outside_15_s_to_30_min_is_invalid_argument(
    client: tasks_v2.CloudTasksClient, deadline: timedelta
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as raised:
        client.create_task(parent=QUEUE, task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(url=URL), dispatch_deadline=deadline))
    assert raised.value.message == (
        "Task.dispatch_deadline must be between 15 seconds and 30 minutes."
    )


@pytest.mark.parametrize("deadline", [timedelta(seconds=15), timedelta(minutes=30)])
def test_dispatch_deadline_at_the_limits_is_accepted(
    client: tasks_v2.CloudTasksClient, deadline: timedelta
) -> None:
    task = client.create_task(parent=QUEUE, task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=URL), dispatch_deadline=deadline))
    assert task.dispatch_deadline == deadline


@pytest.mark.parametrize("header", ["X-Google-Foo", "x-appengine-country", "X-AppEngine-Bar"])
def test_reserved_headers_are_invalid_argument(
    client: tasks_v2.CloudTasksClient, header: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as raised:
        create(client, headers={header: "1"})
    assert raised.value.message == f"Header {header!r} is reserved."


def test_headers_over_80_kb_are_invalid_argument(client: tasks_v2.CloudTasksClient) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="80 KB"):
        create(client, headers={"X-Big": "x" * (80 * 1024)})


def test_task_without_http_request_is_invalid_argument(
    client: tasks_v2.CloudTasksClient,
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=r"Task\.http_request"):
        client.create_task(parent=QUEUE, task=tasks_v2.Task())


def test_rejected_task_leaves_nothing_behind(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        create(client, name=f"{QUEUE}/tasks/t", url="ftp://x")
    assert engine.pending() == []
    create(client, name=f"{QUEUE}/tasks/t")


# -- queues ------------------------------------------------------------------------------


def test_create_queue_fills_in_cloud_tasks_defaults(client: tasks_v2.CloudTasksClient) -> None:
    queue = client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE))
    assert queue == client.get_queue(name=QUEUE)
    retry, rates = queue.retry_config, queue.rate_limits
    assert retry.max_attempts == 100
    assert retry.min_backoff == timedelta(seconds=0.1)
    assert retry.max_backoff == timedelta(seconds=3600)
    assert retry.max_doublings == 16
    assert retry.max_retry_duration == timedelta(0)
    assert rates.max_dispatches_per_second == 500
    assert rates.max_concurrent_dispatches == 1000
    assert rates.max_burst_size == 100
    assert queue.state == tasks_v2.Queue.State.RUNNING


def test_create_queue_keeps_given_settings(client: tasks_v2.CloudTasksClient) -> None:
    queue = client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE,
        retry_config=tasks_v2.RetryConfig(max_attempts=-1, max_doublings=0),
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=5,
                                        max_concurrent_dispatches=2)))
    assert queue.retry_config.max_attempts == -1
    assert (queue.rate_limits.max_dispatches_per_second, queue.rate_limits.max_burst_size,
            queue.rate_limits.max_concurrent_dispatches) == (5, 5, 2)


def test_creating_an_existing_queue_is_already_exists(client: tasks_v2.CloudTasksClient) -> None:
    make_queue(client)
    with pytest.raises(exceptions.AlreadyExists) as raised:
        make_queue(client)
    assert raised.value.message == "Queue already exists"


def test_queue_id_with_an_underscore_is_invalid_argument(
    client: tasks_v2.CloudTasksClient,
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        make_queue(client, name=f"{LOCATION}/queues/under_score")


def test_get_missing_queue_is_not_found(client: tasks_v2.CloudTasksClient) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=QUEUE)


def test_list_queues_lists_those_of_the_location_in_pages(
    client: tasks_v2.CloudTasksClient,
) -> None:
    for index in range(3):
        make_queue(client, name=f"{LOCATION}/queues/q{index}")
    make_queue(client, name="projects/test-project/locations/elsewhere/queues/q9")
    pager = client.list_queues(request=tasks_v2.ListQueuesRequest(parent=LOCATION, page_size=2))
    assert [q.name.rsplit("/", 1)[1] for q in pager] == ["q0", "q1", "q2"]
    pager = client.list_queues(request=tasks_v2.ListQueuesRequest(parent=LOCATION, page_size=2))
    assert len(list(pager.pages)) == 2


def filtered(client: tasks_v2.CloudTasksClient, text: str, **kwargs: Any) -> list[str]:
    request = tasks_v2.ListQueuesRequest(parent=LOCATION, filter=text, **kwargs)
    return [q.name.rsplit("/", 1)[1] for q in client.list_queues(request=request)]


def test_list_queues_filter_keeps_the_queues_that_match(client: tasks_v2.CloudTasksClient) -> None:
    # ListQueuesRequest.filter: "Sample filter "state: PAUSED"", in the Logging filter syntax.
    make_queue(client, name=f"{LOCATION}/queues/fast",
               rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=100))
    make_queue(client, name=f"{LOCATION}/queues/slow",
               rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=1))
    make_queue(client, name=f"{LOCATION}/queues/held")
    client.pause_queue(name=f"{LOCATION}/queues/held")
    client.pause_queue(name=f"{LOCATION}/queues/slow")

    assert filtered(client, "state: PAUSED") == ["held", "slow"]
    assert filtered(client, "state:RUNNING") == ["fast"]
    assert filtered(client, "state = PAUSED AND rate_limits.max_dispatches_per_second < 10") == [
        "slow"]
    assert filtered(client, "NOT state: PAUSED OR rateLimits.maxDispatchesPerSecond = 1") == [
        "fast", "slow"]
    assert filtered(client, 'name: "/queues/f" OR (state != RUNNING name:held)') == [
        "fast", "held"]
    assert filtered(client, "state: paused", page_size=1) == ["held", "slow"]  # two pages
    assert filtered(client, "   ") == ["fast", "held", "slow"]


@pytest.mark.parametrize("text", [
    "state", "state: SLEEPING", "no_such_field = 1", "rate_limits > 1", "(state: PAUSED",
    "retry_config.max_attempts > many", "state: PAUSED )", "state ~ PAUSED",
])
def test_list_queues_refuses_a_filter_it_cannot_evaluate(
    client: tasks_v2.CloudTasksClient, text: str,
) -> None:
    make_queue(client)
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(f"filter {text!r}")):
        filtered(client, text)


def test_a_page_token_does_not_carry_over_to_another_filter(
    client: tasks_v2.CloudTasksClient,
) -> None:
    for index in range(3):
        make_queue(client, name=f"{LOCATION}/queues/q{index}")
    first = client.list_queues(request=tasks_v2.ListQueuesRequest(
        parent=LOCATION, filter="state: RUNNING", page_size=1))
    token = first.next_page_token
    with pytest.raises(exceptions.InvalidArgument, match="page_token"):
        client.list_queues(request=tasks_v2.ListQueuesRequest(
            parent=LOCATION, filter="state: PAUSED", page_token=token))


def test_update_queue_creates_a_missing_queue(client: tasks_v2.CloudTasksClient) -> None:
    queue = client.update_queue(queue=tasks_v2.Queue(
        name=QUEUE, retry_config=tasks_v2.RetryConfig(max_attempts=5)))
    assert queue.retry_config.max_attempts == 5
    assert client.get_queue(name=QUEUE).retry_config.min_backoff == timedelta(seconds=0.1)


def test_update_queue_changes_only_the_fields_in_the_mask(
    client: tasks_v2.CloudTasksClient,
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(max_attempts=7))
    queue = client.update_queue(
        queue=tasks_v2.Queue(
            name=QUEUE,
            retry_config=tasks_v2.RetryConfig(max_attempts=3, max_doublings=2),
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=1),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["retry_config.max_doublings"]),
    )
    assert queue.retry_config.max_doublings == 2
    assert queue.retry_config.max_attempts == 7
    assert queue.rate_limits.max_dispatches_per_second == 500


def test_update_queue_rate_recomputes_the_burst(client: tasks_v2.CloudTasksClient) -> None:
    make_queue(client)
    queue = client.update_queue(
        queue=tasks_v2.Queue(name=QUEUE,
                             rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=3)),
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert (queue.rate_limits.max_dispatches_per_second, queue.rate_limits.max_burst_size) == (3, 3)


def test_min_backoff_above_max_backoff_is_invalid_argument_naming_the_field(
    client: tasks_v2.CloudTasksClient,
) -> None:
    retry = tasks_v2.RetryConfig(min_backoff=timedelta(seconds=10),
                                 max_backoff=timedelta(seconds=5))
    with pytest.raises(exceptions.InvalidArgument, match=r"RetryConfig\.min_backoff"):
        make_queue(client, retry_config=retry)
    with pytest.raises(exceptions.InvalidArgument, match=r"RetryConfig\.min_backoff"):
        client.update_queue(queue=tasks_v2.Queue(name=QUEUE, retry_config=retry))


def test_update_making_min_backoff_exceed_max_is_invalid_and_changes_nothing(
    client: tasks_v2.CloudTasksClient,
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(max_backoff=timedelta(seconds=5)))
    with pytest.raises(exceptions.InvalidArgument, match=r"RetryConfig\.min_backoff"):
        client.update_queue(
            queue=tasks_v2.Queue(name=QUEUE, retry_config=tasks_v2.RetryConfig(
                min_backoff=timedelta(seconds=6))),
            update_mask=field_mask_pb2.FieldMask(paths=["retry_config.min_backoff"]),
        )
    assert client.get_queue(name=QUEUE).retry_config.min_backoff == timedelta(seconds=0.1)


@pytest.mark.parametrize("field", ["min_backoff", "max_backoff", "max_retry_duration"])
def test_negative_durations_are_invalid_argument_naming_the_field(
    client: tasks_v2.CloudTasksClient, field: str
) -> None:
    retry = tasks_v2.RetryConfig(**{field: timedelta(seconds=-1)})
    with pytest.raises(exceptions.InvalidArgument, match=rf"RetryConfig\.{field}"):
        make_queue(client, retry_config=retry)


def test_max_attempts_below_minus_one_is_invalid_argument(
    client: tasks_v2.CloudTasksClient,
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=r"RetryConfig\.max_attempts"):
        make_queue(client, retry_config=tasks_v2.RetryConfig(max_attempts=-2))


def test_rate_above_500_per_second_is_invalid_argument(client: tasks_v2.CloudTasksClient) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="max_dispatches_per_second"):
        make_queue(client, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=501))


def test_concurrency_above_5000_is_invalid_argument(client: tasks_v2.CloudTasksClient) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="max_concurrent_dispatches"):
        make_queue(client, rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=5001))


def test_paused_queue_accepts_tasks_but_holds_them_until_resumed(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client)
    paused = client.pause_queue(name=QUEUE)
    assert paused.state == tasks_v2.Queue.State.PAUSED
    create(client)
    assert engine.next_due_time() is None
    assert engine.take_due() is None
    assert client.resume_queue(name=QUEUE).state == tasks_v2.Queue.State.RUNNING
    assert engine.next_due_time() == START
    assert engine.take_due() is not None


def test_pausing_one_queue_does_not_hold_another(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client)
    make_queue(client, name=OTHER_QUEUE)
    client.pause_queue(name=QUEUE)
    create(client, parent=QUEUE)
    create(client, parent=OTHER_QUEUE)
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.record.queue_name == OTHER_QUEUE
    assert engine.take_due() is None


def test_purge_queue_drops_its_tasks_only(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    for _ in range(3):
        create(client, parent=QUEUE)
    create(client, parent=OTHER_QUEUE)
    queue = client.purge_queue(name=QUEUE)
    assert queue.purge_time == START
    assert list(client.list_tasks(parent=QUEUE)) == []
    assert [r.queue_name for r in engine.pending()] == [OTHER_QUEUE]


def test_deleted_queue_rejects_new_tasks_with_not_found(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client)
    client.delete_queue(name=QUEUE)
    assert engine.pending() == []
    with pytest.raises(exceptions.NotFound) as raised:
        create(client)
    assert raised.value.message == QUEUE_MISSING


def test_deleted_queue_name_cannot_be_created_again_at_once(
    client: tasks_v2.CloudTasksClient,
) -> None:
    make_queue(client)
    client.delete_queue(name=QUEUE)
    with pytest.raises(exceptions.FailedPrecondition):
        make_queue(client)


def test_strict_engine_does_not_create_queues_on_first_task(clock: VirtualClock) -> None:
    client = tasks_client(CloudTasksEngine(clock, auto_create_queues=False))
    with pytest.raises(exceptions.NotFound) as raised:
        create(client)
    assert raised.value.message == QUEUE_MISSING
    make_queue(client)
    create(client)


def test_lenient_engine_creates_a_missing_queue_with_defaults(
    client: tasks_v2.CloudTasksClient,
) -> None:
    create(client)
    assert client.get_queue(name=QUEUE).retry_config.max_attempts == 100


@pytest.mark.parametrize("bad", [
    pytest.param({"url": "ftp://worker.example.com/x"}, id="url"),
    pytest.param({"name": f"{QUEUE}/tasks/bad.id"}, id="task-id"),
    pytest.param({"headers": {"X-Google-Thing": "1"}}, id="reserved-header"),
    pytest.param({"http_method": tasks_v2.HttpMethod.GET, "body": b"x"}, id="body-with-get"),
])
def test_a_task_refused_at_create_leaves_no_auto_created_queue_behind(
    client: tasks_v2.CloudTasksClient, bad: dict[str, Any],
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        create(client, **bad)
    with pytest.raises(exceptions.InvalidArgument):
        client.batch_create_tasks(parent=QUEUE, requests=[
            tasks_v2.CreateTaskRequest(parent=QUEUE, task=http_task()),
            tasks_v2.CreateTaskRequest(parent=QUEUE, task=http_task(**bad)),
        ])
    assert list(client.list_queues(parent=LOCATION)) == []
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=QUEUE)


def test_a_batch_into_a_missing_queue_creates_it_once(client: tasks_v2.CloudTasksClient) -> None:
    client.batch_create_tasks(parent=QUEUE, requests=[
        tasks_v2.CreateTaskRequest(parent=QUEUE, task=http_task()) for _ in range(3)])
    assert [q.name for q in client.list_queues(parent=LOCATION)] == [QUEUE]
    assert len(list(client.list_tasks(parent=QUEUE))) == 3


def test_queue_template_fills_what_a_new_queue_leaves_unset(clock: VirtualClock) -> None:
    template = tasks_v2.Queue(retry_config=tasks_v2.RetryConfig(max_attempts=3, max_doublings=2))
    client = tasks_client(CloudTasksEngine(clock, queue_template=template))
    create(client)
    make_queue(client, name=OTHER_QUEUE,
               retry_config=tasks_v2.RetryConfig(max_attempts=9))
    auto, explicit = client.get_queue(name=QUEUE), client.get_queue(name=OTHER_QUEUE)
    assert (auto.retry_config.max_attempts, auto.retry_config.max_doublings) == (3, 2)
    assert (explicit.retry_config.max_attempts, explicit.retry_config.max_doublings) == (9, 2)


# -- get, list, delete, run --------------------------------------------------------------


def test_get_task_basic_view_omits_the_body_and_full_view_keeps_it(
    client: tasks_v2.CloudTasksClient,
) -> None:
    name = create(client, body=b"payload").name
    basic = client.get_task(name=name)
    full = client.get_task(request=tasks_v2.GetTaskRequest(
        name=name, response_view=tasks_v2.Task.View.FULL))
    assert basic.view == tasks_v2.Task.View.BASIC
    assert basic.http_request.body == b""
    assert full.view == tasks_v2.Task.View.FULL
    assert full.http_request.body == b"payload"
    assert basic.http_request.url == full.http_request.url == URL


def test_create_task_returns_the_basic_view_unless_asked(
    client: tasks_v2.CloudTasksClient,
) -> None:
    basic = create(client, body=b"payload")
    full = client.create_task(request=tasks_v2.CreateTaskRequest(
        parent=QUEUE, task=http_task(body=b"payload"), response_view=tasks_v2.Task.View.FULL))
    assert (basic.http_request.body, full.http_request.body) == (b"", b"payload")


def test_list_tasks_pages_through_in_schedule_order(client: tasks_v2.CloudTasksClient) -> None:
    for index in range(5):
        client.create_task(parent=QUEUE, task=tasks_v2.Task(
            name=f"{QUEUE}/tasks/t{index}", schedule_time=START + timedelta(minutes=5 - index),
            http_request=tasks_v2.HttpRequest(url=URL, body=b"x")))
    request = tasks_v2.ListTasksRequest(parent=QUEUE, page_size=2)
    assert [t.name.rsplit("/", 1)[1] for t in client.list_tasks(request=request)] == [
        "t4", "t3", "t2", "t1", "t0"]
    pages = list(client.list_tasks(request=request).pages)
    assert [len(page.tasks) for page in pages] == [2, 2, 1]
    assert all(t.http_request.body == b"" for page in pages for t in page.tasks)


def test_list_tasks_full_view_keeps_bodies(client: tasks_v2.CloudTasksClient) -> None:
    create(client, body=b"payload")
    request = tasks_v2.ListTasksRequest(parent=QUEUE, response_view=tasks_v2.Task.View.FULL)
    assert [t.http_request.body for t in client.list_tasks(request=request)] == [b"payload"]


def test_list_tasks_of_a_missing_queue_is_not_found(client: tasks_v2.CloudTasksClient) -> None:
    with pytest.raises(exceptions.NotFound):
        list(client.list_tasks(parent=QUEUE))


def test_delete_task_removes_it_and_a_second_delete_is_not_found(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    name = create(client).name
    client.delete_task(name=name)
    assert engine.next_due_time() is None
    with pytest.raises(exceptions.NotFound) as raised:
        client.delete_task(name=name)
    assert raised.value.message == "Requested entity was not found."
    with pytest.raises(exceptions.NotFound, match=r"Requested entity was not found\."):
        client.get_task(name=name)


def test_run_task_dispatches_now_even_when_paused_or_scheduled_later(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client)
    client.pause_queue(name=QUEUE)
    name = client.create_task(parent=QUEUE, task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=URL),
        schedule_time=START + timedelta(days=2))).name
    assert engine.next_due_time() is None
    client.run_task(name=name)
    assert engine.next_due_time() == START
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.record.name == name
    assert engine.finish(dispatch, 200) is Outcome.SUCCEEDED
    with pytest.raises(exceptions.NotFound, match=r"Requested entity was not found\."):
        client.run_task(name=name)


def test_run_task_ignores_the_rate_limit(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=1))
    first, second = create(client), create(client)
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.record.name == first.name
    engine.finish(dispatch, 200)
    assert engine.take_due() is None  # the bucket (burst 1) is empty
    client.run_task(name=second.name)
    forced = engine.take_due()
    assert forced is not None
    assert forced.record.name == second.name


def test_run_task_that_fails_is_rescheduled_at_now_plus_backoff(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(min_backoff=timedelta(seconds=7)))
    name = client.create_task(parent=QUEUE, task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=URL),
        schedule_time=START + timedelta(hours=1))).name
    client.run_task(name=name)
    dispatch = engine.take_due()
    assert dispatch is not None
    assert engine.finish(dispatch, 500) is Outcome.RETRYING
    assert engine.next_due_time() == START + timedelta(seconds=7)


def test_on_ready_is_called_when_work_may_be_due_sooner(clock: VirtualClock) -> None:
    """A driver sleeping until the next due time hears of every change that can make work
    due sooner, and of none that cannot (reads, deletes, a paused queue's new tasks)."""
    calls: list[int] = []
    engine = CloudTasksEngine(clock, on_ready=lambda: calls.append(1))
    client = tasks_client(engine)

    def called(action: Callable[[], object]) -> bool:
        calls.clear()
        action()
        return bool(calls)

    queue = create(client).name.rsplit("/tasks/", 1)[0]
    assert called(lambda: create(client))
    name = create(client).name
    assert not called(lambda: client.get_task(name=name))
    assert not called(lambda: client.list_tasks(parent=queue))
    assert called(lambda: client.run_task(name=name))
    assert not called(lambda: client.pause_queue(name=queue))
    assert not called(lambda: create(client))  # paused: nothing can be due
    assert not called(lambda: client.delete_task(name=name))
    assert called(lambda: client.resume_queue(name=queue))
    assert called(lambda: client.update_queue(
        queue=tasks_v2.Queue(name=queue, rate_limits=tasks_v2.RateLimits(
            max_dispatches_per_second=5)),
    ))


# -- rate limits -------------------------------------------------------------------------


def test_rate_limit_sends_a_burst_then_spaces_dispatches(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=10))
    for _ in range(150):
        create(client)
    offsets = [(d.dispatch_time - START) for d, _ in drive(engine, clock, answers(*[200] * 150))]
    assert len(offsets) == 150
    assert offsets[:10] == [timedelta(0)] * 10
    assert offsets[10:] == [timedelta(seconds=0.1 * i) for i in range(1, 141)]


def test_max_concurrent_dispatches_holds_further_tasks_until_one_finishes(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=2))
    for _ in range(3):
        create(client)
    first, second = engine.take_due(), engine.take_due()
    assert first is not None
    assert second is not None
    assert engine.take_due() is None
    assert engine.next_due_time() is None
    engine.finish(first, 200)
    assert engine.take_due() is not None


def test_tasks_run_in_schedule_order_across_queues(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    for name, parent, minutes in [("late", QUEUE, 3), ("early", OTHER_QUEUE, 1),
                                  ("middle", QUEUE, 2)]:
        client.create_task(parent=parent, task=tasks_v2.Task(
            name=f"{parent}/tasks/{name}", schedule_time=START + timedelta(minutes=minutes),
            http_request=tasks_v2.HttpRequest(url=URL)))
    run = drive(engine, clock, lambda dispatch: 200)
    assert [d.headers["X-CloudTasks-TaskName"] for d, _ in run] == ["early", "middle", "late"]
    assert [d.dispatch_time - START for d, _ in run] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=3)]


# -- tokens ------------------------------------------------------------------------------


def oidc_dispatch(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient, url: str, audience: str = ""
) -> Dispatch:
    token = tasks_v2.OidcToken(service_account_email="tasks@p.iam.gserviceaccount.com",
                               audience=audience)
    create(client, url=url, oidc_token=token)
    dispatch = engine.take_due()
    assert dispatch is not None
    return dispatch


def test_oidc_token_is_sent_as_a_bearer_rs256_jwt(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    dispatch = oidc_dispatch(engine, client, URL)
    scheme, _, token = dispatch.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert len(token.split(".")) == 3
    assert jwt_part(token, 0)["alg"] == "RS256"
    claims = jwt_part(token, 1)
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == "tasks@p.iam.gserviceaccount.com"
    assert claims["email_verified"] is True
    assert claims["iat"] == int(START.timestamp())
    assert claims["exp"] - claims["iat"] == 3600


def test_oidc_audience_defaults_to_the_full_url_including_the_query(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    url = f"{URL}?user=7&flag=true"
    token = oidc_dispatch(engine, client, url).headers["Authorization"].split()[1]
    assert jwt_part(token, 1)["aud"] == url


def test_oidc_explicit_audience_is_used(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    dispatch = oidc_dispatch(engine, client, f"{URL}?x=1", audience="https://worker.example.com")
    assert jwt_part(dispatch.headers["Authorization"].split()[1], 1)["aud"] == (
        "https://worker.example.com"
    )


def test_oauth_token_is_sent_as_a_bearer_token(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client, oauth_token=tasks_v2.OAuthToken(service_account_email="a@b.com"))
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.headers["Authorization"].startswith("Bearer ")


def test_no_authorization_header_without_a_token(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    create(client)
    dispatch = engine.take_due()
    assert dispatch is not None
    assert "authorization" not in {k.lower() for k in dispatch.headers}


# -- output fields -----------------------------------------------------------------------


def test_output_fields_count_dispatches_and_responses(
    engine: CloudTasksEngine, clock: VirtualClock, client: tasks_v2.CloudTasksClient
) -> None:
    make_queue(client, retry_config=tasks_v2.RetryConfig(min_backoff=timedelta(seconds=2)))
    name = create(client).name
    fresh = client.get_task(name=name)
    assert (fresh.dispatch_count, fresh.response_count) == (0, 0)
    assert "first_attempt" not in fresh
    assert "last_attempt" not in fresh

    clock.advance(timedelta(seconds=1))
    first = engine.take_due()
    assert first is not None
    engine.finish(first, 503)
    after_one = client.get_task(name=name)
    assert (after_one.dispatch_count, after_one.response_count) == (1, 1)
    assert after_one.first_attempt.dispatch_time == START + timedelta(seconds=1)
    assert after_one.last_attempt.dispatch_time == START + timedelta(seconds=1)
    assert after_one.last_attempt.response_status.code == 14  # UNAVAILABLE

    clock.move_to(engine.next_due_time() or START)
    second = engine.take_due()
    assert second is not None
    engine.finish(second, None)  # deadline exceeded: dispatched, no response
    after_two = client.get_task(name=name)
    assert (after_two.dispatch_count, after_two.response_count) == (2, 1)
    assert after_two.first_attempt.dispatch_time == START + timedelta(seconds=1)
    assert after_two.last_attempt.dispatch_time == START + timedelta(seconds=3)
    assert after_two.last_attempt.response_status.code == 4  # DEADLINE_EXCEEDED
    assert after_two.schedule_time == START + timedelta(seconds=3 + 4)


def test_task_deleted_while_in_flight_is_not_rescheduled(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient
) -> None:
    name = create(client).name
    dispatch = engine.take_due()
    assert dispatch is not None
    client.delete_task(name=name)
    assert engine.finish(dispatch, 500) is Outcome.FAILED
    assert engine.next_due_time() is None


def test_history_keeps_every_created_task_when_asked(clock: VirtualClock) -> None:
    engine = CloudTasksEngine(clock, keep_history=True)
    client = tasks_client(engine)
    name = create(client).name
    client.delete_task(name=name)
    assert engine.history is not None
    assert [r.name for r in engine.history] == [name]
    assert CloudTasksEngine(clock).history is None


@pytest.mark.parametrize("url", ["http://", "https:///path", "http://[::1/x"])
def test_an_unparsable_url_is_invalid_argument(url: str) -> None:
    from datetime import datetime, timezone

    from google.api_core import exceptions as google_exceptions

    from fastapi_cloud_tasks.engine.clock import VirtualClock
    from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine
    from fastapi_cloud_tasks.engine.transports import tasks_client as make_client

    client = make_client(CloudTasksEngine(VirtualClock(datetime(2026, 1, 1, tzinfo=timezone.utc))))
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url))
    with pytest.raises(google_exceptions.InvalidArgument, match="not a valid URL"):
        client.create_task(parent="projects/p/locations/l/queues/q", task=task)


def _fresh_client() -> tasks_v2.CloudTasksClient:
    from datetime import datetime, timezone

    from fastapi_cloud_tasks.engine.clock import VirtualClock
    from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine
    from fastapi_cloud_tasks.engine.transports import tasks_client as make_client

    return make_client(CloudTasksEngine(VirtualClock(datetime(2026, 1, 1, tzinfo=timezone.utc))))


def test_a_bad_task_retry_config_is_refused_at_create_not_at_its_first_failure() -> None:
    from datetime import timedelta

    from google.api_core import exceptions as google_exceptions

    client = _fresh_client()
    task = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url="http://w/x"),
        retry_config=tasks_v2.RetryConfig(min_backoff=timedelta(seconds=10),
                                          max_backoff=timedelta(seconds=1)),
    )
    with pytest.raises(google_exceptions.InvalidArgument, match="min_backoff"):
        client.create_task(parent="projects/p/locations/l/queues/q", task=task)
    with pytest.raises(google_exceptions.NotFound):  # nothing made, not even the queue
        client.list_tasks(parent="projects/p/locations/l/queues/q")


def test_batch_create_creates_nothing_when_a_later_task_is_invalid() -> None:
    from datetime import datetime, timedelta, timezone

    from google.api_core import exceptions as google_exceptions

    client = _fresh_client()
    queue = "projects/p/locations/l/queues/q"
    good = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="http://w/x"))
    too_late = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="http://w/x"),
                             schedule_time=datetime(2026, 1, 1, tzinfo=timezone.utc)
                             + timedelta(days=40))
    requests = [tasks_v2.CreateTaskRequest(parent=queue, task=t) for t in (good, too_late)]
    with pytest.raises(google_exceptions.InvalidArgument, match="too far in the future"):
        client.batch_create_tasks(parent=queue, requests=requests)
    with pytest.raises(google_exceptions.NotFound):  # nothing made, not even the queue
        client.list_tasks(parent=queue)
