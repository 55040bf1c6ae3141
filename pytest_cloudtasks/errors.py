"""The exceptions pytest_cloudtasks raises: one base class, a subclass per kind of failure.

A task that fails is an `AssertionError` (the app misbehaved); a test or set-up that cannot
work as written is a `CloudTasksUsageError` (change the test or its configuration, not the
app): never an AssertionError, so it does not read as a failed expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi_cloud_tasks.exceptions import ArgumentProblem

__all__ = [
    "AssertionArgumentsError",
    "ClientOutsideFixtureError",
    "CloudTasksUsageError",
    "PytestCloudTasksError",
    "TaskFailed",
    "TaskRoutingError",
]


class PytestCloudTasksError(Exception):
    """Base class of every exception raised by pytest_cloudtasks."""


class TaskFailed(PytestCloudTasksError, AssertionError):
    """Raised by a drain when a task fails for good (its retries are used up), when the app
    rejects a task's payload (422), or on the first exception with `fail_fast`."""

    def __init__(self, message: str, attempt: Any) -> None:
        super().__init__(message)
        self.attempt = attempt  # the last Attempt


class CloudTasksUsageError(PytestCloudTasksError):
    """Raised when a test or its configuration asks for something that cannot work; the
    message says what to change."""


class ClientOutsideFixtureError(CloudTasksUsageError):
    """Raised, with `cloudtasks_clients_outside = error`, when Google's Cloud Tasks or Cloud
    Scheduler client is used where no test's `cloudtasks_queue`/`cloudtasks_scheduler` is
    active: it would reach Google Cloud. The message names the test."""


class TaskRoutingError(CloudTasksUsageError):
    """Raised by a drain when a task's method and URL match no route of the app it is
    delivered to: every attempt would be a 404 or 405, retried until its retries run out."""

    def __init__(self, message: str, attempt: Any) -> None:
        super().__init__(message)
        self.attempt = attempt  # the attempt the app answered 404, 405 or a redirect


class AssertionArgumentsError(CloudTasksUsageError):
    """Raised when an assertion (`assert_enqueued`, `assert_scheduled`...) names an endpoint
    that is no task or job endpoint, or arguments it does not take or would reject: such an
    assertion could never match. `problems` lists every bad argument."""

    def __init__(self, assertion: str, problems: Sequence[ArgumentProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(str(p) for p in self.problems)
        noun = "argument" if len(self.problems) == 1 else "arguments"
        super().__init__(
            f"{assertion} can never match: {len(self.problems)} invalid {noun} for the "
            f"endpoint:\n{lines}"
        )
