"""Strongly typed background tasks with FastAPI, Google Cloud Tasks and Cloud Scheduler."""

from fastapi_cloud_tasks.auth import (
    GOOGLE_CERTS_URL,
    task_url_audience,
    trust_certificates,
    verify_cloud_tasks_token,
)
from fastapi_cloud_tasks.clients import ClientOverride, override_clients
from fastapi_cloud_tasks.decorators import task_default_options
from fastapi_cloud_tasks.delayed_route import (
    DelayedRouteBuilder,
    DelayedTask,
    TaskDelayer,
    delayed_task,
)
from fastapi_cloud_tasks.dependencies import CloudSchedulerHeaders, CloudTasksHeaders, max_retries
from fastapi_cloud_tasks.exceptions import (
    ArgumentProblem,
    BadMethodException,
    FastAPICloudTasksError,
    InvalidScheduleError,
    InvalidTaskOptionError,
    MissingParamError,
    TaskArgumentsError,
    UndeliverableValueError,
    UnknownParamError,
    UnsupportedRouteError,
    WrongTypeError,
)
from fastapi_cloud_tasks.hooks import (
    chained_hook,
    deadline_delayed_hook,
    deadline_scheduled_hook,
    noop_hook,
    oauth_delayed_hook,
    oauth_scheduled_hook,
    oidc_delayed_hook,
    oidc_scheduled_hook,
    oidc_task_hook,
)
from fastapi_cloud_tasks.options import TaskOptionArgs
from fastapi_cloud_tasks.scheduled_route import (
    ScheduledJob,
    ScheduledRouteBuilder,
    ScheduledTask,
    scheduled_task,
)
from fastapi_cloud_tasks.utils import (
    emulator_async_client,
    emulator_client,
    emulator_scheduler_async_client,
    emulator_scheduler_client,
    ensure_queue,
    ensure_queue_async,
    location_path,
    queue_path,
)

__all__ = [
    # Route builders and what they attach to endpoints
    "DelayedRouteBuilder",
    "DelayedTask",
    "ScheduledJob",
    "ScheduledRouteBuilder",
    "ScheduledTask",
    "TaskDelayer",
    "TaskOptionArgs",
    "delayed_task",
    "scheduled_task",
    "task_default_options",
    # Hooks
    "chained_hook",
    "deadline_delayed_hook",
    "deadline_scheduled_hook",
    "noop_hook",
    "oauth_delayed_hook",
    "oauth_scheduled_hook",
    "oidc_delayed_hook",
    "oidc_scheduled_hook",
    "oidc_task_hook",
    # Worker-side dependencies
    "CloudSchedulerHeaders",
    "CloudTasksHeaders",
    "max_retries",
    # Verifying Google-signed ID tokens on the worker
    "GOOGLE_CERTS_URL",
    "task_url_audience",
    "trust_certificates",
    "verify_cloud_tasks_token",
    # Paths, queues and clients
    "ClientOverride",
    "emulator_async_client",
    "emulator_client",
    "emulator_scheduler_async_client",
    "emulator_scheduler_client",
    "ensure_queue",
    "ensure_queue_async",
    "location_path",
    "override_clients",
    "queue_path",
    # Exceptions
    "ArgumentProblem",
    "BadMethodException",
    "FastAPICloudTasksError",
    "InvalidScheduleError",
    "InvalidTaskOptionError",
    "MissingParamError",
    "TaskArgumentsError",
    "UndeliverableValueError",
    "UnknownParamError",
    "UnsupportedRouteError",
    "WrongTypeError",
]
