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


class CapturedTask:
    """A task as Cloud Tasks stores it (a snapshot taken when you read it)."""

    def __init__(self, record: TaskRecord) -> None:
        http = tasks_v2.Task.pb(record.task).http_request  # raw reads: taken on every attempt
        self.record = record
        self.name: str = record.name
        self.queue: str = record.queue_name
        self.url: str = http.url
        self.method: str = _METHOD_NAMES[http.http_method or 1]
        self.headers: dict[str, str] = dict(http.headers)
        self.body: bytes = http.body
        self.schedule_time: datetime = record.schedule_time
        self.request: tasks_v2.CreateTaskRequest = record.request
        self.dispatch_count = record.dispatch_count

    @functools.cached_property
    def _found(self) -> tuple[Any, HttpCall | None]:
        found = find_endpoint(self.method, self.url, self.headers, self.body,
                              task_endpoints.newest_first())
        return found if found is not None else (None, None)

    @property
    def _side(self) -> Any:
        return self._found[0]

    @property
    def _call(self) -> HttpCall | None:
        return self._found[1]

    @property
    def endpoint(self) -> Callable[..., Any] | None:
        """The endpoint function, when the URL is one of a DelayedRouteBuilder's routes."""
        return None if self._side is None else self._side.endpoint

    @property
    def arguments(self) -> dict[str, Any]:
        """The endpoint's arguments decoded from the request, typed as the endpoint gets them
        (what `.delay()` was called with)."""
        if self._side is None or self._call is None:
            raise LookupError(f"{self.url} is not the URL of a known task endpoint")
        values: dict[str, Any]
        values, errors = self._side.signature.parse(self._call)
        if errors:
            raise ValueError(f"the endpoint would reject this task: {errors}")
        return values

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[1]

    def describe(self) -> str:
        """`module.func(arg=..., ...)` or the URL, for failure messages."""
        if self._side is None:
            return f"{self.method} {self.url}"
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        except ValueError:
            args = "<undecodable>"
        return f"{self._side.endpoint.__qualname__}({args})"

    def __repr__(self) -> str:
        return f"<CapturedTask {self.short_name} {self.describe()} at {self.schedule_time}>"


class CapturedJob:
    """A Cloud Scheduler job as the service stores it (a snapshot taken when you read it)."""

    def __init__(self, record: JobRecord) -> None:
        job = record.job
        target = job.http_target
        self.record = record
        self.name: str = job.name
        self.schedule: str = job.schedule
        self.time_zone: str = job.time_zone
        self.url: str = target.uri
        self.method: str = scheduler_v1.HttpMethod(target.http_method or 1).name
        self.headers: dict[str, str] = dict(target.headers)
        self.body: bytes = bytes(target.body)
        self.state: str = scheduler_v1.Job.State(job.state).name
        self.retry_config = scheduler_v1.RetryConfig(job.retry_config)  # a copy, not a view
        self.attempt_deadline: timedelta = job.attempt_deadline
        self.job: scheduler_v1.Job = scheduler_v1.Job(job)
        self.next_run: datetime | None = record.next_run
        found = find_endpoint(self.method, self.url, self.headers, self.body,
                              job_endpoints.newest_first())
        self._side: Any = found[0] if found is not None else None
        self._call = found[1] if found is not None else None

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[1]

    @property
    def endpoint(self) -> Callable[..., Any] | None:
        return None if self._side is None else self._side.endpoint

    @property
    def arguments(self) -> dict[str, Any]:
        """The endpoint's arguments decoded from the job's request, typed."""
        if self._side is None or self._call is None:
            raise LookupError(f"{self.url} is not the URL of a known scheduled endpoint")
        values: dict[str, Any]
        values, errors = self._side.signature.parse(self._call)
        if errors:
            raise ValueError(f"the endpoint would reject this job: {errors}")
        return values

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        return f"job {self.short_name} ({self.schedule} {self.time_zone}) {self.method} {self.url}"

    def __repr__(self) -> str:
        return f"<CapturedJob {self.describe()} {self.state} next {self.next_run}>"
