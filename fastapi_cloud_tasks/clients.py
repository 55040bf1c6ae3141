"""Google client objects: created on first use, pointed at an emulator, or overridden by a test.

Nothing here talks to the network or reads credentials until a task or job is actually sent:
importing the package and building routers and apps must work on a machine with no Google
credentials at all.

A builder without `client=` gets a default client, built when the first task or job is sent.
Like Google's own emulators (`PUBSUB_EMULATOR_HOST`, `FIRESTORE_EMULATOR_HOST`), an environment
variable read at that moment points it at a local emulator, without credentials:
`CLOUD_TASKS_EMULATOR_HOST` for tasks and `CLOUD_SCHEDULER_EMULATOR_HOST` for jobs (each
`HOST:PORT`, the gRPC address the emulator prints; each API reads only its own variable).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError

__all__ = [
    "ClientOverride",
    "EmulatorTransport",
    "emulator_async_client",
    "emulator_client",
    "emulator_scheduler_async_client",
    "emulator_scheduler_client",
    "override_clients",
]

DEFAULT_EMULATOR_HOST = "localhost:8123"
TASKS_EMULATOR_HOST_ENV = "CLOUD_TASKS_EMULATOR_HOST"
SCHEDULER_EMULATOR_HOST_ENV = "CLOUD_SCHEDULER_EMULATOR_HOST"
EmulatorTransport = Literal["grpc", "rest"]
_ADDRESS = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?")


def emulator_client(
    host: str = DEFAULT_EMULATOR_HOST, *, transport: EmulatorTransport = "grpc",
    http_port: int | None = None,
) -> tasks_v2.CloudTasksClient:
    """A Cloud Tasks client for a local emulator, without credentials.

    `host` is the emulator's gRPC address (`HOST:PORT`, as its READY line prints it).
    `transport="rest"` uses Google's REST transport (HTTP/1.1 JSON) instead, on the emulator's
    HTTP port: `http_port`, by default PORT + 1 as the emulator's `--http-port`. Neither
    connects before the first call, so this can run at import time.
    """
    if _wants_rest(transport, http_port):
        return tasks_v2.CloudTasksClient(**_rest_settings(host, http_port))
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks_v2.CloudTasksClient(
        transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
    )


def emulator_async_client(
    host: str = DEFAULT_EMULATOR_HOST, *, transport: EmulatorTransport = "grpc",
) -> tasks_v2.CloudTasksAsyncClient:
    """The asyncio twin of `emulator_client`; create it where it will be awaited. gRPC only:
    Google's asyncio clients have no REST transport."""
    _grpc_only(transport, tasks_v2.CloudTasksAsyncClient)
    from google.cloud.tasks_v2.services.cloud_tasks.transports import (
        CloudTasksGrpcAsyncIOTransport,
    )
    from grpc import aio

    return tasks_v2.CloudTasksAsyncClient(
        transport=CloudTasksGrpcAsyncIOTransport(channel=aio.insecure_channel(host))
    )


def emulator_scheduler_client(
    host: str = DEFAULT_EMULATOR_HOST, *, transport: EmulatorTransport = "grpc",
    http_port: int | None = None,
) -> scheduler_v1.CloudSchedulerClient:
    """A Cloud Scheduler client for the local emulator (it serves both APIs on one port);
    `transport` and `http_port` as for `emulator_client`."""
    if _wants_rest(transport, http_port):
        return scheduler_v1.CloudSchedulerClient(**_rest_settings(host, http_port))
    import grpc
    from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
        CloudSchedulerGrpcTransport,
    )

    return scheduler_v1.CloudSchedulerClient(
        transport=CloudSchedulerGrpcTransport(channel=grpc.insecure_channel(host))
    )


def emulator_scheduler_async_client(
    host: str = DEFAULT_EMULATOR_HOST, *, transport: EmulatorTransport = "grpc",
) -> scheduler_v1.CloudSchedulerAsyncClient:
    """The asyncio twin of `emulator_scheduler_client` (gRPC only, like
    `emulator_async_client`)."""
    _grpc_only(transport, scheduler_v1.CloudSchedulerAsyncClient)
    from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
        CloudSchedulerGrpcAsyncIOTransport,
    )
    from grpc import aio

    return scheduler_v1.CloudSchedulerAsyncClient(
        transport=CloudSchedulerGrpcAsyncIOTransport(channel=aio.insecure_channel(host))
    )


def _wants_rest(transport: str, http_port: int | None) -> bool:
    if transport not in ("grpc", "rest"):
        raise ValueError(f"transport={transport!r}: use 'grpc' or 'rest'.")
    if http_port is not None and transport != "rest":
        raise ValueError(f"http_port={http_port!r} is the REST port: pass transport='rest' "
                         "with it, or leave it out for gRPC.")
    return transport == "rest"


