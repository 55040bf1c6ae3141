"""The Django app's tests: an order through Django's test client, its receipt task captured by
the fixtures and delivered into `get_wsgi_application()` on the virtual clock."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from django.http import HttpResponse
from django.test import Client

from examples.django_app import views
from examples.django_app.wsgi import application
from pytest_cloudtasks import CloudTasksQueue


@pytest.fixture
def cloudtasks_app() -> Any:
    """Deliveries go to Django's WSGI application (served through a2wsgi by the plugin)."""
    return application


@pytest.fixture(autouse=True)
def no_receipts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "receipts", [])


def test_an_order_enqueues_its_receipt_and_the_handler_sends_it(
    cloudtasks_queue: CloudTasksQueue,
) -> None:
    # Django ships no type hints, and pyright infers a WSGIRequest from its test client's code.
    response = cast("HttpResponse", Client().post("/orders/", {"order": 42},
                                                   content_type="application/json"))

    assert response.status_code == 201
    (task,) = cloudtasks_queue.tasks
    assert task.url == "https://django-worker.example.com/_tasks/"
    assert json.loads(task.body) == {"task": "send_receipt", "kwargs": {"order": 42}}

    (attempt,) = cloudtasks_queue.run_until_empty()
    # Through CsrfViewMiddleware: the handler is exempt, as Cloud Tasks sends no token.
    assert attempt.status_code == 204
    assert attempt.request_headers["X-CloudTasks-QueueName"] == "receipts"
    assert views.receipts == [42]


@pytest.mark.cloudtasks(min_backoff=10)
def test_a_receipt_is_retried_with_backoff_until_the_mail_server_is_back(
    cloudtasks_queue: CloudTasksQueue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "mail_server_down", True)
    views.send_receipt.push(order=7)

    (failed,) = cloudtasks_queue.advance(seconds=1)
    assert failed.status_code == 500
    assert isinstance(failed.exception, ConnectionError)  # the view's, not a bare 500

    monkeypatch.setattr(views, "mail_server_down", False)
    (retried,) = cloudtasks_queue.advance(seconds=10)
    assert retried.status_code == 204
    assert retried.request_headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert views.receipts == [7]
