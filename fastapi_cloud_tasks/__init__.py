"""Strongly typed background tasks with FastAPI, Google Cloud Tasks and Cloud Scheduler.

The names below are imported on first use: the emulator and the pytest plugin import this
package without paying for FastAPI and Google's clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi_cloud_tasks.lazy_exports import lazy_getattr

if TYPE_CHECKING:
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
    from fastapi_cloud_tasks.dependencies import (
        CloudSchedulerHeaders,
        CloudTasksHeaders,
        max_retries,
    )
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

_MODULES = {
    "GOOGLE_CERTS_URL": "auth",
    "task_url_audience": "auth",
    "trust_certificates": "auth",
    "verify_cloud_tasks_token": "auth",
    "ClientOverride": "clients",
    "override_clients": "clients",
    "task_default_options": "decorators",
    "DelayedRouteBuilder": "delayed_route",
    "DelayedTask": "delayed_route",
    "TaskDelayer": "delayed_route",
    "delayed_task": "delayed_route",
    "CloudSchedulerHeaders": "dependencies",
    "CloudTasksHeaders": "dependencies",
    "max_retries": "dependencies",
    "ArgumentProblem": "exceptions",
    "BadMethodException": "exceptions",
    "FastAPICloudTasksError": "exceptions",
    "InvalidScheduleError": "exceptions",
    "InvalidTaskOptionError": "exceptions",
    "MissingParamError": "exceptions",
    "TaskArgumentsError": "exceptions",
    "UndeliverableValueError": "exceptions",
    "UnknownParamError": "exceptions",
    "UnsupportedRouteError": "exceptions",
    "WrongTypeError": "exceptions",
    "chained_hook": "hooks",
    "deadline_delayed_hook": "hooks",
    "deadline_scheduled_hook": "hooks",
    "noop_hook": "hooks",
    "oauth_delayed_hook": "hooks",
    "oauth_scheduled_hook": "hooks",
    "oidc_delayed_hook": "hooks",
    "oidc_scheduled_hook": "hooks",
    "oidc_task_hook": "hooks",
    "TaskOptionArgs": "options",
    "ScheduledJob": "scheduled_route",
    "ScheduledRouteBuilder": "scheduled_route",
    "ScheduledTask": "scheduled_route",
    "scheduled_task": "scheduled_route",
    "emulator_async_client": "utils",
    "emulator_client": "utils",
    "emulator_scheduler_async_client": "utils",
    "emulator_scheduler_client": "utils",
    "ensure_queue": "utils",
    "ensure_queue_async": "utils",
    "location_path": "utils",
    "queue_path": "utils",
}

if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, _MODULES)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
