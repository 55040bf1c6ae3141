"""The full example, tested the way its users would test their own app."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from examples.full.main import Payload, Recipe, app, audit, fail_twice, hello, make_dinner
from pytest_cloudtasks import CloudTasksQueue, CloudTasksScheduler


@pytest.fixture
def client() -> TestClient:
    return TestClient(app)


def test_hello_is_delivered_with_cloud_tasks_headers(cloudtasks_queue: CloudTasksQueue) -> None:
    hello.delay(p=Payload(message="hi"))

    [attempt] = cloudtasks_queue.run_until_empty()

    assert attempt.status_code == 200
    assert attempt.request_headers["X-CloudTasks-QueueName"] == "test-queue"
    assert attempt.request_headers["User-Agent"] == "Google-Cloud-Tasks"


def test_dinner_waits_for_its_default_countdown(
    cloudtasks_queue: CloudTasksQueue, client: TestClient
) -> None:
    client.post("/trigger/dinner")
    task = cloudtasks_queue.assert_enqueued(make_dinner, restaurant="Taj")
    assert task.arguments["recipe"] == Recipe(ingredients=["Pav", "Bhaji"])

    assert cloudtasks_queue.advance(minutes=29) == []
    [attempt] = cloudtasks_queue.advance(minutes=1)
    assert attempt.status_code == 200


def test_an_order_is_queued_once(
    cloudtasks_queue: CloudTasksQueue, client: TestClient
) -> None:
    assert client.post("/trigger/order/7").status_code == 200
    assert client.post("/trigger/order/7").status_code == 409
    assert len(cloudtasks_queue) == 1


def test_flaky_task_succeeds_on_its_third_attempt(cloudtasks_queue: CloudTasksQueue) -> None:
    fail_twice.delay()

    attempts = cloudtasks_queue.run_until_empty()

    assert [a.status_code for a in attempts] == [503, 503, 200]
    assert [a.request_headers.get("X-CloudTasks-TaskPreviousResponse") for a in attempts] == [
        None, "503", "503"]
    assert attempts[1].dispatch_time - attempts[0].dispatch_time == timedelta(seconds=0.1)


def test_audit_task_carries_an_id_token(cloudtasks_queue: CloudTasksQueue) -> None:
    audit.delay(event="login")

    [attempt] = cloudtasks_queue.run_until_empty()

    assert attempt.status_code == 200
    assert attempt.request_headers["Authorization"].startswith("Bearer ey")


@pytest.mark.cloudtasks(start="2026-03-07T12:00:00+00:00")
def test_breakfast_runs_every_morning_at_seven_in_kolkata(
    cloudtasks_scheduler: CloudTasksScheduler, client: TestClient
) -> None:
    client.post("/schedule")

    runs = cloudtasks_scheduler.advance(days=2)

    assert [run.schedule_time.isoformat() for run in runs] == [
        "2026-03-08T01:30:00+00:00", "2026-03-09T01:30:00+00:00"]
    assert all(run.status_code == 200 for run in runs)
    assert datetime.now().date().isoformat() == "2026-03-09"
