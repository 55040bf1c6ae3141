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
from fastapi_cloud_tasks.engine.pubsub_target import PUBLISH_URL
from fastapi_cloud_tasks.exceptions import FastAPICloudTasksError
from fastapi_cloud_tasks.scheduled_route import job_endpoints
from pytest_cloudtasks.delivery import APP_ENGINE_HOST

__all__ = ["CapturedJob", "CapturedTask", "Snapshots", "find_endpoint"]

_METHOD_NAMES = {int(value): name for name, value in tasks_v2.HttpMethod.__members__.items()}
_JOB_METHOD_NAMES = {
    int(value): name for name, value in scheduler_v1.HttpMethod.__members__.items()
}
_JOB_STATE_NAMES = {int(value): name for name, value in scheduler_v1.Job.State.__members__.items()}
_JOB_STATE_VALUES = {name: value for value, name in _JOB_STATE_NAMES.items()}


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


class _Request:
    """The HTTP request a task or job makes, and the endpoint behind its URL: one per task,
    and per job definition, shared by all the snapshots taken of it (see `Snapshots`)."""

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.found: tuple[Any, HttpCall | None] | None = None

    def endpoint_in(self, registry: Any) -> tuple[Any, HttpCall | None]:
        if self.found is None:
            found = find_endpoint(self.method, self.url, self.headers, self.body,
                                  registry.newest_first())
            self.found = found if found is not None else (None, None)
        return self.found


class _Captured:
    """What tasks and jobs share: the request they make, and the endpoint behind its URL."""

    name: str
    _request: _Request
    _registry: Any  # the EndpointRegistry holding the endpoints this kind can target
    _what: str

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def headers(self) -> dict[str, str]:
        return self._request.headers

    @property
    def body(self) -> bytes:
        return self._request.body

    @property
    def _found(self) -> tuple[Any, HttpCall | None]:
        return self._request.endpoint_in(self._registry)

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

    def __init__(self, record: TaskRecord, request: _Request | None = None) -> None:
        self.record = record
        self.name = record.name
        self.queue: str = record.queue_name
        self._request = request or _task_request(record)
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

    def __init__(self, record: JobRecord, definition: _JobDefinition | None = None) -> None:
        raw = scheduler_v1.Job.pb(record.job)
        self.record = record
        self._definition = definition or _JobDefinition(_copy_job(raw))
        self._request = self._definition.request
        self.name = self._definition.name
        self.schedule: str = self._definition.schedule
        self.time_zone: str = self._definition.time_zone
        self.state: str = _JOB_STATE_NAMES[raw.state]
        self.next_run: datetime | None = record.next_run

    @functools.cached_property
    def job(self) -> scheduler_v1.Job:
        """The job's protobuf, built on first use (from the snapshot of a run: its definition
        and state at that run, without the output fields of the last attempt)."""
        copy = _copy_job(self._definition.raw)
        copy.state = _JOB_STATE_VALUES[self.state]
        job: scheduler_v1.Job = scheduler_v1.Job.wrap(copy)
        return job

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


def _task_request(record: TaskRecord) -> _Request:
    task = tasks_v2.Task.pb(record.task)  # raw reads: taken on every attempt
    if task.HasField("app_engine_http_request"):  # sent to the harness's App Engine host
        app = task.app_engine_http_request
        url = f"http://{APP_ENGINE_HOST}{app.relative_uri}"
        return _Request(_METHOD_NAMES[app.http_method or 1], url, dict(app.headers), app.body)
    http = task.http_request
    return _Request(_METHOD_NAMES[http.http_method or 1], http.url, dict(http.headers),
                    http.body)


def _copy_job(raw: Any) -> Any:
    copy = scheduler_v1.Job.pb()()
    copy.CopyFrom(raw)
    return copy


class _JobDefinition:
    """A job's protobuf as it was at a snapshot (a private copy), and the request it makes."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        if raw.HasField("pubsub_target"):  # published, not sent: its REST publish call
            pubsub = raw.pubsub_target
            self.request = _Request("POST", PUBLISH_URL.format(topic=pubsub.topic_name), {},
                                    pubsub.data)
        elif raw.HasField("app_engine_http_target"):  # sent to the harness's App Engine host
            app = raw.app_engine_http_target
            url = f"http://{APP_ENGINE_HOST}{app.relative_uri.partition('#')[0]}"
            self.request = _Request(_JOB_METHOD_NAMES[app.http_method or 1], url,
                                    dict(app.headers), app.body)
        else:
            target = raw.http_target
            self.request = _Request(_JOB_METHOD_NAMES[target.http_method or 1], target.uri,
                                    dict(target.headers), target.body)
        self.name: str = raw.name
        self.schedule: str = raw.schedule
        self.time_zone: str = raw.time_zone


# What a run's snapshot leaves out: the job's state is kept apart, and the last attempt's
# output changes on every run (read it from `cloudtasks_scheduler.jobs`).
_PER_RUN_FIELDS = ("state", "status", "last_attempt_time")


class Snapshots:
    """The task or job behind each attempt, kept lean: a day of 100 every-minute jobs is
    144,000 attempts. A task's request never changes, so its attempts share one; a job's runs
    share one definition until the job is updated."""

    def __init__(self) -> None:
        self._tasks: dict[TaskRecord, _Request] = {}
        self._jobs: dict[JobRecord, tuple[bytes, _JobDefinition]] = {}

    def task(self, record: TaskRecord) -> CapturedTask:
        request = self._tasks.get(record)
        if request is None:
            request = self._tasks[record] = _task_request(record)
        return CapturedTask(record, request)

    def job(self, record: JobRecord) -> CapturedJob:
        raw = _copy_job(scheduler_v1.Job.pb(record.job))
        for name in _PER_RUN_FIELDS:
            raw.ClearField(name)
        key = raw.SerializeToString(deterministic=True)
        known = self._jobs.get(record)
        if known is None or known[0] != key:
            known = self._jobs[record] = (key, _JobDefinition(raw))
        return CapturedJob(record, known[1])
