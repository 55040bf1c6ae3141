"""`@task_default_options`: per-endpoint defaults for `.delay()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi_cloud_tasks.delayed_route import DEFAULT_OPTIONS_ATTR, DelayedTask
from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError
from fastapi_cloud_tasks.options import TaskOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fastapi_cloud_tasks.options import TaskOptionArgs

__all__ = ["task_default_options"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def task_default_options(**options: Unpack[TaskOptionArgs]) -> Callable[[Endpoint], Endpoint]:
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

    def decorate(decorated: Endpoint) -> Endpoint:
        # Above @delayed_task it receives the DelayedTask: the defaults belong to its endpoint.
        endpoint = decorated.endpoint if isinstance(decorated, DelayedTask) else decorated
        merged = {**getattr(endpoint, DEFAULT_OPTIONS_ATTR, {}), **options}
        setattr(endpoint, DEFAULT_OPTIONS_ATTR, merged)
        task = getattr(endpoint, "_delayed_task", None)
        if task is not None:  # applied above the route decorator: drop the cached defaults
            task.__dict__.pop("default_options", None)
        return decorated

    return decorate
