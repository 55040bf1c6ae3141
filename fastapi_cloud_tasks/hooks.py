"""`pre_create_hook`s: edit the CreateTaskRequest / CreateJobRequest just before it is sent.

A hook takes the request and returns it (changed or replaced). Delayed hooks see a
`tasks_v2.CreateTaskRequest`, scheduled hooks a `scheduler_v1.CreateJobRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import duration_pb2

from fastapi_cloud_tasks.options import DISPATCH_DEADLINE_RANGE, as_duration
from fastapi_cloud_tasks.scheduled_route import ATTEMPT_DEADLINE_RANGE

__all__ = [
    "DelayedHook",
    "DelayedTaskHook",
    "ScheduledHook",
    "ScheduledTaskHook",
    "chained_hook",
    "deadline_delayed_hook",
    "deadline_scheduled_hook",
    "noop_hook",
    "oauth_delayed_hook",
    "oauth_scheduled_hook",
    "oidc_delayed_hook",
    "oidc_scheduled_hook",
    "oidc_task_hook",
]

Request = TypeVar("Request")
DelayedHook = Callable[[tasks_v2.CreateTaskRequest], tasks_v2.CreateTaskRequest]
ScheduledHook = Callable[[scheduler_v1.CreateJobRequest], scheduler_v1.CreateJobRequest]
# The names the 0.1 releases used.
DelayedTaskHook = DelayedHook
ScheduledTaskHook = ScheduledHook


def noop_hook(request: Request) -> Request:
    """Leave the request as it is."""
    return request


def chained_hook(*hooks: Callable[[Any], Any]) -> Callable[[Request], Request]:
    """Run `hooks` in order, each on the previous one's result."""

    def chain(request: Request) -> Request:
        for hook in hooks:
            request = hook(request)
        return request

    return chain


def oidc_delayed_hook(token: tasks_v2.OidcToken) -> DelayedHook:
    """Send an OIDC ID token with every task (Cloud Run, IAP, or your own check).

    Without `token.audience` Google uses the full task URL, query string included.
    """

    def add_token(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
        request.task.http_request.oidc_token = token
        return request

    return add_token


oidc_task_hook = oidc_delayed_hook  # the name the 0.1 README used


def oidc_scheduled_hook(token: scheduler_v1.OidcToken) -> ScheduledHook:
    """Send an OIDC ID token with every run of a scheduled job."""

    def add_token(request: scheduler_v1.CreateJobRequest) -> scheduler_v1.CreateJobRequest:
        request.job.http_target.oidc_token = token
        return request

    return add_token


def oauth_delayed_hook(token: tasks_v2.OAuthToken) -> DelayedHook:
    """Send an OAuth access token with every task (for Google APIs as targets)."""

    def add_token(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
        request.task.http_request.oauth_token = token
        return request

    return add_token


def oauth_scheduled_hook(token: scheduler_v1.OAuthToken) -> ScheduledHook:
    """Send an OAuth access token with every run of a scheduled job."""

    def add_token(request: scheduler_v1.CreateJobRequest) -> scheduler_v1.CreateJobRequest:
        request.job.http_target.oauth_token = token
        return request

    return add_token


def deadline_delayed_hook(duration: timedelta | float | duration_pb2.Duration) -> DelayedHook:
    """How long Cloud Tasks waits for the worker's response (15 s to 30 min; default 10 min)."""
    deadline = as_duration("duration", duration, DISPATCH_DEADLINE_RANGE)

    def set_deadline(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
        request.task.dispatch_deadline = deadline
        return request

    return set_deadline


def deadline_scheduled_hook(duration: timedelta | float | duration_pb2.Duration) -> ScheduledHook:
    """How long Cloud Scheduler waits for the job's response (15 s to 30 min; default 3 min)."""
    deadline = as_duration("duration", duration, ATTEMPT_DEADLINE_RANGE)

    def set_deadline(request: scheduler_v1.CreateJobRequest) -> scheduler_v1.CreateJobRequest:
        request.job.attempt_deadline = deadline
        return request

    return set_deadline
