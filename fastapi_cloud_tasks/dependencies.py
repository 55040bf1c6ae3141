"""Worker-side FastAPI dependencies: what Cloud Tasks and Cloud Scheduler tell an attempt.

These headers say where a request claims to come from; they prove nothing. Protect task
routes with an ID token check (or Cloud Run's IAM) before trusting them.
"""

# No `from __future__ import annotations` here: older FastAPI releases cannot resolve string
# annotations of a class used as a dependency (a class has no __globals__), e.g. 0.115.
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Header, HTTPException

from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError

__all__ = ["CloudSchedulerHeaders", "CloudTasksHeaders", "max_retries"]


class CloudTasksHeaders:
    """The `X-CloudTasks-*` headers of the current attempt, typed.

    Use as `headers: CloudTasksHeaders = Depends()`. `previous_response` and `retry_reason`
    are None on a first attempt; `eta` is the task's schedule time in UTC.
    """

    def __init__(
        self,
        retry_count: Annotated[int, Header(alias="X-CloudTasks-TaskRetryCount")] = 0,
        execution_count: Annotated[int, Header(alias="X-CloudTasks-TaskExecutionCount")] = 0,
        queue_name: Annotated[str, Header(alias="X-CloudTasks-QueueName")] = "",
        task_name: Annotated[str, Header(alias="X-CloudTasks-TaskName")] = "",
        eta: Annotated[float | None, Header(alias="X-CloudTasks-TaskETA")] = None,
        previous_response: Annotated[
            int | None, Header(alias="X-CloudTasks-TaskPreviousResponse")
        ] = None,
        retry_reason: Annotated[str | None, Header(alias="X-CloudTasks-TaskRetryReason")] = None,
    ) -> None:
        self.retry_count = retry_count
        self.execution_count = execution_count
        self.queue_name = queue_name
        self.task_name = task_name
        self.eta = None if eta is None else datetime.fromtimestamp(eta, tz=timezone.utc)
        self.previous_response = previous_response
        self.retry_reason = retry_reason

    def __repr__(self) -> str:
        return (
            f"CloudTasksHeaders(queue_name={self.queue_name!r}, task_name={self.task_name!r}, "
            f"retry_count={self.retry_count}, execution_count={self.execution_count}, "
            f"eta={self.eta!r}, previous_response={self.previous_response!r})"
        )


class CloudSchedulerHeaders:
    """The `X-CloudScheduler-*` headers of the current run, typed.

    `schedule_time` is the occurrence's scheduled time (the same on every retry of it).
    """

    def __init__(
        self,
        job_name: Annotated[str, Header(alias="X-CloudScheduler-JobName")] = "",
        schedule_time: Annotated[
            datetime | None, Header(alias="X-CloudScheduler-ScheduleTime")
        ] = None,
        is_scheduled: Annotated[bool, Header(alias="X-CloudScheduler")] = False,
    ) -> None:
        self.job_name = job_name
        self.schedule_time = schedule_time
        self.is_scheduled = is_scheduled

    def __repr__(self) -> str:
        return (
            f"CloudSchedulerHeaders(job_name={self.job_name!r}, "
            f"schedule_time={self.schedule_time!r})"
        )


def max_retries(count: int = 20) -> Callable[[int], None]:
    """A dependency that acknowledges (HTTP 200) without running the endpoint once the task
    has been retried `count` times, so Cloud Tasks stops retrying it.

    `@router.post("/work", dependencies=[Depends(max_retries(3))])`
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidTaskOptionError(f"max_retries(count={count!r}) needs a whole number >= 0.")

    def give_up_after(
        retry_count: Annotated[int, Header(alias="X-CloudTasks-TaskRetryCount")] = 0,
    ) -> None:
        if retry_count >= count:
            raise HTTPException(
                status_code=200,
                detail=f"Acknowledged without running: retried {retry_count} times "
                f"(max_retries={count}).",
            )

    return give_up_after
