"""pytest plugin for fastapi_cloud_tasks: capture Cloud Tasks, fast-forward a virtual clock and
deliver every task into the app with the headers and retries of the real service.

The names below are imported on first use: pytest imports this package with the plugin at every
start, and they bring in FastAPI, Google's clients and the `[testing]` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_cloudtasks.captured import CapturedJob, CapturedTask
    from pytest_cloudtasks.harness import Attempt, Harness, HarnessConfig, TaskFailed
    from pytest_cloudtasks.queue import CloudTasksQueue
    from pytest_cloudtasks.scheduler import CloudTasksScheduler

__all__ = [
    # Fixture objects
    "CloudTasksQueue",
    "CloudTasksScheduler",
    "CapturedJob",
    "CapturedTask",
    "Attempt",
    "Harness",
    "HarnessConfig",
    # Exceptions
    "TaskFailed",
]

_MODULES = {
    "CloudTasksQueue": "queue",
    "CloudTasksScheduler": "scheduler",
    "CapturedJob": "captured",
    "CapturedTask": "captured",
    "Attempt": "harness",
    "Harness": "harness",
    "HarnessConfig": "harness",
    "TaskFailed": "harness",
}


# Hidden from type checkers, which see the TYPE_CHECKING imports: a misspelled name stays
# an error for them.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _MODULES.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        except ModuleNotFoundError as exc:
            from pytest_cloudtasks.extras import missing_message

            if exc.name != "httpx":  # the one extra these modules import at load
                raise
            raise ModuleNotFoundError(missing_message(exc.name, f"pytest_cloudtasks.{name}"),
                                      name=exc.name) from None
        # Not cached here: the module in sys.modules stays the one source (pytester's in-process
        # runs drop and re-import the submodules, and a cached class would then be a stale twin).
        return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
