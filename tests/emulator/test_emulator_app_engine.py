"""App Engine tasks through the emulator process: `--app-engine-host` names the local server
standing in for the App Engine app, and each attempt reaches it as App Engine's would."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from emulator_support import LOCATION, StartEmulator, Target
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks import emulator_client
from fastapi_cloud_tasks.emulator.__main__ import main

AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"


def app_engine_task(relative_uri: str, body: bytes = b"") -> tasks_v2.Task:
    # Google's appengine/flexible/tasks sample (create_app_engine_queue_task.py) shape.
    return tasks_v2.Task(app_engine_http_request=tasks_v2.AppEngineHttpRequest(
        http_method=tasks_v2.HttpMethod.POST, relative_uri=relative_uri, body=body))


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_app_engine_tasks_go_to_the_app_engine_host_with_app_engines_headers(
    start_emulator: StartEmulator, target: Target, ident: str, prefix: str, transport: str
) -> None:
    emulator = start_emulator("--app-engine-host", urlsplit(target.base_url).netloc,
                              "--auto-create-queues", "-q")
    client = emulator.tasks_client() if transport == "grpc" else emulator_client(
        emulator.address, transport="rest", http_port=emulator.http_port)
    queue = f"{LOCATION}/queues/{ident}"

    task = client.create_task(parent=queue, task=app_engine_task(
        f"{prefix}/example_task_handler?status=500,200", b"hello"))
    first, second = target.wait_under(prefix, 2, timeout=20, finished=True)

    assert (first.method, first.path, first.body) == ("POST", f"{prefix}/example_task_handler",
                                                     b"hello")
    assert first.headers["user-agent"] == AGENT
    assert first.headers["content-type"] == "application/octet-stream"
    assert first.headers["x-appengine-queuename"] == ident
    assert first.headers["x-appengine-taskname"] == task.name.rsplit("/", 1)[1]
    assert first.headers["x-appengine-taskretrycount"] == "0"
    assert "x-appengine-taskpreviousresponse" not in first.headers
    assert not any(name.startswith("x-cloudtasks-") for name in first.headers)
    assert second.headers["x-appengine-taskretrycount"] == "1"
    assert second.headers["x-appengine-taskpreviousresponse"] == "500"
    assert second.status == 200
    if transport == "rest":
        client.transport.close()


def test_an_app_engine_target_job_runs_against_the_app_engine_host(
    start_emulator: StartEmulator, target: Target, ident: str, prefix: str
) -> None:
    emulator = start_emulator("--app-engine-host", urlsplit(target.base_url).netloc, "-q")
    client = emulator.scheduler_client()
    job = client.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{ident}", schedule="0 0 1 1 *",
        app_engine_http_target=scheduler_v1.AppEngineHttpTarget(
            relative_uri=f"{prefix}/cron", body=b"tick")))

    client.run_job(name=job.name)
    (delivery,) = target.wait_under(prefix, timeout=20)

    assert (delivery.method, delivery.path, delivery.body) == ("POST", f"{prefix}/cron", b"tick")
    assert delivery.headers["x-cloudscheduler"] == "true"
    assert delivery.headers["x-appengine-cron"] == "true"
    assert delivery.headers["x-cloudscheduler-jobname"] == ident
    assert delivery.headers["user-agent"] == AGENT


def test_without_app_engine_host_an_app_engine_task_is_refused_at_create(
    start_emulator: StartEmulator, ident: str
) -> None:
    client = start_emulator("--auto-create-queues", "-q").tasks_client()
    with pytest.raises(exceptions.InvalidArgument, match="--app-engine-host HOST:PORT"):
        client.create_task(parent=f"{LOCATION}/queues/{ident}",
                           task=app_engine_task("/example_task_handler"))


@pytest.mark.parametrize("value", ["http://127.0.0.1:8080", "127.0.0.1", "localhost:8080/x",
                                   "localhost:99999"])
def test_a_bad_app_engine_host_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0", "--app-engine-host", value])
    assert exit_info.value.code == 2
    assert f"{value!r} is not HOST:PORT" in capsys.readouterr().err
