"""CloudSchedulerEngine through Google's real CloudSchedulerClient, on a virtual clock.

Every expectation is a fact of the real service (CLOUD_BEHAVIOUR.md, "Cloud Scheduler") or a
rule this project picked and documented (README.md, "Daylight saving time"): occurrences of
unix cron in the job's time zone, the headers a worker receives, retries bounded by the next
occurrence, job states, the job RPCs and their errors.
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
from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine, JobDispatch
from fastapi_cloud_tasks.engine.cloud_tasks import Outcome
from fastapi_cloud_tasks.engine.transports import scheduler_client

LOCATION = "projects/test-project/locations/asia-south1"
OTHER_LOCATION = "projects/test-project/locations/europe-west1"
URL = "https://worker.example.com/scheduled/tick"
START = datetime(2026, 4, 1, tzinfo=timezone.utc)  # a Wednesday
BAD_SCHEDULE = "Schedule or time zone is invalid."
NEW_YORK = "America/New_York"
RFC3339_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
State = scheduler_v1.Job.State


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
        ) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def engine(clock: VirtualClock) -> CloudSchedulerEngine:
    return CloudSchedulerEngine(clock)


@pytest.fixture
def client(engine: CloudSchedulerEngine) -> scheduler_v1.CloudSchedulerClient:
    return scheduler_client(engine)


def job_name(job_id: str = "nightly", location: str = LOCATION) -> str:
    return f"{location}/jobs/{job_id}"


def make_job(
    job_id: str = "nightly",
    schedule: str = "0 0 * * *",
    time_zone: str = "",
    *,
    retry: dict[str, Any] | None = None,
    location: str = LOCATION,
    **target: Any,
) -> scheduler_v1.Job:
    target.setdefault("uri", URL)
    job = scheduler_v1.Job(
        name=job_name(job_id, location),
        schedule=schedule,
        time_zone=time_zone,
        http_target=scheduler_v1.HttpTarget(**target),
    )
    if retry is not None:
        job.retry_config = scheduler_v1.RetryConfig(**retry)
    return job


def create(
    client: scheduler_v1.CloudSchedulerClient, job_id: str = "nightly", schedule: str = "0 0 * * *",
    time_zone: str = "", **kwargs: Any,
) -> scheduler_v1.Job:
    location = kwargs.get("location", LOCATION)
    job = make_job(job_id, schedule, time_zone, **kwargs)
    return client.create_job(parent=location, job=job)


Respond = Callable[[JobDispatch], "int | None"]


def drive(
    engine: CloudSchedulerEngine,
    clock: VirtualClock,
    until: datetime,
    respond: int | Respond | None = 200,
) -> list[tuple[JobDispatch, Outcome]]:
    """What a driver does: jump to each next due time, take the attempt, report its status."""
    done: list[tuple[JobDispatch, Outcome]] = []
    while (due := engine.next_due_time()) is not None and due <= until:
        clock.move_to(due)
        dispatch = engine.take_due()
        assert dispatch is not None, f"next_due_time() said {due} but nothing was due"
        status = respond(dispatch) if callable(respond) else respond
        done.append((dispatch, engine.finish(dispatch, status)))
    clock.move_to(until)
    return done


def run_times(schedule: str, time_zone: str, start: datetime, until: datetime) -> list[datetime]:
    """The occurrences of a fresh job created at `start`, up to `until`."""
    clock = VirtualClock(start)
    engine = CloudSchedulerEngine(clock)
    create(scheduler_client(engine), schedule=schedule, time_zone=time_zone)
    return [d.schedule_time for d, _ in drive(engine, clock, until)]


def first_runs(schedule: str, count: int, time_zone: str = "UTC") -> list[datetime]:
    clock = VirtualClock(START)
    engine = CloudSchedulerEngine(clock)
    create(scheduler_client(engine), schedule=schedule, time_zone=time_zone)
    times: list[datetime] = []
    while len(times) < count:
        due = engine.next_due_time()
        assert due is not None
        clock.move_to(due)
        dispatch = engine.take_due()
        assert dispatch is not None
        assert dispatch.dispatch_time == dispatch.schedule_time == due
        engine.finish(dispatch, 200)
        times.append(due)
    return times


def jwt_claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


# -- occurrences -------------------------------------------------------------------------

SUNDAY_NOONS = [utc(2026, 4, 5, 12), utc(2026, 4, 12, 12), utc(2026, 4, 19, 12)]
WEEKDAY_NINES = [utc(2026, 4, 1, 9), utc(2026, 4, 2, 9), utc(2026, 4, 3, 9), utc(2026, 4, 6, 9)]
HALF_YEARS = [utc(2026, 7, 1), utc(2027, 1, 1), utc(2027, 7, 1)]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        pytest.param("*/15 * * * *", [utc(2026, 4, 1, 0, 15), utc(2026, 4, 1, 0, 30),
                                      utc(2026, 4, 1, 0, 45), utc(2026, 4, 1, 1)], id="step"),
        pytest.param("0 */6 * * *", [utc(2026, 4, 1, 6), utc(2026, 4, 1, 12),
                                     utc(2026, 4, 1, 18), utc(2026, 4, 2)], id="hour-step"),
        pytest.param("10-20/5 3 * * *", [utc(2026, 4, 1, 3, 10), utc(2026, 4, 1, 3, 15),
                                         utc(2026, 4, 1, 3, 20), utc(2026, 4, 2, 3, 10)],
                     id="range-step"),
        pytest.param("0 9 * * MON-FRI", WEEKDAY_NINES, id="day-names-range"),
        pytest.param("0 9 * * 1-5", WEEKDAY_NINES, id="day-numbers-range"),
        pytest.param("0 22 * * 1-5/2", [utc(2026, 4, 1, 22), utc(2026, 4, 3, 22),
                                        utc(2026, 4, 6, 22)], id="day-range-step"),
        pytest.param("0 12 * * 7", SUNDAY_NOONS, id="7-is-sunday"),
        pytest.param("0 12 * * 0", SUNDAY_NOONS, id="0-is-sunday"),
        pytest.param("0 12 * * SUN", SUNDAY_NOONS, id="SUN"),
        pytest.param("30 8 1,15 * *", [utc(2026, 4, 1, 8, 30), utc(2026, 4, 15, 8, 30),
                                       utc(2026, 5, 1, 8, 30)], id="list"),
        pytest.param("0 0 1 JAN,JUL *", HALF_YEARS, id="month-names-list"),
        pytest.param("0 0 1 1,7 *", HALF_YEARS, id="month-numbers-list"),
        pytest.param("0 0 1 JUN-AUG *", [utc(2026, 6, 1), utc(2026, 7, 1), utc(2026, 8, 1),
                                         utc(2027, 6, 1)], id="month-names-range"),
        pytest.param("0 0 31 * *", [utc(2026, 5, 31), utc(2026, 7, 31), utc(2026, 8, 31)],
                     id="31st-only-in-long-months"),
        pytest.param("0 0 29 2 *", [utc(2028, 2, 29), utc(2032, 2, 29)], id="leap-days"),
        pytest.param("0 0 * 2 MON", [utc(2027, 2, 1), utc(2027, 2, 8), utc(2027, 2, 15)],
                     id="month-and-weekday"),
        # Day-of-month and day-of-week both restricted: either one matches.
        pytest.param("0 0 13 * 5", [utc(2026, 4, 3), utc(2026, 4, 10), utc(2026, 4, 13),
                                    utc(2026, 4, 17), utc(2026, 4, 24), utc(2026, 5, 1)],
                     id="13th-or-friday"),
        pytest.param("0 0 1-3 * MON", [utc(2026, 4, 2), utc(2026, 4, 3), utc(2026, 4, 6),
                                       utc(2026, 4, 13), utc(2026, 4, 20), utc(2026, 4, 27),
                                       utc(2026, 5, 1)],
                     id="days-or-monday"),
        # Only one restricted: that one alone.
        pytest.param("0 0 13 * *", [utc(2026, 4, 13), utc(2026, 5, 13)], id="13th-only"),
        pytest.param("0 0 * * 5", [utc(2026, 4, 3), utc(2026, 4, 10), utc(2026, 4, 17)],
                     id="friday-only"),
    ],
)
def test_occurrences_of_cron_expressions(schedule: str, expected: list[datetime]) -> None:
    assert first_runs(schedule, len(expected)) == expected


def test_the_first_run_is_strictly_after_creation(
    engine: CloudSchedulerEngine, client: scheduler_v1.CloudSchedulerClient
) -> None:
    # Created at exactly midnight: tonight's occurrence is the next one, not this instant.
    job = create(client, schedule="0 0 * * *")
    assert job.schedule_time == utc(2026, 4, 2)
    assert engine.next_due_time() == utc(2026, 4, 2)
    assert engine.take_due() is None


def test_time_zone_kolkata_seven_am_is_one_thirty_utc(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    job = create(client, schedule="0 7 * * *", time_zone="Asia/Kolkata")
    assert job.time_zone == "Asia/Kolkata"
    assert job.schedule_time == utc(2026, 4, 1, 1, 30)
    runs = drive(engine, clock, utc(2026, 4, 4))
    assert [d.schedule_time for d, _ in runs] == [
        utc(2026, 4, 1, 1, 30), utc(2026, 4, 2, 1, 30), utc(2026, 4, 3, 1, 30)]
    assert runs[0][0].headers["X-CloudScheduler-ScheduleTime"] == "2026-04-01T07:00:00+05:30"


def test_time_zone_defaults_to_utc(client: scheduler_v1.CloudSchedulerClient) -> None:
    job = create(client, schedule="0 7 * * *")
    assert job.time_zone == "UTC"
    assert job.schedule_time == utc(2026, 4, 1, 7)


def test_same_cron_in_two_zones_runs_at_different_instants() -> None:
    until = utc(2026, 4, 2)
    assert run_times("0 9 * * *", "Europe/London", START, until) == [utc(2026, 4, 1, 8)]  # BST
    assert run_times("0 9 * * *", "Australia/Sydney", START, until) == [utc(2026, 4, 1, 22)]


# -- daylight saving time (America/New_York: 2026-03-08 spring forward, 2026-11-01 fall back)


def test_spring_forward_a_skipped_fixed_time_runs_once_just_after_the_gap() -> None:
    # 02:30 does not exist on 2026-03-08: the run is at 03:00 EDT, once; the days around it
    # run at 02:30 EST and 02:30 EDT.
    runs = run_times("30 2 * * *", NEW_YORK, utc(2026, 3, 7), utc(2026, 3, 10))
    assert runs == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]


def test_spring_forward_schedule_time_header_is_the_local_instant_after_the_gap() -> None:
    clock = VirtualClock(utc(2026, 3, 8))
    engine = CloudSchedulerEngine(clock)
    create(scheduler_client(engine), schedule="30 2 * * *", time_zone=NEW_YORK)
    [(dispatch, _)] = drive(engine, clock, utc(2026, 3, 8, 12))
    assert dispatch.headers["X-CloudScheduler-ScheduleTime"] == "2026-03-08T03:00:00-04:00"


def test_spring_forward_hourly_job_runs_every_elapsed_hour() -> None:
    # 00:00 EST, 01:00 EST, then 03:00 EDT: one hour later in elapsed time, nothing skipped.
    runs = run_times("0 * * * *", NEW_YORK, utc(2026, 3, 8, 4, 30), utc(2026, 3, 8, 9, 30))
    assert runs == [utc(2026, 3, 8, h) for h in (5, 6, 7, 8, 9)]


def test_fall_back_a_repeated_fixed_time_runs_once_at_its_first_occurrence() -> None:
    runs = run_times("30 1 * * *", NEW_YORK, utc(2026, 10, 31), utc(2026, 11, 3))
    # 01:30 EDT on 10-31, 01:30 EDT (not EST as well) on 11-01, 01:30 EST on 11-02.
    assert runs == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_fall_back_hourly_job_runs_at_both_one_oclocks() -> None:
    clock = VirtualClock(utc(2026, 11, 1, 3, 30))
    engine = CloudSchedulerEngine(clock)
    create(scheduler_client(engine), schedule="0 * * * *", time_zone=NEW_YORK)
    runs = drive(engine, clock, utc(2026, 11, 1, 7, 30))
    assert [d.schedule_time for d, _ in runs] == [utc(2026, 11, 1, h) for h in (4, 5, 6, 7)]
    assert [d.headers["X-CloudScheduler-ScheduleTime"] for d, _ in runs] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_fall_back_wildcard_hour_runs_by_elapsed_time() -> None:
    runs = run_times("30 * * * *", NEW_YORK, utc(2026, 11, 1, 4), utc(2026, 11, 1, 7))
    assert runs == [utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)]


# -- what the worker receives ------------------------------------------------------------


def test_headers_are_exactly_cloud_schedulers(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, "report-job", schedule="15 6 * * *")
    [(dispatch, outcome)] = drive(engine, clock, utc(2026, 4, 1, 12))
    assert outcome is Outcome.SUCCEEDED
    assert dispatch.headers == {
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": "report-job",
        "X-CloudScheduler-ScheduleTime": "2026-04-01T06:15:00+00:00",
    }
    assert RFC3339_WITH_OFFSET.match(dispatch.headers["X-CloudScheduler-ScheduleTime"])
    assert (dispatch.method, dispatch.url, dispatch.body) == ("POST", URL, b"")
    assert dispatch.deadline == timedelta(seconds=180)
    assert dispatch.dispatch_time == dispatch.schedule_time == utc(2026, 4, 1, 6, 15)


def test_user_headers_are_kept_and_the_user_agent_replaced(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 1 * * *", body=b'{"a": 1}', http_method="PUT",
           headers={"Content-Type": "application/json", "X-Tenant": "acme",
                    "User-Agent": "my-app/1.0"})
    [(dispatch, _)] = drive(engine, clock, utc(2026, 4, 1, 2))
    assert dispatch.method == "PUT"
    assert dispatch.body == b'{"a": 1}'
    assert dispatch.headers["Content-Type"] == "application/json"
    assert dispatch.headers["X-Tenant"] == "acme"
    assert dispatch.headers["User-Agent"] == "Google-Cloud-Scheduler"
    assert "Authorization" not in dispatch.headers


def test_a_body_without_content_type_is_sent_as_octet_stream(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 1 * * *", body=b"raw bytes")
    [(dispatch, _)] = drive(engine, clock, utc(2026, 4, 1, 2))
    assert dispatch.headers["Content-Type"] == "application/octet-stream"
    assert dispatch.body == b"raw bytes"


def test_oidc_token_is_sent_as_a_bearer_token_for_the_uri(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    email = "scheduler@test-project.iam.gserviceaccount.com"
    create(client, "a", schedule="0 1 * * *",
           oidc_token=scheduler_v1.OidcToken(service_account_email=email))
    create(client, "b", schedule="0 1 * * *",
           oidc_token=scheduler_v1.OidcToken(service_account_email=email,
                                             audience="https://worker.example.com"))
    (first, _), (second, _) = drive(engine, clock, utc(2026, 4, 1, 2))
    scheme, _, token = first.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = jwt_claims(token)
    assert (claims["iss"], claims["email"], claims["aud"]) == (
        "https://accounts.google.com", email, URL)
    assert claims["iat"] == int(utc(2026, 4, 1, 1).timestamp())
    assert jwt_claims(second.headers["Authorization"].split()[1])["aud"] == (
        "https://worker.example.com")


# -- retries -----------------------------------------------------------------------------


def test_retries_back_off_and_keep_the_schedule_time_of_their_occurrence(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *", retry={
        "retry_count": 3, "min_backoff_duration": timedelta(seconds=10),
        "max_backoff_duration": timedelta(seconds=300), "max_doublings": 2})
    runs = drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=503)
    first_hour = [(d, o) for d, o in runs if d.schedule_time == utc(2026, 4, 1, 1)]
    times = [d.dispatch_time for d, _ in first_hour]
    assert [t - utc(2026, 4, 1, 1) for t in times] == [
        timedelta(seconds=s) for s in (0, 10, 30, 70)]  # waits of 10, 20, 40 s
    assert [o for _, o in first_hour] == [Outcome.RETRYING] * 3 + [Outcome.FAILED]
    assert {d.headers["X-CloudScheduler-ScheduleTime"] for d, _ in first_hour} == {
        "2026-04-01T01:00:00+00:00"}
    assert len(runs) == 4  # nothing else until 01:30


@pytest.mark.parametrize(
    ("minimum", "maximum", "doublings", "waits"),
    [
        (10, 300, 1, [10, 20, 40, 60, 80]),  # doubling once, then linear
        (10, 25, 5, [10, 20, 25, 25, 25]),  # capped by the maximum
        (5, 3600, 5, [5, 10, 20, 40, 80]),  # the service's defaults
    ],
)
def test_backoff_formula_is_cloud_tasks(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient,
    minimum: int, maximum: int, doublings: int, waits: list[int],
) -> None:
    create(client, schedule="0 * * * *", retry={
        "retry_count": 5, "min_backoff_duration": timedelta(seconds=minimum),
        "max_backoff_duration": timedelta(seconds=maximum), "max_doublings": doublings})
    runs = drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=500)
    times = [d.dispatch_time for d, _ in runs]
    assert len(times) == 6  # the run and its 5 retries
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == waits


def test_no_retry_by_default_and_the_failed_run_does_not_stop_the_schedule(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    job = create(client, schedule="0 * * * *")
    assert job.retry_config.retry_count == 0
    runs = drive(engine, clock, utc(2026, 4, 1, 3, 30), respond=500)
    assert [(d.dispatch_time, o) for d, o in runs] == [
        (utc(2026, 4, 1, h), Outcome.FAILED) for h in (1, 2, 3)]
    assert client.get_job(name=job_name()).state == State.ENABLED


def test_a_timeout_is_a_failed_attempt_and_is_retried(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *", retry={"retry_count": 1})
    statuses = iter([None, 200])
    runs = drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=lambda _: next(statuses))
    assert [(d.dispatch_time, o) for d, o in runs] == [
        (utc(2026, 4, 1, 1), Outcome.RETRYING), (utc(2026, 4, 1, 1, 0, 5), Outcome.SUCCEEDED)]


@pytest.mark.parametrize("status", [301, 404, 429, 500, 503])
def test_any_non_2xx_status_is_a_failure(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient,
    status: int,
) -> None:
    create(client, schedule="0 * * * *")
    [(_, outcome)] = drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=status)
    assert outcome is Outcome.FAILED
    job = client.get_job(name=job_name())
    assert job.status.code != 0
    assert job.last_attempt_time == utc(2026, 4, 1, 1)


@pytest.mark.parametrize(("status", "code"), [
    (404, exceptions.NotFound.grpc_status_code),
    (403, exceptions.PermissionDenied.grpc_status_code),
    (429, exceptions.ResourceExhausted.grpc_status_code),
    (500, exceptions.InternalServerError.grpc_status_code),
    (503, exceptions.ServiceUnavailable.grpc_status_code),
    (None, exceptions.DeadlineExceeded.grpc_status_code),
])
def test_a_failed_attempts_status_is_the_http_status_as_a_grpc_code(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient,
    status: int | None, code: Any,
) -> None:
    # The mapping Cloud Tasks uses for Attempt.response_status: NOT_FOUND for 404, not UNKNOWN.
    create(client, schedule="0 * * * *")
    drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=status)
    assert client.get_job(name=job_name()).status.code == code.value[0]


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_status_is_a_success(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient,
    status: int,
) -> None:
    create(client, schedule="0 * * * *", retry={"retry_count": 5})
    [(_, outcome)] = drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=status)
    assert outcome is Outcome.SUCCEEDED
    assert client.get_job(name=job_name()).status.code == 0


def test_retries_stop_before_they_would_pass_the_next_occurrence(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="* * * * *", retry={
        "retry_count": 5, "min_backoff_duration": timedelta(seconds=40)})
    runs = drive(engine, clock, utc(2026, 4, 1, 0, 2, 50), respond=500)
    # :00 and :40 (a wait of 40 s); the next wait (80 s) would pass 00:02, so the run stops
    # and 00:02 runs as its own occurrence.
    assert [(d.dispatch_time, d.schedule_time, o) for d, o in runs] == [
        (utc(2026, 4, 1, 0, 1), utc(2026, 4, 1, 0, 1), Outcome.RETRYING),
        (utc(2026, 4, 1, 0, 1, 40), utc(2026, 4, 1, 0, 1), Outcome.FAILED),
        (utc(2026, 4, 1, 0, 2), utc(2026, 4, 1, 0, 2), Outcome.RETRYING),
        (utc(2026, 4, 1, 0, 2, 40), utc(2026, 4, 1, 0, 2), Outcome.FAILED),
    ]


def test_a_retry_due_exactly_at_the_next_occurrence_gives_way_to_it(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="* * * * *", retry={
        "retry_count": 5, "min_backoff_duration": timedelta(seconds=60)})
    runs = drive(engine, clock, utc(2026, 4, 1, 0, 2), respond=500)
    assert [(d.dispatch_time, d.schedule_time, o) for d, o in runs] == [
        (utc(2026, 4, 1, 0, 1), utc(2026, 4, 1, 0, 1), Outcome.FAILED),
        (utc(2026, 4, 1, 0, 2), utc(2026, 4, 1, 0, 2), Outcome.FAILED),
    ]


def test_retry_count_and_max_retry_duration_retry_until_both_are_used_up(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    # RetryConfig.max_retry_duration: "If specified with retry_count, the job will be retried
    # until both limits are reached."
    fixed = {"min_backoff_duration": timedelta(seconds=10),
             "max_backoff_duration": timedelta(seconds=10)}
    create(client, "count-wins", schedule="0 * * * *", retry={
        "retry_count": 3, "max_retry_duration": timedelta(seconds=15), **fixed})
    create(client, "duration-wins", schedule="0 * * * *", retry={
        "retry_count": 1, "max_retry_duration": timedelta(seconds=60), **fixed})
    runs = drive(engine, clock, utc(2026, 4, 1, 1, 30), respond=500)

    def offsets(job_id: str) -> list[int]:
        return [int((d.dispatch_time - d.schedule_time).total_seconds()) for d, _ in runs
                if d.record.name == job_name(job_id)]

    assert offsets("count-wins") == [0, 10, 20, 30]
    assert offsets("duration-wins") == [0, 10, 20, 30, 40, 50, 60]


def test_a_success_after_failures_ends_the_run(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *", retry={"retry_count": 5})
    statuses = iter([500, 500, 200, 200])
    runs = drive(engine, clock, utc(2026, 4, 1, 2, 30), respond=lambda _: next(statuses))
    assert [o for _, o in runs] == [
        Outcome.RETRYING, Outcome.RETRYING, Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert runs[3][0].schedule_time == utc(2026, 4, 1, 2)


def test_runs_never_overlap_occurrences_during_a_run_are_skipped(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="* * * * *")
    clock.move_to(utc(2026, 4, 1, 0, 1))
    dispatch = engine.take_due()
    assert dispatch is not None
    clock.move_to(utc(2026, 4, 1, 0, 3, 30))  # a slow worker: 00:02 and 00:03 pass meanwhile
    assert engine.take_due() is None
    assert engine.next_due_time() is None
    assert engine.finish(dispatch, 200) is Outcome.SUCCEEDED
    assert engine.next_due_time() == utc(2026, 4, 1, 0, 4)


# -- states ------------------------------------------------------------------------------


def test_a_paused_job_does_not_fire_and_resumes_from_the_next_occurrence(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *")
    paused = client.pause_job(name=job_name())
    assert paused.state == State.PAUSED
    assert engine.next_due_time() is None
    assert drive(engine, clock, utc(2026, 4, 1, 5, 30)) == []
    resumed = client.resume_job(name=job_name())
    assert resumed.state == State.ENABLED
    assert resumed.schedule_time == utc(2026, 4, 1, 6)  # missed hours are not made up
    runs = drive(engine, clock, utc(2026, 4, 1, 7, 30))
    assert [d.schedule_time for d, _ in runs] == [utc(2026, 4, 1, 6), utc(2026, 4, 1, 7)]


def test_pausing_drops_a_pending_retry(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *", retry={"retry_count": 3})
    [(_, outcome)] = drive(engine, clock, utc(2026, 4, 1, 1), respond=500)
    assert outcome is Outcome.RETRYING
    client.pause_job(name=job_name())
    assert engine.next_due_time() is None


def test_pause_needs_enabled_and_resume_needs_paused(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    create(client)
    with pytest.raises(exceptions.FailedPrecondition,
                       match=re.escape("Only a PAUSED job can be resumed.")):
        client.resume_job(name=job_name())
    client.pause_job(name=job_name())
    with pytest.raises(exceptions.FailedPrecondition,
                       match=re.escape("Only an ENABLED job can be paused.")):
        client.pause_job(name=job_name())
    assert client.get_job(name=job_name()).state == State.PAUSED


def test_run_job_runs_now_even_while_paused_and_keeps_it_paused(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, "paused-job", schedule="0 0 1 1 *")
    client.pause_job(name=job_name("paused-job"))
    clock.move_to(utc(2026, 4, 1, 10, 20, 30))
    job = client.run_job(name=job_name("paused-job"))
    assert job.state == State.PAUSED
    assert engine.next_due_time() == utc(2026, 4, 1, 10, 20, 30)
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.schedule_time == utc(2026, 4, 1, 10, 20, 30)
    assert dispatch.headers["X-CloudScheduler-ScheduleTime"] == "2026-04-01T10:20:30+00:00"
    assert dispatch.headers["X-CloudScheduler-JobName"] == "paused-job"
    assert engine.finish(dispatch, 200) is Outcome.SUCCEEDED
    assert engine.next_due_time() is None
    assert client.get_job(name=job_name("paused-job")).state == State.PAUSED


def test_run_job_on_an_enabled_job_leaves_its_schedule_alone(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 12 * * *")
    clock.move_to(utc(2026, 4, 1, 9))
    client.run_job(name=job_name())
    runs = drive(engine, clock, utc(2026, 4, 2))
    assert [d.schedule_time for d, _ in runs] == [utc(2026, 4, 1, 9), utc(2026, 4, 1, 12)]


def test_a_failed_forced_run_of_a_paused_job_is_not_retried(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 0 1 1 *", retry={"retry_count": 5})
    client.pause_job(name=job_name())
    client.run_job(name=job_name())
    runs = drive(engine, clock, utc(2026, 4, 2), respond=500)
    assert [o for _, o in runs] == [Outcome.FAILED]


# -- job RPCs ----------------------------------------------------------------------------


def test_create_fills_in_the_services_defaults(client: scheduler_v1.CloudSchedulerClient) -> None:
    job = create(client, schedule="0 7 * * *")
    assert job.name == job_name()
    assert job.state == State.ENABLED
    assert job.http_target.http_method == scheduler_v1.HttpMethod.POST
    assert job.attempt_deadline == timedelta(seconds=180)
    retry = job.retry_config
    assert (retry.retry_count, retry.min_backoff_duration, retry.max_backoff_duration,
            retry.max_doublings, retry.max_retry_duration) == (
        0, timedelta(seconds=5), timedelta(hours=1), 5, timedelta(0))
    assert job.user_update_time == START
    assert client.get_job(name=job_name()) == job


def test_create_keeps_what_the_caller_set(client: scheduler_v1.CloudSchedulerClient) -> None:
    job = make_job(schedule="*/5 * * * *", time_zone="Europe/Paris", http_method="GET",
                   retry={"retry_count": 2, "max_doublings": 1})
    job.attempt_deadline = timedelta(minutes=10)
    job.description = "every five minutes"
    created = client.create_job(parent=LOCATION, job=job)
    assert (created.schedule, created.time_zone, created.description) == (
        "*/5 * * * *", "Europe/Paris", "every five minutes")
    assert created.http_target.http_method == scheduler_v1.HttpMethod.GET
    assert created.attempt_deadline == timedelta(minutes=10)
    assert (created.retry_config.retry_count, created.retry_config.max_doublings,
            created.retry_config.min_backoff_duration) == (2, 1, timedelta(seconds=5))


def test_create_of_an_existing_name_is_already_exists(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    create(client, schedule="0 1 * * *")
    with pytest.raises(exceptions.AlreadyExists, match=re.escape("Job already exists.")):
        create(client, schedule="0 2 * * *")
    assert client.get_job(name=job_name()).schedule == "0 1 * * *"


def test_list_jobs_pages_through_one_location_sorted_by_name(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    for job_id in ("e", "a", "d", "c", "b"):
        create(client, job_id)
    create(client, "elsewhere", location=OTHER_LOCATION)
    pager = client.list_jobs(request=scheduler_v1.ListJobsRequest(parent=LOCATION, page_size=2))
    pages = [[job.name.rsplit("/", 1)[1] for job in page.jobs] for page in pager.pages]
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    assert [job.name for job in client.list_jobs(parent=OTHER_LOCATION)] == [
        job_name("elsewhere", OTHER_LOCATION)]
    assert list(client.list_jobs(parent="projects/test-project/locations/us-east1")) == []


def test_get_shows_the_next_run_as_schedule_time(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 */6 * * *")
    assert client.get_job(name=job_name()).schedule_time == utc(2026, 4, 1, 6)
    drive(engine, clock, utc(2026, 4, 1, 7))
    job = client.get_job(name=job_name())
    assert job.schedule_time == utc(2026, 4, 1, 12)
    assert job.last_attempt_time == utc(2026, 4, 1, 6)


def test_update_with_a_mask_changes_only_those_fields(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 1 * * *", time_zone="Asia/Kolkata")
    clock.move_to(utc(2026, 4, 1, 0, 30))
    change = make_job(schedule="0 12 * * *", time_zone="Europe/Paris", uri="https://other.example")
    updated = client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(
        paths=["schedule", "retry_config.retry_count"]))
    assert (updated.schedule, updated.time_zone, updated.http_target.uri) == (
        "0 12 * * *", "Asia/Kolkata", URL)
    assert updated.retry_config.retry_count == 0
    assert updated.retry_config.min_backoff_duration == timedelta(seconds=5)
    assert updated.user_update_time == utc(2026, 4, 1, 0, 30)
    assert updated.schedule_time == utc(2026, 4, 1, 6, 30)  # noon in Kolkata
    runs = drive(engine, clock, utc(2026, 4, 2))
    assert [d.schedule_time for d, _ in runs] == [utc(2026, 4, 1, 6, 30)]


def test_update_of_a_nested_mask_path(client: scheduler_v1.CloudSchedulerClient) -> None:
    create(client, retry={"retry_count": 1, "max_doublings": 3})
    change = make_job(retry={"retry_count": 4, "max_doublings": 0})
    updated = client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(
        paths=["retry_config.retry_count"]))
    assert (updated.retry_config.retry_count, updated.retry_config.max_doublings) == (4, 3)


def test_update_without_a_mask_changes_every_field_the_request_sets(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    create(client, schedule="0 1 * * *", time_zone="Asia/Kolkata")
    change = scheduler_v1.Job(name=job_name(), schedule="0 2 * * *", description="two")
    updated = client.update_job(job=change)
    assert (updated.schedule, updated.description, updated.time_zone) == (
        "0 2 * * *", "two", "Asia/Kolkata")
    assert updated.http_target.uri == URL


def test_update_keeps_a_paused_job_paused(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 1 * * *")
    client.pause_job(name=job_name())
    change = make_job(schedule="0 * * * *")
    change.state = State.ENABLED  # type: ignore[assignment]  # output only: ignored
    updated = client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(
        paths=["schedule", "state"]))
    assert updated.state == State.PAUSED
    assert updated.schedule == "0 * * * *"
    assert drive(engine, clock, utc(2026, 4, 2)) == []
    assert client.resume_job(name=job_name()).schedule_time == utc(2026, 4, 2, 1)


def test_update_does_not_create(client: scheduler_v1.CloudSchedulerClient) -> None:
    with pytest.raises(exceptions.NotFound, match=re.escape("Job not found.")):
        client.update_job(job=make_job(), update_mask=field_mask_pb2.FieldMask(
            paths=["schedule"]))
    assert list(client.list_jobs(parent=LOCATION)) == []


@pytest.mark.parametrize("path", ["timeZone", "retryConfig.retryCount", "nonsense"])
def test_update_mask_paths_are_snake_case_field_names(
    client: scheduler_v1.CloudSchedulerClient, path: str
) -> None:
    create(client)
    with pytest.raises(exceptions.InvalidArgument,
                       match=re.escape(f"Unknown field in update_mask: {path!r}.")):
        client.update_job(job=make_job(time_zone="Europe/Paris"),
                          update_mask=field_mask_pb2.FieldMask(paths=[path]))
    assert client.get_job(name=job_name()).time_zone == "UTC"


@pytest.mark.parametrize(("path", "value"), [("schedule", "61 * * * *"),
                                             ("time_zone", "Mars/Olympus_Mons")])
def test_update_to_an_invalid_schedule_or_zone_changes_nothing(
    engine: CloudSchedulerEngine, client: scheduler_v1.CloudSchedulerClient,
    path: str, value: str,
) -> None:
    create(client, schedule="0 1 * * *")
    change = make_job()
    setattr(change, path, value)
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(BAD_SCHEDULE)):
        client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(paths=[path]))
    job = client.get_job(name=job_name())
    assert (job.schedule, job.time_zone) == ("0 1 * * *", "UTC")
    assert engine.next_due_time() == utc(2026, 4, 1, 1)


def test_delete_removes_the_job_and_its_future_runs(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *")
    client.delete_job(name=job_name())
    assert engine.next_due_time() is None
    assert drive(engine, clock, utc(2026, 4, 2)) == []
    with pytest.raises(exceptions.NotFound, match=re.escape("Job not found.")):
        client.get_job(name=job_name())
    create(client, schedule="0 * * * *")  # the name is free again at once


def test_deleting_a_job_during_its_run_ends_it(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    create(client, schedule="0 * * * *", retry={"retry_count": 5})
    clock.move_to(utc(2026, 4, 1, 1))
    dispatch = engine.take_due()
    assert dispatch is not None
    client.delete_job(name=job_name())
    assert engine.finish(dispatch, 500) is Outcome.FAILED
    assert engine.next_due_time() is None


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.get_job(name=job_name("missing")), id="get"),
        pytest.param(lambda c: c.delete_job(name=job_name("missing")), id="delete"),
        pytest.param(lambda c: c.pause_job(name=job_name("missing")), id="pause"),
        pytest.param(lambda c: c.resume_job(name=job_name("missing")), id="resume"),
        pytest.param(lambda c: c.run_job(name=job_name("missing")), id="run"),
    ],
)
def test_rpcs_on_a_missing_job_are_not_found(
    client: scheduler_v1.CloudSchedulerClient, call: Callable[[Any], Any]
) -> None:
    with pytest.raises(exceptions.NotFound, match=re.escape("Job not found.")):
        call(client)


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "61 * * * *",
        "* 24 * * *",
        "0 0 32 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "* * * *",
        "0 0 * * * *",  # a seconds field
        "every 5 minutes",  # App Engine's legacy format
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5#2",
        "0 0 ? * *",
        "0 0 * FOO *",
        "",
    ],
)
def test_an_invalid_schedule_is_invalid_argument_and_nothing_is_stored(
    client: scheduler_v1.CloudSchedulerClient, schedule: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(BAD_SCHEDULE)):
        create(client, schedule=schedule)
    assert list(client.list_jobs(parent=LOCATION)) == []


@pytest.mark.parametrize(
    "time_zone", ["Mars/Olympus_Mons", "America", "localtime", "EST+5", "Asia/Kolkata "])
def test_an_invalid_time_zone_is_invalid_argument_and_nothing_is_stored(
    client: scheduler_v1.CloudSchedulerClient, time_zone: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(BAD_SCHEDULE)):
        create(client, time_zone=time_zone)
    assert list(client.list_jobs(parent=LOCATION)) == []


def bad_job(**changes: Any) -> Callable[[scheduler_v1.Job], None]:
    def change(job: scheduler_v1.Job) -> None:
        for path, value in changes.items():
            target: Any = job
            *parents, leaf = path.split("__")
            for part in parents:
                target = getattr(target, part)
            setattr(target, leaf, value)

    return change


def no_target(job: scheduler_v1.Job) -> None:
    del job.http_target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(no_target, "Only HTTP target jobs are supported here.", id="no-target"),
        pytest.param(bad_job(http_target__uri="ftp://worker.example.com/x"),
                     "HttpTarget.uri must start with 'http://' or 'https://'.", id="uri"),
        pytest.param(bad_job(http_target__uri="worker.example.com/x"),
                     "HttpTarget.uri must start with 'http://' or 'https://'.",
                     id="uri-without-scheme"),
        pytest.param(bad_job(retry_config__retry_count=6),
                     "retry_config.retry_count=6 is outside 0..5", id="retry-count-6"),
        pytest.param(bad_job(retry_config__retry_count=-1),
                     "retry_config.retry_count=-1 is outside 0..5", id="retry-count-neg"),
        pytest.param(bad_job(retry_config__min_backoff_duration=timedelta(minutes=2),
                             retry_config__max_backoff_duration=timedelta(minutes=1)),
                     "retry_config.min_backoff_duration is longer than max_backoff_duration",
                     id="min-over-max"),
        pytest.param(bad_job(retry_config__max_doublings=-1),
                     "retry_config.max_doublings must not be negative", id="doublings-neg"),
        pytest.param(bad_job(retry_config__max_retry_duration=timedelta(seconds=-1)),
                     "retry_config.max_retry_duration must not be negative",
                     id="retry-duration-neg"),
        pytest.param(bad_job(attempt_deadline=timedelta(seconds=14)),
                     "attempt_deadline must be between 15s and 30m.", id="deadline-short"),
        pytest.param(bad_job(attempt_deadline=timedelta(minutes=30, seconds=1)),
                     "attempt_deadline must be between 15s and 30m.", id="deadline-long"),
    ],
)
def test_invalid_jobs_are_invalid_argument_and_nothing_is_stored(
    client: scheduler_v1.CloudSchedulerClient, change: Callable[[scheduler_v1.Job], None],
    message: str,
) -> None:
    job = make_job()
    change(job)
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(message)):
        client.create_job(parent=LOCATION, job=job)
    assert list(client.list_jobs(parent=LOCATION)) == []


@pytest.mark.parametrize("deadline", [timedelta(seconds=15), timedelta(minutes=30)])
def test_attempt_deadline_bounds_are_allowed(
    client: scheduler_v1.CloudSchedulerClient, deadline: timedelta
) -> None:
    job = make_job()
    job.attempt_deadline = deadline
    assert client.create_job(parent=LOCATION, job=job).attempt_deadline == deadline


@pytest.mark.parametrize("count", [0, 5])
def test_retry_count_bounds_are_allowed(
    client: scheduler_v1.CloudSchedulerClient, count: int
) -> None:
    assert create(client, retry={"retry_count": count}).retry_config.retry_count == count


@pytest.mark.parametrize(
    ("parent", "name", "message"),
    [
        ("projects/p", "projects/p/jobs/j", "Invalid parent 'projects/p'."),
        (LOCATION, f"{OTHER_LOCATION}/jobs/j", f"must be {LOCATION}/jobs/JOB_ID"),
        (LOCATION, f"{LOCATION}/jobs/bad.id", f"must be {LOCATION}/jobs/JOB_ID"),
        (LOCATION, f"{LOCATION}/jobs/{'x' * 501}", f"must be {LOCATION}/jobs/JOB_ID"),
    ],
)
def test_bad_parents_and_job_names_are_invalid_argument(
    client: scheduler_v1.CloudSchedulerClient, parent: str, name: str, message: str
) -> None:
    job = make_job()
    job.name = name
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(message)):
        client.create_job(parent=parent, job=job)


def test_a_job_without_a_name_gets_a_generated_one_under_the_parent(
    client: scheduler_v1.CloudSchedulerClient,
) -> None:
    # Google's sample creates a job with no name and deletes it by the id it was given.
    job = make_job()
    job.name = ""
    first = client.create_job(parent=LOCATION, job=job)
    second = client.create_job(parent=LOCATION, job=job)
    assert re.fullmatch(rf"{LOCATION}/jobs/[0-9]{{20}}", first.name)
    assert first.name != second.name
    assert client.get_job(name=first.name).name == first.name
    client.delete_job(name=first.name)
    assert [j.name for j in client.list_jobs(parent=LOCATION)] == [second.name]


def test_a_500_character_job_id_is_allowed(client: scheduler_v1.CloudSchedulerClient) -> None:
    job_id = "a-Z_9" * 100
    assert create(client, job_id).name == job_name(job_id)


# -- the driver's view over a long horizon ---------------------------------------------------


def test_a_daily_job_over_a_year_is_365_runs_in_as_many_steps() -> None:
    start = utc(2026, 1, 1)
    clock = VirtualClock(start)
    engine = CloudSchedulerEngine(clock)
    create(scheduler_client(engine), schedule="0 7 * * *", time_zone="Asia/Kolkata")
    until = start + timedelta(days=365)
    steps = 0
    runs: list[datetime] = []
    while (due := engine.next_due_time()) is not None and due <= until:
        steps += 1
        clock.move_to(due)
        dispatch = engine.take_due()
        assert dispatch is not None
        assert engine.take_due() is None  # in flight: nothing else due
        engine.finish(dispatch, 200)
        runs.append(dispatch.schedule_time)
    assert len(runs) == 365
    assert steps == 365  # the next due time is exact: no polling, no minute-by-minute walk
    assert runs[0] == utc(2026, 1, 1, 1, 30)
    assert runs[-1] == utc(2026, 12, 31, 1, 30)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(runs))


def test_a_minutely_job_over_a_day_is_1440_runs() -> None:
    assert len(run_times("* * * * *", "UTC", START, START + timedelta(days=1))) == 1440


def test_jobs_due_at_the_same_time_run_in_creation_order(
    engine: CloudSchedulerEngine, clock: VirtualClock, client: scheduler_v1.CloudSchedulerClient
) -> None:
    for job_id in ("zeta", "alpha", "mid"):
        create(client, job_id, schedule="0 1 * * *")
    runs = drive(engine, clock, utc(2026, 4, 1, 2))
    assert [d.headers["X-CloudScheduler-JobName"] for d, _ in runs] == ["zeta", "alpha", "mid"]


def test_on_ready_is_called_when_a_run_may_be_due_sooner(
    engine: CloudSchedulerEngine, client: scheduler_v1.CloudSchedulerClient
) -> None:
    """The emulator's dispatcher sleeps until the next run; these changes must wake it."""
    calls: list[int] = []
    engine.on_ready = lambda: calls.append(1)

    def called(action: Callable[[], object]) -> bool:
        calls.clear()
        action()
        return bool(calls)

    name = job_name()
    assert called(lambda: create(client))
    assert not called(lambda: client.get_job(name=name))
    assert not called(lambda: client.pause_job(name=name))
    assert called(lambda: client.run_job(name=name))
    assert called(lambda: client.resume_job(name=name))
    assert called(lambda: client.update_job(job=scheduler_v1.Job(name=name,
                                                                 schedule="*/5 * * * *")))
    assert not called(lambda: client.delete_job(name=name))
