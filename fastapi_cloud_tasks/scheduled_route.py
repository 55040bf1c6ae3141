"""`ScheduledRouteBuilder`: endpoints that Cloud Scheduler calls on a cron schedule."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, cast

from fastapi.routing import APIRoute
from google.api_core import exceptions
from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks import clients
from fastapi_cloud_tasks.arguments import EndpointSignature, keyword_arguments, supplied_by
from fastapi_cloud_tasks.exceptions import (
    InvalidScheduleError,
    InvalidTaskOptionError,
)
from fastapi_cloud_tasks.options import as_duration, check_base_url, positive_seconds, run_hook
from fastapi_cloud_tasks.registry import EndpointRegistry, side_of
from fastapi_cloud_tasks.schedules import (
    check_description,
    check_job,
    check_schedule,
    check_time_zone,
    complete_retry_config,
)

__all__ = ["ScheduledJob", "ScheduledRouteBuilder", "ScheduledTask", "scheduled_task"]

P = ParamSpec("P")
R = TypeVar("R")

ScheduledHook = Callable[[scheduler_v1.CreateJobRequest], scheduler_v1.CreateJobRequest]

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
LOCATION_PATH = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+$")
ATTEMPT_DEADLINE_RANGE = (timedelta(seconds=15), timedelta(minutes=30))
DEFAULT_ATTEMPT_DEADLINE = timedelta(seconds=180)
# Every scheduled endpoint built in this process, so a test harness can map a URL to its code.
job_endpoints: EndpointRegistry[ScheduledTask[Any, Any]] = EndpointRegistry()
# The fields `.schedule()` owns; an update rewrites exactly these.
MANAGED_FIELDS = ("http_target", "schedule", "time_zone", "description", "retry_config",
                  "attempt_deadline")


supplied_by_cloud_scheduler = supplied_by("x-cloudscheduler")


def check_retry_config(value: object) -> scheduler_v1.RetryConfig:
    """A complete RetryConfig (defaults filled in) from None, a dict or a RetryConfig."""
    if value is None:
        return complete_retry_config(scheduler_v1.RetryConfig())
    if isinstance(value, Mapping):
        try:
            value = scheduler_v1.RetryConfig(**value)
        except (ValueError, TypeError) as exc:  # an unknown field or a value of the wrong type
            raise InvalidScheduleError(f"retry_config={value!r} is invalid: {exc}") from None
    if not isinstance(value, scheduler_v1.RetryConfig):
        raise InvalidScheduleError(
            f"retry_config={value!r} must be a scheduler_v1.RetryConfig, a dict of its fields "
            "or None."
        )
    return complete_retry_config(value)


def _comparable(job: scheduler_v1.Job) -> scheduler_v1.Job:
    """The managed part of a job, with the service's defaults made explicit."""
    target = scheduler_v1.HttpTarget(job.http_target)
    for header in list(target.headers):
        if header.lower() == "user-agent":  # the service stores its own User-Agent
            del target.headers[header]
    if target.http_method == scheduler_v1.HttpMethod.HTTP_METHOD_UNSPECIFIED:
        target.http_method = scheduler_v1.HttpMethod.POST  # type: ignore[assignment]
    return scheduler_v1.Job(
        http_target=target,
        schedule=job.schedule,
        time_zone=job.time_zone or "UTC",
        description=job.description,
        retry_config=check_retry_config(job.retry_config if "retry_config" in job else None),
        attempt_deadline=(
            job.attempt_deadline if "attempt_deadline" in job else DEFAULT_ATTEMPT_DEADLINE
        ),
    )


