"""`@task_default_options`: per-endpoint defaults for `.delay()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi_cloud_tasks.delayed_route import DEFAULT_OPTIONS_ATTR
from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError
from fastapi_cloud_tasks.options import TaskOptions

__all__ = ["task_default_options"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def task_default_options(**options: Any) -> Callable[[Endpoint], Endpoint]:
    """Default options for one endpoint's tasks (any `.options()` keyword).

    Builder settings < these defaults < `.options(...)`. Works above or below the route
    decorator; the names are checked now, the values on first use.
    """
    unknown = sorted(set(options) - TaskOptions.names())
    if unknown:
        raise InvalidTaskOptionError(
            f"Unknown task option(s) {', '.join(map(repr, unknown))} in @task_default_options; "
            f"the options are {', '.join(sorted(TaskOptions.names()))}."
        )

    def decorate(endpoint: Endpoint) -> Endpoint:
        merged = {**getattr(endpoint, DEFAULT_OPTIONS_ATTR, {}), **options}
        setattr(endpoint, DEFAULT_OPTIONS_ATTR, merged)
        task = getattr(endpoint, "_delayed_task", None)
        if task is not None:  # applied above the route decorator: drop the cached defaults
            task.__dict__.pop("default_options", None)
        return endpoint

    return decorate