def _rest_settings(host: str, http_port: int | None) -> dict[str, Any]:
    """Client arguments for the emulator's REST port: plain HTTP, anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials

    address = _ADDRESS.fullmatch(host)
    if address is None or (http_port is None and address["port"] is None):
        raise ValueError(f"host={host!r}: expected HOST:PORT, the emulator's gRPC address (its "
                         "REST port is PORT + 1 unless http_port says otherwise).")
    port = int(address["port"]) + 1 if http_port is None else http_port
    return {
        "transport": "rest",
        "credentials": AnonymousCredentials(),
        "client_options": {"api_endpoint": f"http://{address['name']}:{port}"},
    }


def _grpc_only(transport: str, client_class: type) -> None:
    if _wants_rest(transport, None):
        raise ValueError(
            f"transport='rest' is not available for {client_class.__name__}: Google's asyncio "
            "clients for Cloud Tasks and Cloud Scheduler have no REST transport. Use "
            "transport='grpc' (the default), or the synchronous client with transport='rest'."
        )


@dataclass(frozen=True)
class ClientOverride:
    """Clients that replace every configured one while an `override_clients` block runs."""

    tasks: tasks_v2.CloudTasksClient | None = None
    tasks_async: tasks_v2.CloudTasksAsyncClient | None = None
    scheduler: scheduler_v1.CloudSchedulerClient | None = None
    scheduler_async: scheduler_v1.CloudSchedulerAsyncClient | None = None


# A process-wide stack rather than a context variable: a test's app may enqueue from the
# worker thread of starlette's TestClient, which does not see the test's context.
_overrides: list[ClientOverride] = []
_lock = threading.Lock()


@contextmanager
def override_clients(override: ClientOverride) -> Iterator[ClientOverride]:
    """Send every task and job of every builder to `override`'s clients inside the block.

    This is the seam the pytest plugin uses; the innermost override wins.
    """
    with _lock:
        _overrides.append(override)
    try:
        yield override
    finally:
        with _lock:
            _overrides.remove(override)


def current_override() -> ClientOverride | None:
    return _overrides[-1] if _overrides else None


def emulator_host(variable: str) -> str | None:
    """The emulator address in environment variable `variable`; None when unset or empty."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    address = _ADDRESS.fullmatch(value)
    if address is None or address["port"] is None:
        raise InvalidTaskOptionError(
            f"{variable}={value!r}: expected HOST:PORT, the emulator's gRPC address as its "
            "READY line prints it (e.g. 'localhost:8123', without http://); unset it to use "
            "Google Cloud."
        )
    return value


class LazyClient:
    """Builds a default Google client on first use, thread-safely: `factory()`, or
    `emulator(host)` while the environment variable `variable` names an emulator (read on
    every use, so the client follows the variable)."""

    def __init__(self, factory: Any, variable: str | None = None, emulator: Any = None) -> None:
        self._factory = factory
        self._variable = variable
        self._emulator = emulator
        self._client: Any = None
        self._host: str | None = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        host = emulator_host(self._variable) if self._variable else None
        if self._client is None or self._host != host:
            with self._lock:
                if self._client is None or self._host != host:
                    self._client = self._factory() if host is None else self._emulator(host)
                    self._host = host
        return self._client


class LazyAsyncClient:
    """Builds a default asyncio Google client on first use in each event loop (a gRPC aio
    channel belongs to the loop it was first used in); `variable` and `emulator` as for
    `LazyClient`."""

    def __init__(self, factory: Any, variable: str | None = None, emulator: Any = None) -> None:
        self._factory = factory
        self._variable = variable
        self._emulator = emulator
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[str | None, Any]
        ] = weakref.WeakKeyDictionary()

    def get(self) -> Any:
        host = emulator_host(self._variable) if self._variable else None
        loop = asyncio.get_running_loop()
        built = self._clients.get(loop)
        if built is None or built[0] != host:
            client = self._factory() if host is None else self._emulator(host)
            built = self._clients[loop] = (host, client)
        return built[1]


default_tasks_client = LazyClient(tasks_v2.CloudTasksClient, TASKS_EMULATOR_HOST_ENV,
                                  emulator_client)
default_tasks_async_client = LazyAsyncClient(tasks_v2.CloudTasksAsyncClient,
                                             TASKS_EMULATOR_HOST_ENV, emulator_async_client)
default_scheduler_client = LazyClient(scheduler_v1.CloudSchedulerClient,
                                      SCHEDULER_EMULATOR_HOST_ENV, emulator_scheduler_client)
default_scheduler_async_client = LazyAsyncClient(
    scheduler_v1.CloudSchedulerAsyncClient, SCHEDULER_EMULATOR_HOST_ENV,
    emulator_scheduler_async_client,
)


_DEFAULTS = {
    "tasks": (default_tasks_client, tasks_v2.CloudTasksAsyncClient),
    "scheduler": (default_scheduler_client, scheduler_v1.CloudSchedulerAsyncClient),
}


def sync_client(kind: str, configured: Any) -> Any:
    """The client a send of `kind` ("tasks" or "scheduler") uses: a test's override, else the
    configured client, else the lazily built default. None if only an asyncio client is set."""
    override = current_override()
    if override is not None and getattr(override, kind) is not None:
        return getattr(override, kind)
    default, async_class = _DEFAULTS[kind]
    if configured is None:
        return default.get()
    return None if isinstance(configured, async_class) else configured
