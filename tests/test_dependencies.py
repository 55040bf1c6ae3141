"""Worker-side dependencies, exercised through a real FastAPI app with the headers Cloud Tasks and
Cloud Scheduler send."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_cloud_tasks import (
    CloudSchedulerHeaders,
    CloudTasksHeaders,
    DelayedRouteBuilder,
    InvalidTaskOptionError,
    max_retries,
)
from tests.conftest import BASE_URL, QUEUE
from tests.recording import deliver_task

seen: list[Any] = []

FIRST_ATTEMPT = {
    "X-CloudTasks-QueueName": "test-queue",
    "X-CloudTasks-TaskName": "0123456789012345678",
    "X-CloudTasks-TaskRetryCount": "0",
    "X-CloudTasks-TaskExecutionCount": "0",
    "X-CloudTasks-TaskETA": "1721236265.266817",
    "User-Agent": "Google-Cloud-Tasks",
}
RETRY = {
    **FIRST_ATTEMPT,
    "X-CloudTasks-TaskRetryCount": "3",
    "X-CloudTasks-TaskExecutionCount": "2",
    "X-CloudTasks-TaskPreviousResponse": "429",
    "X-CloudTasks-TaskRetryReason": "",
}
SCHEDULER = {
    "X-CloudScheduler": "true",
    "X-CloudScheduler-JobName": "nightly-report",
    "X-CloudScheduler-ScheduleTime": "2024-07-17T23:00:00+05:30",
    "User-Agent": "Google-Cloud-Scheduler",
}


def build_app() -> FastAPI:
    app = FastAPI()

    @app.post("/tasks/headers")
    def tasks_headers(headers: Annotated[CloudTasksHeaders, Depends()]) -> None:
        seen.append(headers)

    @app.post("/jobs/headers")
    def scheduler_headers(headers: Annotated[CloudSchedulerHeaders, Depends()]) -> None:
        seen.append(headers)

    @app.post("/tasks/limited", dependencies=[Depends(max_retries(3))])
    def limited() -> dict[str, bool]:
        seen.append("ran")
        return {"ran": True}

    @app.post("/tasks/never", dependencies=[Depends(max_retries(0))])
    def never() -> None:
        seen.append("ran")

    return app


@pytest.fixture
def client() -> Any:
    seen.clear()
    with TestClient(build_app()) as client:
        yield client


def task_headers(client: TestClient, headers: dict[str, str]) -> CloudTasksHeaders:
    response = client.post("/tasks/headers", headers=headers)
    assert response.status_code == 200, response.text
    (parsed,) = seen
    assert isinstance(parsed, CloudTasksHeaders)
    return parsed


def scheduler_headers(client: TestClient, headers: dict[str, str]) -> CloudSchedulerHeaders:
    response = client.post("/jobs/headers", headers=headers)
    assert response.status_code == 200, response.text
    (parsed,) = seen
    assert isinstance(parsed, CloudSchedulerHeaders)
    return parsed


class TestCloudTasksHeaders:
    def test_counts_are_integers(self, client):
        parsed = task_headers(client, RETRY)
        assert parsed.retry_count == 3
        assert parsed.execution_count == 2

    def test_queue_name_is_the_short_queue_id(self, client):
        assert task_headers(client, FIRST_ATTEMPT).queue_name == "test-queue"

    def test_task_name_keeps_its_leading_zero(self, client):
        assert task_headers(client, FIRST_ATTEMPT).task_name == "0123456789012345678"

    def test_eta_is_an_aware_utc_datetime_with_microseconds(self, client):
        eta = task_headers(client, FIRST_ATTEMPT).eta
        assert eta == datetime(2024, 7, 17, 17, 11, 5, 266817, tzinfo=timezone.utc)
        assert eta is not None
        assert eta.utcoffset() == timedelta(0)

    def test_previous_response_and_retry_reason_are_none_on_the_first_attempt(self, client):
        parsed = task_headers(client, FIRST_ATTEMPT)
        assert parsed.previous_response is None
        assert parsed.retry_reason is None

    def test_previous_response_is_the_integer_status_on_a_retry(self, client):
        assert task_headers(client, RETRY).previous_response == 429

    def test_retry_reason_is_present_but_empty_on_a_retry(self, client):
        assert task_headers(client, RETRY).retry_reason == ""

    def test_header_names_are_case_insensitive(self, client):
        lowered = {name.lower(): value for name, value in RETRY.items()}
        parsed = task_headers(client, lowered)
        assert (parsed.retry_count, parsed.queue_name, parsed.previous_response) == (
            3, "test-queue", 429,
        )

    def test_request_without_cloud_tasks_headers_gets_defaults(self, client):
        parsed = task_headers(client, {})
        assert (parsed.retry_count, parsed.execution_count) == (0, 0)
        assert (parsed.queue_name, parsed.task_name) == ("", "")
        assert parsed.eta is None
        assert parsed.previous_response is None

    def test_headers_of_a_delivered_task_are_read(self, recording_client, tasks_service):
        # The header dependency adds nothing .delay() must pass: Cloud Tasks supplies it all.
        router = APIRouter(
            route_class=DelayedRouteBuilder(
                base_url=BASE_URL, queue_path=QUEUE, client=recording_client
            )
        )

        @router.post("/work")
        def work(n: int, headers: Annotated[CloudTasksHeaders, Depends()]) -> None:
            seen.append((n, headers.retry_count, headers.task_name))

        app = FastAPI()
        app.include_router(router)
        seen.clear()
        work.delay(n=7)
        tasks_service.last.http_request.headers.update(
            {"X-CloudTasks-TaskRetryCount": "1", "X-CloudTasks-TaskName": "42"}
        )
        with TestClient(app) as client:
            assert deliver_task(client, tasks_service.last).status_code == 200
        assert seen == [(7, 1, "42")]


class TestCloudSchedulerHeaders:
    def test_job_name(self, client):
        assert scheduler_headers(client, SCHEDULER).job_name == "nightly-report"

    def test_schedule_time_is_parsed_from_rfc_3339_with_its_offset(self, client):
        when = scheduler_headers(client, SCHEDULER).schedule_time
        assert when == datetime(2024, 7, 17, 17, 30, tzinfo=timezone.utc)
        assert when is not None
        assert when.utcoffset() == timedelta(hours=5, minutes=30)

    def test_schedule_time_with_z_suffix_is_utc(self, client):
        headers = {**SCHEDULER, "X-CloudScheduler-ScheduleTime": "2024-07-17T17:30:00.5Z"}
        when = scheduler_headers(client, headers).schedule_time
        assert when == datetime(2024, 7, 17, 17, 30, 0, 500000, tzinfo=timezone.utc)

    def test_is_scheduled_is_true_for_a_scheduler_request(self, client):
        assert scheduler_headers(client, SCHEDULER).is_scheduled is True

    def test_request_without_scheduler_headers_gets_defaults(self, client):
        parsed = scheduler_headers(client, {})
        assert (parsed.job_name, parsed.schedule_time, parsed.is_scheduled) == ("", None, False)


class TestMaxRetries:
    @pytest.mark.parametrize("retry_count", ["0", "1", "2"])
    def test_endpoint_runs_below_the_limit(self, client, retry_count):
        response = client.post(
            "/tasks/limited", headers={"X-CloudTasks-TaskRetryCount": retry_count}
        )
        assert response.status_code == 200
        assert response.json() == {"ran": True}
        assert seen == ["ran"]

    @pytest.mark.parametrize("retry_count", ["3", "4", "99"])
    def test_endpoint_is_acknowledged_without_running_at_or_above_the_limit(
        self, client, retry_count
    ):
        response = client.post(
            "/tasks/limited", headers={"X-CloudTasks-TaskRetryCount": retry_count}
        )
        assert 200 <= response.status_code < 300
        assert seen == []

    def test_endpoint_runs_when_the_retry_header_is_absent(self, client):
        assert client.post("/tasks/limited").json() == {"ran": True}
        assert seen == ["ran"]

    def test_max_retries_zero_never_runs_the_endpoint(self, client):
        response = client.post("/tasks/never", headers={"X-CloudTasks-TaskRetryCount": "0"})
        assert 200 <= response.status_code < 300
        assert seen == []

    @pytest.mark.parametrize("count", [-1, 2.5, "3", True, None])
    def test_invalid_count_is_rejected(self, count):
        with pytest.raises(InvalidTaskOptionError, match="max_retries"):
            max_retries(count)

    def test_retry_count_header_is_not_a_delay_argument(self, recording_client, tasks_service):
        router = APIRouter(
            route_class=DelayedRouteBuilder(
                base_url=BASE_URL, queue_path=QUEUE, client=recording_client
            )
        )

        @router.post("/work", dependencies=[Depends(max_retries(2))])
        def work() -> None: ...

        work.delay()
        assert len(tasks_service.requests) == 1
        assert "X-CloudTasks-TaskRetryCount" not in tasks_service.last.http_request.headers
