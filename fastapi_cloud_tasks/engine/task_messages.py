"""Cloud Tasks' rules and output shapes for one Task message: the create-time checks on its
HTTP request, the BASIC/FULL views, the Attempt records, and queue settings templates."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks.engine.http_target import unsendable

__all__ = [
    "METHOD_NAMES",
    "attempt_message",
    "check_http_request",
    "check_method",
    "copy_message",
    "grpc_code",
    "overlay_queue",
    "set_timestamp",
    "task_view",
]

# Plain ints: comparing proto-plus enums costs more than the rest of a check.
BODY_METHODS = {int(tasks_v2.HttpMethod.POST), int(tasks_v2.HttpMethod.PUT),
                int(tasks_v2.HttpMethod.PATCH)}
_POST = int(tasks_v2.HttpMethod.POST)
# POST, GET, HEAD, PUT, DELETE, PATCH, OPTIONS: the values of Google's HttpMethod enum. Protobuf
# enums are open, so a client can send any number (gRPC, or REST `"httpMethod": 99`).
METHOD_NAMES = {
    int(value): name for name, value in tasks_v2.HttpMethod.__members__.items() if value
}
_FULL = int(tasks_v2.Task.View.FULL)
_BASIC = int(tasks_v2.Task.View.BASIC)
RESERVED_HEADER_PREFIXES = ("x-google-", "x-appengine-")
_ATTEMPT_PB = tasks_v2.Attempt.pb()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_method(
    target: Any, label: str, *, allowed: Collection[int] = METHOD_NAMES,
    refusal: str = "is not an HttpMethod", body_methods: Collection[int] = BODY_METHODS,
    body_rule: str = "",
) -> None:
    """Set an unset `target.http_method` to POST, as Google does, and refuse a number outside
    `allowed` (protobuf enums are open: it would fail every attempt) or, when `body_rule` is
    given, a body with a method outside `body_methods`. Cloud Tasks and Cloud Scheduler
    number HttpMethod alike, so one table serves HTTP and App Engine targets of both."""
    if not target.http_method:  # HTTP_METHOD_UNSPECIFIED
        target.http_method = _POST
    elif target.http_method not in allowed:
        raise exceptions.InvalidArgument(
            f"{label}.http_method {target.http_method} {refusal}: use one of "
            f"{', '.join(METHOD_NAMES[n] for n in sorted(allowed))}."
        )
    if body_rule and target.body and target.http_method not in body_methods:
        raise exceptions.InvalidArgument(body_rule)


def set_timestamp(timestamp: Any, when: datetime) -> None:
    """`timestamp.FromDatetime(when)` for an aware datetime, without its time-tuple detour
    (a third of the cost of creating a task)."""
    delta = when - _EPOCH
    timestamp.seconds = delta.days * 86400 + delta.seconds
    timestamp.nanos = delta.microseconds * 1000


def copy_message(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def check_http_request(task: Any) -> None:
    """Cloud Tasks' checks on a raw `Task` protobuf's HTTP request."""
    if not task.HasField("http_request"):
        raise exceptions.InvalidArgument(
            "Set Task.http_request (an HTTP target task) or Task.app_engine_http_request."
        )
    http = task.http_request
    if not http.url.startswith(("http://", "https://")):
        raise exceptions.InvalidArgument("HttpTarget.url must start with 'http://' or 'https://'.")
    if len(http.url) > 2083:
        raise exceptions.InvalidArgument("HttpTarget.url must be at most 2083 characters long.")
    check_method(http, "HttpRequest",
                 body_rule="Body can only be set for POST, PUT or PATCH HTTP requests.")
    headers = dict(http.headers)  # reading the protobuf map once costs less than thrice
    for header in headers:
        if header.lower().startswith(RESERVED_HEADER_PREFIXES):
            raise exceptions.InvalidArgument(f"Header {header!r} is reserved.")
    if sum(map(len, headers)) + sum(map(len, headers.values())) > 80 * 1024:
        raise exceptions.InvalidArgument("Headers must be smaller than 80 KB in total.")
    problem = unsendable(http.url, headers, "HttpTarget.url")
    if problem is not None:
        raise exceptions.InvalidArgument(problem)


def task_view(task: tasks_v2.Task, view: int) -> tasks_v2.Task:
    copy = copy_message(tasks_v2.Task.pb(task))
    full = view == _FULL
    copy.view = _FULL if full else _BASIC
    if not full:  # BASIC omits the (possibly large) body
        if copy.HasField("app_engine_http_request"):  # touching http_request would replace it
            copy.app_engine_http_request.body = b""
        else:
            copy.http_request.body = b""
    wrapped: tasks_v2.Task = tasks_v2.Task.wrap(copy)
    return wrapped


def attempt_message(
    schedule_time: datetime, dispatch_time: datetime, now: datetime, status: int | None
) -> Any:
    """The `Attempt` output message (raw protobuf) for an attempt that ended `now`."""
    attempt = _ATTEMPT_PB()
    set_timestamp(attempt.schedule_time, schedule_time)
    set_timestamp(attempt.dispatch_time, dispatch_time)
    if status is not None:
        set_timestamp(attempt.response_time, now)
        attempt.response_status.code = 0 if 200 <= status < 300 else grpc_code(status)
        attempt.response_status.message = f"HTTP {status}"
    else:
        attempt.response_status.code = 4
        attempt.response_status.message = "Deadline exceeded"
    return attempt


def grpc_code(status: int) -> int:
    """The google.rpc code of an HTTP status, by the HTTP mappings of google/rpc/code.proto
    as api_core's exception classes hold them: 404 NOT_FOUND; 403, 401, 429 and 504 through
    the one gRPC class under their HTTP class (PERMISSION_DENIED, UNAUTHENTICATED,
    RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED); UNKNOWN where no single code is mapped (3xx, 409).
    Cloud Tasks' Attempt.response_status and Cloud Scheduler's Job.status both use it."""
    exc_class = exceptions.exception_class_for_http_status(status)
    code = getattr(exc_class, "grpc_status_code", None)
    if code is None:
        mapped = [sub.grpc_status_code for sub in exc_class.__subclasses__()
                  if getattr(sub, "grpc_status_code", None) is not None]
        code = mapped[0] if len(mapped) == 1 else None
    return int(code.value[0]) if code is not None else 2  # UNKNOWN


def overlay_queue(template: tasks_v2.Queue, queue: tasks_v2.Queue) -> tasks_v2.Queue:
    """`queue` with the template's retry and rate settings where `queue` leaves them unset."""
    merged = tasks_v2.Queue(queue)
    for section in ("retry_config", "rate_limits"):
        source, target = getattr(template, section), getattr(merged, section)
        for name in type(source).meta.fields:
            if name in source and not (name in target and getattr(target, name)):
                setattr(target, name, getattr(source, name))
    return merged