class ScheduledJob(Generic[P]):
    """One Cloud Scheduler job for an endpoint; `.schedule()` makes it exist as configured.

    Typed by the endpoint's parameters `P`, like `DelayedTask.delay()`.
    """

    def __init__(
        self,
        task: ScheduledTask[P, Any],
        *,
        name: str,
        schedule: str,
        time_zone: str,
        retry_config: scheduler_v1.RetryConfig | Mapping[str, Any] | None,
        description: str | None,
        attempt_deadline: timedelta | float | None,
        force: bool,
    ) -> None:
        if not isinstance(name, str) or not JOB_ID.fullmatch(name):
            raise InvalidScheduleError(
                f"name={name!r} is not a valid job id: use 1 to 500 letters, digits, hyphens "
                "or underscores."
            )
        self.task = task
        self.job_name = f"{task.location_path}/jobs/{name}"
        self.schedule_expression = check_schedule(schedule)
        check_time_zone(time_zone)
        self.time_zone = time_zone
        self.retry_config = check_retry_config(retry_config)
        self.description = description or ""
        try:
            self.attempt_deadline = (
                DEFAULT_ATTEMPT_DEADLINE
                if attempt_deadline is None
                else as_duration("attempt_deadline", attempt_deadline, ATTEMPT_DEADLINE_RANGE)
            )
        except InvalidTaskOptionError as exc:  # a job setting: InvalidScheduleError, as documented
            raise InvalidScheduleError(str(exc)) from None
        self.force = force

    def build_request(self, *args: P.args, **kwargs: P.kwargs) -> scheduler_v1.CreateJobRequest:
        """Validate the arguments and build the CreateJobRequest for this job (pure)."""
        call = self.task.signature.bind(keyword_arguments(self.task.signature, args, kwargs))
        job = scheduler_v1.Job(
            name=self.job_name,
            http_target=scheduler_v1.HttpTarget(
                uri=self.task.base_url + call.path_and_query,
                http_method=scheduler_v1.HttpMethod.__members__[call.method],
                headers=call.headers,
                body=call.body or b"",
            ),
            schedule=self.schedule_expression,
            time_zone=self.time_zone,
            description=check_description(self.description),
            retry_config=self.retry_config,
            attempt_deadline=self.attempt_deadline,
        )
        request = scheduler_v1.CreateJobRequest(parent=self.task.location_path, job=job)
        if self.task.pre_create_hook is not None:
            request = run_hook(self.task.pre_create_hook, request)
        check_job(request.job)  # after the hook, which may have changed the job
        return request

    def schedule(self, *args: P.args, **kwargs: P.kwargs) -> scheduler_v1.Job:
        """Create the job, or update it if it differs (keeping its state), or leave it alone
        if it is already as configured. With `force=True` it is always rewritten. The
        arguments are the endpoint's, sent with every run."""
        request = self.build_request(*args, **kwargs)
        client = self._client()
        timeout = self.task.job_create_timeout
        try:
            existing = client.get_job(name=self.job_name, timeout=timeout)
        except exceptions.NotFound:
            try:
                created: scheduler_v1.Job = client.create_job(request=request, timeout=timeout)
                return created
            except exceptions.AlreadyExists:  # created meanwhile, e.g. by another instance
                existing = client.get_job(name=self.job_name, timeout=timeout)
        if not self.force and _comparable(existing) == _comparable(request.job):
            unchanged: scheduler_v1.Job = existing
            return unchanged
        update = scheduler_v1.UpdateJobRequest(
            job=request.job, update_mask=field_mask_pb2.FieldMask(paths=list(MANAGED_FIELDS))
        )
        updated: scheduler_v1.Job = client.update_job(request=update, timeout=timeout)
        return updated

    def delete(self) -> bool:
        """Delete the job; False if there was none."""
        try:
            self._client().delete_job(name=self.job_name, timeout=self.task.job_create_timeout)
        except exceptions.NotFound:
            return False
        return True

    def _client(self) -> Any:
        client = clients.sync_client("scheduler", self.task.client)
        if client is None:
            raise InvalidTaskOptionError(
                f"{self.task.signature.label} is configured with an asyncio scheduler client; "
                ".schedule() needs a CloudSchedulerClient."
            )
        return client


