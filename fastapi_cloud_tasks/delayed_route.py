"""`DelayedRouteBuilder`: endpoints that can be enqueued as Cloud Tasks with `.delay()`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

import anyio.to_thread
from fastapi.routing import APIRoute
from google.cloud import tasks_v2

from fastapi_cloud_tasks import clients
from fastapi_cloud_tasks.arguments import (
    EndpointSignature,
    HttpCall,
    keyword_arguments,
    supplied_by,
)
from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError
from fastapi_cloud_tasks.options import (
    DelayedHook,
    TaskOptions,
    check_base_url,
    check_queue_path,
)
from fastapi_cloud_tasks.queues import ensure_queue, ensure_queue_async, ensured_queues
from fastapi_cloud_tasks.registry import EndpointRegistry, side_of

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fastapi_cloud_tasks.options import TaskOptionArgs

__all__ = [
    "DelayedRouteBuilder", "DelayedTask", "TaskDelayer", "build_task_request", "delayed_task",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_OPTIONS_ATTR = "__cloud_tasks_default_options__"
MAX_TASK_BYTES = 1024 * 1024
MAX_URL_LENGTH = 2083
_CREATE_TASK_PB = tasks_v2.CreateTaskRequest.pb()
_METHODS = {name: int(value) for name, value in tasks_v2.HttpMethod.__members__.items()}

# Every task endpoint built in this process, so a test harness can map a URL back to its code.
task_endpoints: EndpointRegistry[DelayedTask[Any, Any]] = EndpointRegistry()


supplied_by_cloud_tasks = supplied_by("x-cloudtasks-")


def build_task_request(
    call: HttpCall, options: TaskOptions, now: datetime
) -> tasks_v2.CreateTaskRequest:
    """The CreateTaskRequest for `call` under `options` (pure: no client, no network)."""
    url = options.base_url + call.path_and_query
    # Filled as a raw protobuf and wrapped once: proto-plus constructors cost more than
    # everything else .delay() does.
    message = _CREATE_TASK_PB(parent=options.queue_path)
    http = message.task.http_request
    http.url = url
    http.http_method = _METHODS[call.method]
    http.headers.update(call.headers)
    http.body = call.body or b""
    first_run = options.first_run(now)
    if first_run is not None:
        message.task.schedule_time.FromDatetime(first_run)
    if options.task_id is not None:
        message.task.name = f"{options.queue_path}/tasks/{options.task_id}"
    if options.dispatch_deadline is not None:
        message.task.dispatch_deadline.FromTimedelta(options.dispatch_deadline)
    request: tasks_v2.CreateTaskRequest = tasks_v2.CreateTaskRequest.wrap(message)
    request = options.run_hook(request)
    # Checked after the hook, which may have changed the task.
    task = tasks_v2.CreateTaskRequest.pb(request).task
    if len(task.http_request.url) > MAX_URL_LENGTH:
        raise InvalidTaskOptionError(
            f"The task URL is {len(task.http_request.url)} characters long; Cloud Tasks "
            f"accepts at most {MAX_URL_LENGTH}. Move large values from the path or query to "
            "the body."
        )
    size = task.ByteSize()
    if size > MAX_TASK_BYTES:
        raise InvalidTaskOptionError(
            f"The task is {size} bytes; Cloud Tasks accepts at most {MAX_TASK_BYTES} (1 MiB). "
            "Store large payloads elsewhere (e.g. Cloud Storage) and pass a reference."
        )
    return request


class TaskDelayer(Generic[P]):
    """An endpoint with its options fixed: `.delay()` / `.adelay()` enqueue it.

    Typed by the endpoint's parameters `P`, so a type checker checks the arguments too.
    """

    def __init__(self, task: DelayedTask[P, Any], options: TaskOptions) -> None:
        self.task = task
        self.options = options

    def build_request(self, *args: P.args, **kwargs: P.kwargs) -> tasks_v2.CreateTaskRequest:
        """Validate the arguments and build the request `.delay(...)` would send."""
        call = self.task.signature.bind(keyword_arguments(self.task.signature, args, kwargs))
        return build_task_request(call, self.options, datetime.now(timezone.utc))

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> tasks_v2.Task:
        """Enqueue the endpoint with these arguments; returns the task as Cloud Tasks created
        it (its `name` identifies it)."""
        request = self.build_request(*args, **kwargs)
        client = clients.sync_client("tasks", self.options.client)
        if client is None:
            raise InvalidTaskOptionError(
                f"{self.task.signature.label} is configured with an asyncio client "
                f"({self.options.client!r}); use `await ....adelay(...)`, or configure a "
                "CloudTasksClient."
            )
        return self._send(client, request)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> tasks_v2.Task:
        """Enqueue without blocking the event loop (an asyncio client, or a sync one in a
        worker thread)."""
        request = self.build_request(*args, **kwargs)
        override = clients.current_override()
        client: Any = override.tasks_async if override else None
        if client is None:
            if override is not None and override.tasks is not None:
                client = override.tasks
            else:
                client = self.options.client or clients.default_tasks_async_client.get()
        if isinstance(client, tasks_v2.CloudTasksAsyncClient):
            path = self.options.queue_path
            if self.options.auto_create_queue and not ensured_queues.known(client, path):
                await ensure_queue_async(client, path, self.options.task_create_timeout)
                ensured_queues.add(client, path)
            task: tasks_v2.Task = await client.create_task(
                request=request, timeout=self.options.task_create_timeout
            )
            return task
        return await anyio.to_thread.run_sync(self._send, client, request)

    def _send(self, client: Any, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        path = self.options.queue_path
        if self.options.auto_create_queue and not ensured_queues.known(client, path):
            ensure_queue(client, path, self.options.task_create_timeout)
            ensured_queues.add(client, path)
        task: tasks_v2.Task = client.create_task(
            request=request, timeout=self.options.task_create_timeout
        )
        return task


class DelayedTask(Generic[P, R]):
    """The task side of one endpoint: `.delay()`, `.adelay()` and `.options()`, typed by the
    endpoint's parameters `P`; calling it calls the endpoint. `delayed_task(endpoint)` gets
    it."""

    def __init__(self, route: APIRoute, builder_options: TaskOptions) -> None:
        self.route = route
        self.endpoint: Callable[P, R] = route.endpoint
        self.signature = EndpointSignature(route, is_supplied=supplied_by_cloud_tasks)
        self._builder_options = builder_options
        self.__wrapped__ = self.endpoint
        self.__name__ = getattr(self.endpoint, "__name__", "endpoint")
        self.__qualname__ = getattr(self.endpoint, "__qualname__", self.__name__)
        self.__doc__ = self.endpoint.__doc__

    @functools.cached_property
    def default_options(self) -> TaskOptions:
        """Builder options with the endpoint's `@task_default_options` applied."""
        return self._builder_options.merged(getattr(self.endpoint, DEFAULT_OPTIONS_ATTR, {}))

    def options(self, **options: Unpack[TaskOptionArgs]) -> TaskDelayer[P]:
        """Override any option (countdown, schedule_time, task_id, dispatch_deadline, or a
        builder setting) for the next `.delay()` / `.adelay()`."""
        return TaskDelayer(self, self.default_options.merged(options))

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> tasks_v2.Task:
        """Enqueue the endpoint with these arguments; returns the created task."""
        return TaskDelayer(self, self.default_options).delay(*args, **kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> tasks_v2.Task:
        """Enqueue the endpoint through an asyncio client; returns the created task."""
        return await TaskDelayer(self, self.default_options).adelay(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the endpoint itself (as FastAPI would, without the HTTP layer)."""
        return self.endpoint(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<DelayedTask {self.signature.label}>"


def delayed_task(endpoint: Callable[P, R]) -> DelayedTask[P, R]:
    """The typed task of an endpoint declared on a `DelayedRouteBuilder` router.

    Use it as a decorator above the route decorator, so the endpoint's name is the task and
    `.delay()` is checked by mypy and pyright against the endpoint's parameters::

        @delayed_task
        @tasks.post("/{restaurant}/make_dinner")
        async def make_dinner(restaurant: str, recipe: Recipe) -> None: ...

        make_dinner.delay(restaurant="Taj", recipe=Recipe(ingredients=["Dal"]))

    or call it where the task is sent: `delayed_task(make_dinner).delay(...)`. Parameters
    FastAPI fills in (dependencies, `X-CloudTasks-*` headers) are never passed: give them a default
    (`ct: CloudTasksHeaders = Depends()`) so the type checker does not ask for them.
    """
    task = side_of(endpoint, DelayedTask, "_delayed_task", "delayed_task", "DelayedRouteBuilder")
    return cast("DelayedTask[P, R]", task)


def DelayedRouteBuilder(  # a class factory, named like the class it returns
    *,
    base_url: str,
    queue_path: str,
    task_create_timeout: float = 10.0,
    pre_create_hook: DelayedHook | None = None,
    client: tasks_v2.CloudTasksClient | tasks_v2.CloudTasksAsyncClient | None = None,
    auto_create_queue: bool = True,
) -> type[APIRoute]:
    """A route class whose endpoints gain `.delay()`, `.adelay()` and `.options()`.

    Creates no client and makes no call: the client is built (or the queue created) on the
    first `.delay()`. The task URL is `base_url` + the route's path on its APIRouter (the
    router's own prefix included); a prefix given to `include_router` or a mount belongs
    in `base_url`.
    """
    builder_options = TaskOptions(
        base_url=check_base_url(base_url), queue_path=check_queue_path(queue_path)
    ).merged(
        {
            "task_create_timeout": task_create_timeout,
            "pre_create_hook": pre_create_hook,
            "client": client,
            "auto_create_queue": auto_create_queue,
        }
    )

    class DelayedRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            super().__init__(path, endpoint, **kwargs)
            # FastAPI < 0.137 rebuilds routes in include_router with the outer prefix: the
            # task keeps the route it was first declared with, as newer FastAPI does.
            if getattr(endpoint, "_delayed_task", None) is None:
                task: DelayedTask[Any, Any] = DelayedTask(self, builder_options)
                _attach(endpoint, _delayed_task=task, delay=task.delay, adelay=task.adelay,
                        options=task.options)
                task_endpoints.add(task)

    return DelayedRoute


def _attach(endpoint: Callable[..., Any], **attributes: Any) -> None:
    for name, value in attributes.items():
        setattr(endpoint, name, value)
