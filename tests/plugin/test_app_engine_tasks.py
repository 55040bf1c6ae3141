"""App Engine tasks in the harness: Google's client creates them, `cloudtasks_app` receives
them at their relative URI with App Engine's headers (engine/app_engine.py)."""

from __future__ import annotations

import pytest

APP = '''
from fastapi import FastAPI, Request

app = FastAPI()
received = []


@app.post("/example_task_handler")
async def example_task_handler(request: Request):
    received.append((request.url.path, request.url.query, await request.body(),
                     dict(request.headers)))
    return {}
'''

INI = """
[pytest]
cloudtasks_app = app_mod:app
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def test_googles_app_engine_sample_task_is_delivered_into_cloudtasks_app(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(app_mod=APP, test_user='''
from google.cloud import tasks_v2

import app_mod

AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"


def test_sample(cloudtasks_queue):
    client = cloudtasks_queue.client
    parent = client.queue_path("my-project", "us-central1", "my-appengine-queue")
    # Google's appengine/flexible/tasks create_app_engine_queue_task.py, as it builds it.
    task = {"app_engine_http_request": {"http_method": tasks_v2.HttpMethod.POST,
                                        "relative_uri": "/example_task_handler?x=1",
                                        "body": b"hello"}}
    created = client.create_task(parent=parent, task=task)
    (attempt,) = cloudtasks_queue.run_until_empty()

    assert attempt.status_code == 200
    assert attempt.task.url == "http://appengine.cloudtasks.test/example_task_handler?x=1"
    ((path, query, body, headers),) = app_mod.received
    assert (path, query, body) == ("/example_task_handler", "x=1", b"hello")
    assert headers["user-agent"] == AGENT
    assert headers["content-type"] == "application/octet-stream"
    assert headers["x-appengine-queuename"] == "my-appengine-queue"
    assert headers["x-appengine-taskname"] == created.name.rsplit("/", 1)[1]
    assert headers["x-appengine-taskretrycount"] == "0"
    assert headers["x-appengine-taskexecutioncount"] == "0"
    assert "x-appengine-tasketa" in headers
    assert not [name for name in headers if name.startswith("x-cloudtasks-")]
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_duplicate_of_an_app_engine_task_looks_like_its_retry(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(app_mod=APP, test_user='''
import pytest

import app_mod


@pytest.mark.cloudtasks(duplicates=1)
def test_duplicate(cloudtasks_queue):
    client = cloudtasks_queue.client
    parent = client.queue_path("my-project", "us-central1", "q")
    client.create_task(parent=parent, task={"app_engine_http_request": {
        "relative_uri": "/example_task_handler", "body": b"x"}})
    cloudtasks_queue.run_until_empty()

    counts = [h["x-appengine-taskretrycount"] for *_, h in app_mod.received]
    assert counts == ["0", "1"]
    assert app_mod.received[1][3]["x-appengine-taskpreviousresponse"] == "504"
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_an_app_engine_target_job_runs_into_cloudtasks_app(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(app_mod=APP, test_user='''
from google.cloud import scheduler_v1

import app_mod

LOCATION = "projects/my-project/locations/us-central1"


def test_job(cloudtasks_scheduler):
    cloudtasks_scheduler.client.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/nightly", schedule="0 * * * *",
        app_engine_http_target={"relative_uri": "/example_task_handler", "body": b"hi"}))
    cloudtasks_scheduler.run_job("nightly")

    ((path, _, body, headers),) = app_mod.received
    assert (path, body) == ("/example_task_handler", b"hi")
    assert headers["x-cloudscheduler"] == "true"
    assert headers["x-appengine-cron"] == "true"
    assert headers["x-cloudscheduler-jobname"] == "nightly"
    assert cloudtasks_scheduler.jobs["nightly"].url == (
        "http://appengine.cloudtasks.test/example_task_handler")
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
