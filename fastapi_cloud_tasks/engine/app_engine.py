"""App Engine targets of Cloud Tasks: the create-time checks of a `Task.app_engine_http_request`
and the request of each attempt, sent to the one local host that stands in for the App Engine
app (the emulator's `--app-engine-host`, the harness's in-process app).

Google's rules, from the API reference (`AppEngineHttpRequest`, `AppEngineRouting`,
`Task.dispatch_deadline` in google-cloud-tasks' `types/target.py` and `types/task.py`) and the
page "Create App Engine task handlers" (cloud.google.com/tasks/docs/creating-appengine-handlers):
- the URL is host + `relative_uri`; the relative URI starts with "/" (empty means "/"), has no
  spaces, at most 2083 characters; a body only with POST or PUT; the default method is POST;
- `Queue.app_engine_routing_override`, when set, is used for every task of the queue, whatever
  the task's own `app_engine_routing`;
- headers: `User-Agent` is "AppEngine-Google; (+http://code.google.com/appengine)", appended to
  the task's own; with a body, `Content-Type` defaults to application/octet-stream; `Host`,
  `X-Google-*` and `X-AppEngine-*` cannot be set; each attempt carries X-AppEngine-QueueName,
  -TaskName, -TaskRetryCount, -TaskExecutionCount, -TaskETA, and on retries
  -TaskPreviousResponse and -TaskRetryReason;
- success is a status in 200..299, anything else (or no answer before the deadline) is retried;
- `dispatch_deadline`: unset means the service's own timeout (10 minutes for automatic scaling
  standard apps, 24 hours for manual/basic scaling, 60 minutes for flexible): the fakes use
  10 minutes; when set it must lie in 15 seconds .. 24 hours 15 seconds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks.engine.http_target import unsendable
from fastapi_cloud_tasks.engine.task_messages import METHOD_NAMES, check_method

__all__ = [
    "APP_ENGINE_DEADLINE_RANGE",
    "APP_ENGINE_USER_AGENT",
    "app_engine_headers",
    "app_engine_request",
    "check_app_engine_request",
]

APP_ENGINE_USER_AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"
APP_ENGINE_DEADLINE_RANGE = (timedelta(seconds=15), timedelta(hours=24, seconds=15))
_BODY_METHODS = {int(tasks_v2.HttpMethod.POST), int(tasks_v2.HttpMethod.PUT)}
_RESERVED = ("x-google-", "x-appengine-")


def check_app_engine_request(task: Any, host: str | None) -> None:
    """Cloud Tasks' create-time checks on a raw `Task` protobuf's App Engine request, filling
    in its defaults (POST, "/"). `host` None: no local App Engine app is configured."""
    if host is None:
        raise exceptions.InvalidArgument(
            "Task.app_engine_http_request needs an App Engine app to deliver to: start the "
            "emulator with --app-engine-host HOST:PORT (the local server standing in for your "
            "App Engine app), or send an HTTP target task (Task.http_request)."
        )
    request = task.app_engine_http_request
    if not request.relative_uri:
        request.relative_uri = "/"
    uri = request.relative_uri
    if not uri.startswith("/") or " " in uri:
        raise exceptions.InvalidArgument(
            f"AppEngineHttpRequest.relative_uri {uri!r} must begin with '/' and contain no "
            "spaces."
        )
    if len(uri) > 2083:
        raise exceptions.InvalidArgument(
            "AppEngineHttpRequest.relative_uri must be at most 2083 characters long."
        )
    check_method(request, "AppEngineHttpRequest", body_methods=_BODY_METHODS,
                 body_rule="A body can only be set for POST or PUT App Engine requests.")
    headers = dict(request.headers)
    for header in headers:
        if header.lower() == "host" or header.lower().startswith(_RESERVED):
            raise exceptions.InvalidArgument(
                f"Header {header!r} cannot be set on an App Engine task: Host, X-Google-* "
                "and X-AppEngine-* are Cloud Tasks' own."
            )
    problem = unsendable(_url(host, uri), headers, "AppEngineHttpRequest.relative_uri")
    if problem is not None:
        raise exceptions.InvalidArgument(problem)


def app_engine_request(task: Any, queue: Any, host: str) -> tuple[str, str, dict[str, str], bytes]:
    """One attempt's method, URL, headers (before the X-AppEngine-* ones) and body, for a raw
    `Task` with an App Engine request in the raw `Queue` `queue`. The queue's routing override,
    if set, replaces the task's routing in the stored task (what GetTask shows)."""
    request = task.app_engine_http_request
    if queue is not None and queue.HasField("app_engine_routing_override"):
        request.app_engine_routing.CopyFrom(queue.app_engine_routing_override)
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in ("host", "content-length")}
    agent = next((k for k in headers if k.lower() == "user-agent"), None)
    own = headers.pop(agent) if agent is not None else ""
    headers["User-Agent"] = f"{own} {APP_ENGINE_USER_AGENT}" if own else APP_ENGINE_USER_AGENT
    if request.body and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/octet-stream"
    method = METHOD_NAMES[request.http_method]  # set and checked at create
    return method, _url(host, request.relative_uri), headers, bytes(request.body)


def app_engine_headers(cloud_tasks_headers: dict[str, str]) -> dict[str, str]:
    """The X-AppEngine-* headers of an attempt: the same values HTTP targets get as
    X-CloudTasks-* (queue and task short names, retry and execution counts, ETA, previous
    response and retry reason on retries), under App Engine's names. X-AppEngine-FailFast is
    sent only for a task created to fail fast, which the v2 API cannot ask for: never here."""
    return {
        name.replace("X-CloudTasks-", "X-AppEngine-"): value
        for name, value in cloud_tasks_headers.items() if name.startswith("X-CloudTasks-")
    }


def _url(host: str, relative_uri: str) -> str:
    return f"http://{host}{relative_uri}"
