"""The Flask app's tests: a sign-up through Flask's test client, its tasks captured by the
fixtures and delivered into the same app on the virtual clock."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from examples import direct_tasks
from examples.flask_app.app import app, outbox, tasks
from pytest_cloudtasks import CloudTasksQueue, TaskFailed


@pytest.fixture
def cloudtasks_app() -> Flask:
    """Deliveries go to the Flask app (a WSGI app: the plugin serves it through a2wsgi)."""
    return app


@pytest.fixture(autouse=True)
def empty_outbox() -> None:
    outbox.clear()


def test_signup_enqueues_a_welcome_mail_for_the_handler_url(
    cloudtasks_queue: CloudTasksQueue,
) -> None:
    response = app.test_client().post("/signup", json={"email": "ada@example.com"})

    assert response.status_code == 201
    welcome, _ = cloudtasks_queue.tasks
    assert welcome.url == "https://flask-worker.example.com/_tasks/"
    assert json.loads(welcome.body) == {
        "task": "send_mail", "kwargs": {"to": "ada@example.com", "subject": "Welcome"}}
    assert outbox == []  # nothing runs until the test moves time


def test_the_welcome_mail_goes_now_and_the_follow_up_three_days_later(
    cloudtasks_queue: CloudTasksQueue,
) -> None:
    app.test_client().post("/signup", json={"email": "ada@example.com"})

    (attempt,) = cloudtasks_queue.advance(seconds=1)
    assert attempt.status_code == 204
    assert outbox == [("ada@example.com", "Welcome")]

    cloudtasks_queue.advance(days=3)
    assert outbox[-1] == ("ada@example.com", "How is it going?")


@pytest.mark.cloudtasks(max_attempts=3, min_backoff=1)
def test_a_task_this_deploy_does_not_know_is_retried_until_it_fails_for_good(
    cloudtasks_queue: CloudTasksQueue,
) -> None:
    # Pushed by an older deploy, which still had a function this one removed.
    old_deploy = direct_tasks.TaskRegistry(tasks.handler_url, tasks.queue)

    @old_deploy.task
    def send_fax() -> None: ...

    send_fax.push()

    with pytest.raises(TaskFailed, match="failed for good after 3 attempt") as failed:
        cloudtasks_queue.run_until_empty()
    assert isinstance(failed.value.attempt.exception, KeyError)
    assert [a.status_code for a in cloudtasks_queue.attempts] == [500, 500, 500]