class ScheduledTask(Generic[P, R]):
    """The scheduler side of one endpoint: `.scheduler(...)`, typed by the endpoint's
    parameters `P`; calling it calls the endpoint. Get it with `scheduled_task(endpoint)`."""

    def __init__(self, route: APIRoute, settings: Mapping[str, Any]) -> None:
        self.route = route
        self.endpoint: Callable[P, R] = route.endpoint
        self.__wrapped__ = self.endpoint
        self.__name__ = getattr(self.endpoint, "__name__", "endpoint")
        self.__qualname__ = getattr(self.endpoint, "__qualname__", self.__name__)
        self.__doc__ = self.endpoint.__doc__
        self.signature = EndpointSignature(route, is_supplied=supplied_by_cloud_scheduler)
        self.base_url: str = settings["base_url"]
        self.location_path: str = settings["location_path"]
        self.job_create_timeout: float = settings["job_create_timeout"]
        self.pre_create_hook: ScheduledHook | None = settings["pre_create_hook"]
        self.client: Any = settings["client"]

    def scheduler(
        self,
        *,
        name: str,
        schedule: str,
        time_zone: str = "UTC",
        retry_config: scheduler_v1.RetryConfig | Mapping[str, Any] | None = None,
        description: str | None = None,
        attempt_deadline: timedelta | float | None = None,
        force: bool = False,
    ) -> ScheduledJob[P]:
        """Describe a job; the schedule and time zone are checked now, nothing is sent until
        `.schedule(**endpoint_arguments)`."""
        return ScheduledJob(
            self, name=name, schedule=schedule, time_zone=time_zone, retry_config=retry_config,
            description=description, attempt_deadline=attempt_deadline, force=force,
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the endpoint itself (as FastAPI would, without the HTTP layer)."""
        return self.endpoint(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<ScheduledTask {self.signature.label}>"


def scheduled_task(endpoint: Callable[P, R]) -> ScheduledTask[P, R]:
    """The typed scheduler side of an endpoint declared on a `ScheduledRouteBuilder` router:
    as a decorator above the route decorator, or called as `scheduled_task(home_cook)`; see
    `delayed_task()`. `.scheduler(...).schedule(...)` is then checked against the endpoint."""
    task = side_of(endpoint, ScheduledTask, "_scheduled_task", "scheduled_task",
                   "ScheduledRouteBuilder")
    return cast("ScheduledTask[P, R]", task)


def ScheduledRouteBuilder(  # a class factory, named like the class it returns
    *,
    base_url: str,
    location_path: str,
    job_create_timeout: float = 10.0,
    pre_create_hook: ScheduledHook | None = None,
    client: scheduler_v1.CloudSchedulerClient | None = None,
) -> type[APIRoute]:
    """A route class whose endpoints gain `.scheduler(name=, schedule=, ...)`.

    Makes no call and creates no client until `.schedule()` or `.delete()`.
    """
    if not isinstance(location_path, str) or not LOCATION_PATH.fullmatch(location_path):
        raise InvalidTaskOptionError(
            f"location_path={location_path!r} must look like 'projects/PROJECT/locations/"
            "LOCATION' (build it with fastapi_cloud_tasks.location_path())."
        )
    settings = {
        "base_url": check_base_url(base_url),
        "location_path": location_path,
        "job_create_timeout": positive_seconds("job_create_timeout", job_create_timeout),
        "pre_create_hook": pre_create_hook,
        "client": client,
    }

    class ScheduledRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            super().__init__(path, endpoint, **kwargs)
            # As for tasks: keep the route the endpoint was first declared with.
            if getattr(endpoint, "_scheduled_task", None) is None:
                task: ScheduledTask[Any, Any] = ScheduledTask(self, settings)
                endpoint._scheduled_task = task  # type: ignore[attr-defined]
                endpoint.scheduler = task.scheduler  # type: ignore[attr-defined]
                job_endpoints.add(task)

    return ScheduledRoute
