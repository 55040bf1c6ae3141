"""The default clients and the emulator variables: read when a client is first needed, each API
its own variable, and never over an explicit client or a test's override. (A real app in a
process with only the variables set: tests/emulator/test_emulator_host_env.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import google.auth
import pytest
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks import ClientOverride, InvalidTaskOptionError, clients, override_clients
from fastapi_cloud_tasks.engine.transports import tasks_client
from tests.recording import RecordingTasks

TASKS_VAR = "CLOUD_TASKS_EMULATOR_HOST"
SCHEDULER_VAR = "CLOUD_SCHEDULER_EMULATOR_HOST"


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """No variable set, fresh default clients, and `google.auth.default()` failing (counted),
    as on a machine without credentials."""
    for variable in (TASKS_VAR, SCHEDULER_VAR):
        monkeypatch.delenv(variable, raising=False)
    for name in ("default_tasks_client", "default_scheduler_client"):
        lazy = getattr(clients, name)
        monkeypatch.setattr(lazy, "_client", None)
        monkeypatch.setattr(lazy, "_host", None)
    for name in ("default_tasks_async_client", "default_scheduler_async_client"):
        monkeypatch.setattr(getattr(clients, name), "_clients", {})
    calls: list[Any] = []

    def default(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise DefaultCredentialsError("no credentials in this test")

    monkeypatch.setattr(google.auth, "default", default)
    return calls


def channel_target(client: Any) -> str:
    """The address the client's gRPC channel was opened for (grpcio adds the resolver)."""
    target: bytes = client.transport.grpc_channel._channel.target()
    return target.decode().removeprefix("dns:///")


def test_the_tasks_variable_gives_an_emulator_client_without_credentials(
    monkeypatch: pytest.MonkeyPatch, fresh: list[Any]
) -> None:
    monkeypatch.setenv(TASKS_VAR, "127.0.0.1:8123")

    client = clients.sync_client("tasks", None)

    assert isinstance(client, tasks_v2.CloudTasksClient)
    assert channel_target(client) == "127.0.0.1:8123"
    assert clients.sync_client("tasks", None) is client  # built once
    assert fresh == []


def test_the_variable_is_read_when_the_client_is_needed_and_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(DefaultCredentialsError):
        clients.sync_client("tasks", None)
    monkeypatch.setenv(TASKS_VAR, "localhost:9001")
    first = clients.sync_client("tasks", None)
    monkeypatch.setenv(TASKS_VAR, "[::1]:9002")

    second = clients.sync_client("tasks", None)

    assert (channel_target(first), channel_target(second)) == ("localhost:9001", "[::1]:9002")


def test_each_api_reads_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEDULER_VAR, "localhost:9003")

    scheduler = clients.sync_client("scheduler", None)

    assert isinstance(scheduler, scheduler_v1.CloudSchedulerClient)
    assert channel_target(scheduler) == "localhost:9003"
    with pytest.raises(DefaultCredentialsError):
        clients.sync_client("tasks", None)


def test_an_empty_variable_means_google_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TASKS_VAR, "")

    with pytest.raises(DefaultCredentialsError):
        clients.sync_client("tasks", None)


@pytest.mark.parametrize("value", ["http://localhost:8123", "localhost", "host:port"])
def test_a_value_that_is_not_host_and_port_is_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(TASKS_VAR, value)

    with pytest.raises(InvalidTaskOptionError) as raised:
        clients.sync_client("tasks", None)

    assert str(raised.value) == (
        f"CLOUD_TASKS_EMULATOR_HOST={value!r}: expected HOST:PORT, the emulator's gRPC address "
        "as its READY line prints it (e.g. 'localhost:8123', without http://); unset it to "
        "use Google Cloud."
    )


def test_an_explicit_client_and_an_override_win_over_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TASKS_VAR, "localhost:8123")
    configured = tasks_client(RecordingTasks())
    override = tasks_client(RecordingTasks())

    assert clients.sync_client("tasks", configured) is configured
    with override_clients(ClientOverride(tasks=override)):
        assert clients.sync_client("tasks", None) is override


def test_the_asyncio_default_follows_the_variable_per_event_loop(
    monkeypatch: pytest.MonkeyPatch, fresh: list[Any]
) -> None:
    monkeypatch.setenv(TASKS_VAR, "localhost:9004")

    async def get() -> Any:
        client = clients.default_tasks_async_client.get()
        assert clients.default_tasks_async_client.get() is client
        return client

    first, second = asyncio.run(get()), asyncio.run(get())

    assert isinstance(first, tasks_v2.CloudTasksAsyncClient)
    assert first is not second  # an aio channel belongs to its loop
    assert fresh == []
