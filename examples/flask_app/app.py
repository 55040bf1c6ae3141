"""A Flask app that enqueues with Google's client directly (examples/direct_tasks.py): a sign-up
pushes a welcome mail, and one handler URL runs every task by name."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Flask, request

from examples.direct_tasks import TaskRegistry

app = Flask(__name__)
tasks = TaskRegistry(
    handler_url="https://flask-worker.example.com/_tasks/",
    queue="projects/my-project/locations/europe-west1/queues/mail",
)
outbox: list[tuple[str, str]] = []  # stands in for the mail server


@tasks.task
def send_mail(to: str, subject: str) -> None:
    outbox.append((to, subject))


@app.post("/signup")
def signup() -> tuple[dict[str, str], int]:
    email = request.get_json()["email"]
    send_mail.push(to=email, subject="Welcome")
    send_mail.push(to=email, subject="How is it going?",
                   schedule_time=datetime.now(timezone.utc) + timedelta(days=3))
    return {"status": "signed up"}, 201


@app.post("/_tasks/")
def run_task() -> tuple[str, int]:
    # Cloud Tasks retries anything but a 2xx; a task that raises is retried too.
    tasks.run(request.get_data())
    return "", 204
