"""What a test sees of a task: its stored request, and the endpoint and arguments behind it."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks.arguments import HttpCall
from fastapi_cloud_tasks.delayed_route import DelayedTask, task_endpoints
from fastapi_cloud_tasks.engine.cloud_scheduler import JobRecord
from fastapi_cloud_tasks.engine.cloud_tasks import TaskRecord
from fastapi_cloud_tasks.exceptions import FastAPICloudTasksError
from fastapi_cloud_tasks.scheduled_route import job_endpoints

__all__ = ["CapturedJob", "CapturedTask", "find_endpoint"]

_METHOD_NAMES = {int(value): name for name, value in tasks_v2.HttpMethod.__members__.items()}
_JOB_METHOD_NAMES = {
    int(value): name for name, value in scheduler_v1.HttpMethod.__members__.items()
}
_JOB_STATE_NAMES = {int(value): name for name, value in scheduler_v1.Job.State.__members__.items()}


def find_endpoint(
    method: str, url: str, headers: dict[str, str], body: bytes, sides: Iterable[Any]
) -> tuple[Any, HttpCall] | None:
    """The task/job side (DelayedTask, ScheduledTask) whose route `url` targets, with the
    request as an HttpCall relative to its base URL."""
    parts = urlsplit(url)
    for side in sides:
        try:
            base = _base_url(side)
        except FastAPICloudTasksError:  # its options are invalid: it cannot have sent a task
            continue
        if side.signature.method != method or not url.startswith(base):
            continue
        base_path = urlsplit(base).path.rstrip("/")
        call = HttpCall(method, parts.path[len(base_path):] or "/", parts.query, headers, body)
        if side.route.path_regex.match(unquote(call.path)):
            return side, call
    return None


def _base_url(side: Any) -> str:
    if isinstance(side, DelayedTask):
        return side.default_options.base_url
    return str(side.base_url)


class _Captured:
    """What tasks and jobs share: the request they make, and the endpoint behind its URL."""

    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    name: str
    _registry: Any  # the EndpointRegistry holding the endpoints this kind can target
    _what: str

    @functools.cached_property
    def _found(self) -> tuple[Any, HttpCall | None]:
        found = find_endpoint(self.method, self.url, self.headers, self.body,
                              self._registry.newest_first())
        return found if found is not None else (None, None)

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[1]

    @property
    def endpoint(self) -> Callable[..., Any] | None:
        """The endpoint function, when the URL is one of a route builder's routes."""
        side = self._found[0]
        return None if side is None else side.endpoint

    @property
    def arguments(self) -> dict[str, Any]:
        """The endpoint's arguments decoded from the request, typed as the endpoint gets them
        (what `.delay()` or `.schedule()` was called with)."""
        side, call = self._found
        if side is None or call is None:
            raise LookupError(f"{self.url} is not the URL of a known {self._what} endpoint")
        values: dict[str, Any]
        values, errors = side.signature.parse(call)
        if errors:
            raise ValueError(f"the endpoint would reject this {self._what}: {errors}")
        return values

    def json(self) -> Any:
        return json.loads(self.body)

    def _call_text(self) -> str:
        side = self._found[0]
        if side is None:
            return f"{self.method} {self.url}"
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        except ValueError:
            args = "<undecodable>"
        return f"{side.endpoint.__qualname__}({args})"


class CapturedTask(_Captured):
    """A task as Cloud Tasks stores it (a snapshot taken when you read it)."""

    _registry = task_endpoints
    _what = "task"

    def __init__(self, record: TaskRecord) -> None:
        http = tasks_v2.Task.pb(record.task).http_request  # raw reads: taken on every attempt
        self.record = record
        self.name = record.name
        self.queue: str = record.queue_name
        self.url = http.url
        self.method = _METHOD_NAMES[http.http_method or 1]
        self.headers = dict(http.headers)
        self.body = http.body
        self.schedule_time: datetime = record.schedule_time
        self.request: tasks_v2.CreateTaskRequest = record.request
        self.dispatch_count = record.dispatch_count

    def describe(self) -> str:
        """`module.func(arg=..., ...)` or the URL, for failure messages."""
        return self._call_text()

    def __repr__(self) -> str:
        return f"<CapturedTask {self.short_name} {self.describe()} at {self.schedule_time}>"


class CapturedJob(_Captured):
    """A Cloud Scheduler job as the service stores it (a snapshot taken when you read it)."""

    _registry = job_endpoints
    _what = "scheduled"

    def __init__(self, record: JobRecord) -> None:
        copy = scheduler_v1.Job.pb()()
        copy.CopyFrom(scheduler_v1.Job.pb(record.job))  # one raw copy: taken on every run
        target = copy.http_target
        self.record = record
        self.job: scheduler_v1.Job = scheduler_v1.Job.wrap(copy)
        self.name = copy.name
        self.schedule: str = copy.schedule
        self.time_zone: str = copy.time_zone
        self.url = target.uri
        self.method = _JOB_METHOD_NAMES[target.http_method or 1]
        self.headers = dict(target.headers)
        self.body = target.body
        self.state: str = _JOB_STATE_NAMES[copy.state]
        self.next_run: datetime | None = record.next_run

    @property
    def retry_config(self) -> scheduler_v1.RetryConfig:
        return self.job.retry_config

    @property
    def attempt_deadline(self) -> timedelta:
        deadline: timedelta = self.job.attempt_deadline
        return deadline

    def describe(self) -> str:
        return f"job {self.short_name} ({self.schedule} {self.time_zone}) {self.method} {self.url}"

    def __repr__(self) -> str:
        return f"<CapturedJob {self.describe()} {self.state} next {self.next_run}>"
