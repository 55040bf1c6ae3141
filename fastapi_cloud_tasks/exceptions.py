"""The exceptions this package raises: one base class, a subclass per kind of mistake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class FastAPICloudTasksError(Exception):
    """Base class of every exception raised by fastapi_cloud_tasks."""


class BadMethodException(FastAPICloudTasksError, ValueError):
    """Raised when an endpoint cannot become a task or a job: several HTTP methods, a method
    Cloud Tasks cannot send, a body on GET/HEAD/DELETE, or Form/File parameters."""


UnsupportedRouteError = BadMethodException


class InvalidTaskOptionError(FastAPICloudTasksError, ValueError):
    """Raised when an option of `.options()`, `@task_default_options` or a builder is invalid
    (unknown name, bad task id, countdown in the past, schedule time over 30 days ahead...)."""


class InvalidScheduleError(FastAPICloudTasksError, ValueError):
    """Raised when a Cloud Scheduler cron expression, time zone or job setting is invalid."""


@dataclass(frozen=True)
class ArgumentProblem:
    """One bad argument of a `.delay()` / `.schedule()` call."""

    kind: str  # "missing", "unknown", "type" or "undeliverable"
    param: str
    location: str  # "path", "query", "header", "cookie", "body" or "" for unknown names
    message: str
    value: Any = None

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location else ""
        return f"  {self.param}{where}: {self.message}"


class TaskArgumentsError(FastAPICloudTasksError, ValueError):
    """Raised when the arguments of `.delay()` or `.schedule()` do not match the endpoint.

    Lists every problem at once; nothing is sent. `problems` holds them as `ArgumentProblem`s.
    """

    def __init__(self, endpoint: str, problems: Sequence[ArgumentProblem]) -> None:
        self.endpoint = endpoint
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(str(p) for p in self.problems)
        noun = "argument" if count == 1 else "arguments"
        super().__init__(
            f"{count} invalid {noun} for {endpoint}; nothing was sent:\n{lines}"
        )


class MissingParamError(TaskArgumentsError):
    """Raised when every problem of a call is a required parameter that was not given."""


class WrongTypeError(TaskArgumentsError):
    """Raised when every problem of a call is a value the endpoint's schema rejects."""


class UnknownParamError(TaskArgumentsError):
    """Raised when every problem of a call is a keyword the endpoint does not declare."""


class UndeliverableValueError(TaskArgumentsError):
    """Raised when a valid value cannot reach the endpoint over HTTP unchanged
    (a `/` in a plain path parameter, a newline in a header...)."""


_BY_KIND: dict[str, type[TaskArgumentsError]] = {
    "missing": MissingParamError,
    "type": WrongTypeError,
    "unknown": UnknownParamError,
    "undeliverable": UndeliverableValueError,
}


def arguments_error(endpoint: str, problems: Sequence[ArgumentProblem]) -> TaskArgumentsError:
    """The most specific error class that covers all `problems`."""
    kinds = {p.kind for p in problems}
    cls = _BY_KIND[kinds.pop()] if len(kinds) == 1 else TaskArgumentsError
    return cls(endpoint, problems)
