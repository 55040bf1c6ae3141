"""In-memory transports for Google's real Cloud Tasks and Cloud Scheduler clients.

The generated clients never talk to gRPC themselves: every RPC goes through
``transport._wrapped_methods[transport.<rpc>]``. Swapping only the transport keeps everything
the application relies on (request coercion from dicts and flattened arguments, routing
headers, pagers, ``google.api_core.exceptions``) exactly as in production, while the calls land
on a plain Python *service* object instead of the network.

The service contract: one synchronous method per RPC, named after it in snake_case
(``create_task``, ``list_jobs``, ...). It receives the request message exactly as the client
built it (``tasks_v2.CreateTaskRequest``, ...) and returns what the gRPC stub would return: the
resource for Create/Get/Update/Run/Pause/Resume/Purge, the ``List*Response`` (with
``next_page_token`` for further pages) for List RPCs, and anything (``None`` is fine) for Delete
RPCs, whose result the clients discard. Errors are raised as ``google.api_core.exceptions.*``
and reach the caller unchanged; an RPC the service lacks raises ``MethodNotImplemented``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, ClassVar

from google.api_core import exceptions, gapic_v1
from google.auth.credentials import AnonymousCredentials
from google.cloud import scheduler_v1, tasks_v2
from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
    CloudSchedulerTransport,
)
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksTransport

__all__ = [
    "InMemoryCloudSchedulerAsyncTransport",
    "InMemoryCloudSchedulerTransport",
    "InMemoryCloudTasksAsyncTransport",
    "InMemoryCloudTasksTransport",
    "scheduler_async_client",
    "scheduler_client",
    "tasks_async_client",
    "tasks_client",
]

# Properties of the generated base transports that are not RPCs.
_NOT_RPCS = frozenset({"host", "kind", "operations_client"})


def _rpc_property(name: str) -> property:
    """A property returning the callable built once per instance: the clients key a dict by it."""

    def get(self: _InMemoryTransport) -> Callable[..., Any]:
        return self._rpcs[name]

    return property(get, doc=f"The in-memory ``{name}`` RPC.")


class _InMemoryTransport:
    """Plumbing shared by the four transports; it precedes the generated base in their MRO.

    Subclasses name the API (for error messages) and whether the client awaits its RPCs; the
    RPC properties are generated from the base transport's declared properties, so RPCs added
    by a newer client library (and the locations/operations mixins) are covered automatically.
    """

    _KIND: ClassVar[str] = "in-memory"
    _api: ClassVar[str]
    _asynchronous: ClassVar[bool]
    _rpc_names: ClassVar[tuple[str, ...]]
    _wrapped_methods: dict[Callable[..., Any], Callable[..., Any]]

    def __init_subclass__(cls, *, api: str, asynchronous: bool, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._api, cls._asynchronous = api, asynchronous
        base = cls.__bases__[-1]  # The generated abstract transport, e.g. CloudTasksTransport.
        cls._rpc_names = tuple(
            name
            for name, value in vars(base).items()
            if isinstance(value, property) and name not in _NOT_RPCS
        )
        for name in cls._rpc_names:
            setattr(cls, name, _rpc_property(name))

    def __init__(self, service: object) -> None:
        self.service = service
        self._rpcs = {name: self._make_rpc(name) for name in self._rpc_names}
        # The next class in the MRO is the generated base: explicit anonymous credentials keep
        # it from calling google.auth.default(), which would look for real credentials.
        base_init: Callable[..., None] = super().__init__
        base_init(credentials=AnonymousCredentials())
        self._prep_wrapped_messages(gapic_v1.client_info.DEFAULT_CLIENT_INFO)

    def _make_rpc(self, name: str) -> Callable[..., Any]:
        service, method = self.service, "".join(part.title() for part in name.split("_"))

        def call(request: Any, **_: Any) -> Any:
            # Looked up per call so a test can monkeypatch the service after creating the client.
            # timeout/metadata/compression keyword arguments have no meaning in memory.
            implementation = getattr(service, name, None)
            if implementation is None:
                raise exceptions.MethodNotImplemented(
                    f"{self._api}.{method} is not implemented by the in-memory service "
                    f"{type(service).__name__} (it has no {name}() method)"
                )
            return implementation(request)

        async def call_async(request: Any, **_: Any) -> Any:
            return call(request)

        call.__name__ = call_async.__name__ = name
        return call_async if self._asynchronous else call

    def _prep_wrapped_messages(self, client_info: gapic_v1.client_info.ClientInfo) -> None:
        """Wrap every RPC without Google's default retry and timeout policies.

        Those retry DeadlineExceeded/ServiceUnavailable for up to 20 s of ``time.monotonic()``:
        an injected fault would stall a test, and loop forever under a frozen clock. A
        ``retry=`` passed explicitly by the caller still applies.
        """
        if self._asynchronous:
            def wrap(rpc: Callable[..., Any]) -> Callable[..., Any]:
                wrapped: Callable[..., Any] = gapic_v1.method_async.wrap_method(
                    rpc, client_info=client_info, kind=self._KIND
                )
                return wrapped
        else:
            def wrap(rpc: Callable[..., Any]) -> Callable[..., Any]:
                wrapped: Callable[..., Any] = gapic_v1.method.wrap_method(
                    rpc, client_info=client_info
                )
                return wrapped
        # Wrapped on first use: a test builds four clients of ~30 RPCs and calls a few.
        self._wrapped_methods = _WrapOnFirstUse(wrap, self._rpcs.values())

    @property
    def operations_client(self) -> _FinishedOperations:
        """What the clients wrap long-running operations with; the in-memory ones (batch
        create) are finished when returned, so it is never asked for their state."""
        return _FinishedOperations(self._api)

    @property
    def kind(self) -> str:
        """Not "grpc_asyncio": that kind makes api_core wrap RPCs as gRPC calls."""
        return self._KIND

    def close(self) -> Awaitable[None] | None:
        """Nothing to release; the async clients await ``close()`` in ``__aexit__``."""
        return _Closed() if self._asynchronous else None


class _WrapOnFirstUse(dict[Callable[..., Any], Callable[..., Any]]):
    """`_wrapped_methods` filled lazily; an RPC that is not ours is still a KeyError."""

    def __init__(self, wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
                 rpcs: Iterable[Callable[..., Any]]) -> None:
        super().__init__()
        self._wrap = wrap
        self._rpcs = set(rpcs)

    def __missing__(self, rpc: Callable[..., Any]) -> Callable[..., Any]:
        if rpc not in self._rpcs:
            raise KeyError(rpc)
        wrapped = self[rpc] = self._wrap(rpc)
        return wrapped


class _FinishedOperations:
    def __init__(self, api: str) -> None:
        self._api = api

    def _unavailable(self, *args: Any, **kwargs: Any) -> Any:
        raise exceptions.MethodNotImplemented(
            f"{self._api}: in-memory operations finish at once; there is nothing to poll"
        )

    get_operation = cancel_operation = delete_operation = _unavailable


class _Closed:
    """An already-finished awaitable: unlike a coroutine, it never warns if left unawaited."""

    def __await__(self) -> Generator[None, None, None]:
        return (yield from ())


class InMemoryCloudTasksTransport(
    _InMemoryTransport, CloudTasksTransport, api="CloudTasks", asynchronous=False
):
    """``CloudTasksClient`` transport that calls a synchronous in-memory service."""


class InMemoryCloudTasksAsyncTransport(
    _InMemoryTransport, CloudTasksTransport, api="CloudTasks", asynchronous=True
):
    """``CloudTasksAsyncClient`` transport; the service is called when the RPC is awaited."""


class InMemoryCloudSchedulerTransport(
    _InMemoryTransport, CloudSchedulerTransport, api="CloudScheduler", asynchronous=False
):
    """``CloudSchedulerClient`` transport that calls a synchronous in-memory service."""


class InMemoryCloudSchedulerAsyncTransport(
    _InMemoryTransport, CloudSchedulerTransport, api="CloudScheduler", asynchronous=True
):
    """``CloudSchedulerAsyncClient`` transport; the service is called when the RPC is awaited."""


def tasks_client(service: object) -> tasks_v2.CloudTasksClient:
    """A real ``CloudTasksClient`` whose RPCs are served by ``service``."""
    return tasks_v2.CloudTasksClient(transport=InMemoryCloudTasksTransport(service))


def tasks_async_client(service: object) -> tasks_v2.CloudTasksAsyncClient:
    """A real ``CloudTasksAsyncClient`` whose RPCs are served by ``service``."""
    return tasks_v2.CloudTasksAsyncClient(transport=InMemoryCloudTasksAsyncTransport(service))


def scheduler_client(service: object) -> scheduler_v1.CloudSchedulerClient:
    """A real ``CloudSchedulerClient`` whose RPCs are served by ``service``."""
    return scheduler_v1.CloudSchedulerClient(transport=InMemoryCloudSchedulerTransport(service))


def scheduler_async_client(service: object) -> scheduler_v1.CloudSchedulerAsyncClient:
    """A real ``CloudSchedulerAsyncClient`` whose RPCs are served by ``service``."""
    return scheduler_v1.CloudSchedulerAsyncClient(
        transport=InMemoryCloudSchedulerAsyncTransport(service)
    )
