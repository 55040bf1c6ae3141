"""The public surface: import paths (old and new), `__all__`, the exception hierarchy, and what
importing the package and building apps must not do (import test tools, read credentials,
connect)."""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastapi_cloud_tasks
from fastapi_cloud_tasks import exceptions

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter of this environment, with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                    os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


class TestAll:
    def test_every_name_in_all_resolves(self):
        missing = [name for name in fastapi_cloud_tasks.__all__
                   if not hasattr(fastapi_cloud_tasks, name)]
        assert missing == []

    def test_all_has_no_duplicates(self):
        names = fastapi_cloud_tasks.__all__
        assert len(names) == len(set(names))

    def test_star_import_gives_exactly_all(self):
        namespace: dict[str, object] = {}
        exec("from fastapi_cloud_tasks import *", namespace)
        namespace.pop("__builtins__")
        assert set(namespace) == set(fastapi_cloud_tasks.__all__)

    @pytest.mark.parametrize(
        "name",
        [
            "DelayedRouteBuilder", "ScheduledRouteBuilder", "task_default_options",
            "CloudTasksHeaders", "CloudSchedulerHeaders", "max_retries", "queue_path",
            "location_path", "ensure_queue", "emulator_client", "emulator_async_client",
            "emulator_scheduler_client", "emulator_scheduler_async_client", "override_clients",
            "ClientOverride", "FastAPICloudTasksError", "MissingParamError", "WrongTypeError",
            "BadMethodException", "InvalidTaskOptionError",
        ],
    )
    def test_documented_name_is_exported(self, name):
        assert name in fastapi_cloud_tasks.__all__

    @pytest.mark.parametrize(
        "module",
        [
            "fastapi_cloud_tasks.utils", "fastapi_cloud_tasks.hooks",
            "fastapi_cloud_tasks.dependencies", "fastapi_cloud_tasks.decorators",
            "fastapi_cloud_tasks.delayed_route", "fastapi_cloud_tasks.options",
            "fastapi_cloud_tasks.clients", "fastapi_cloud_tasks.queues",
        ],
    )
    def test_submodule_all_names_resolve(self, module):
        loaded = importlib.import_module(module)
        assert [name for name in loaded.__all__ if not hasattr(loaded, name)] == []


class TestSeedImportPaths:
    def test_utils_paths_with_the_seed_keyword_arguments(self):
        from fastapi_cloud_tasks.utils import location_path, queue_path

        assert queue_path(project="p", location="asia-south1", queue="q") == (
            "projects/p/locations/asia-south1/queues/q"
        )
        assert location_path(project="p", location="asia-south1") == (
            "projects/p/locations/asia-south1"
        )

    def test_utils_emulator_and_queue_helpers(self):
        from fastapi_cloud_tasks import utils

        assert utils.emulator_client is fastapi_cloud_tasks.emulator_client
        assert utils.emulator_async_client is fastapi_cloud_tasks.emulator_async_client
        assert utils.emulator_scheduler_client is fastapi_cloud_tasks.emulator_scheduler_client
        assert (utils.emulator_scheduler_async_client
                is fastapi_cloud_tasks.emulator_scheduler_async_client)
        assert utils.ensure_queue is fastapi_cloud_tasks.ensure_queue

    @pytest.mark.parametrize(
        "name",
        [
            "noop_hook", "chained_hook", "oidc_delayed_hook", "oidc_scheduled_hook",
            "oauth_delayed_hook", "oauth_scheduled_hook", "deadline_delayed_hook",
            "deadline_scheduled_hook", "oidc_task_hook", "ScheduledHook",
        ],
    )
    def test_hooks_module_keeps_the_seed_names(self, name):
        hooks = importlib.import_module("fastapi_cloud_tasks.hooks")
        assert hasattr(hooks, name)

    def test_hooks_module_keeps_the_seed_hook_type_aliases(self):
        from fastapi_cloud_tasks.hooks import (
            DelayedHook,
            DelayedTaskHook,
            ScheduledHook,
            ScheduledTaskHook,
        )

        assert DelayedTaskHook is DelayedHook
        assert ScheduledTaskHook is ScheduledHook

    def test_dependencies_module(self):
        from fastapi_cloud_tasks.dependencies import CloudTasksHeaders, max_retries

        assert CloudTasksHeaders is fastapi_cloud_tasks.CloudTasksHeaders
        assert max_retries is fastapi_cloud_tasks.max_retries

    def test_decorators_module(self):
        from fastapi_cloud_tasks.decorators import task_default_options

        assert task_default_options is fastapi_cloud_tasks.task_default_options

    def test_route_builder_modules(self):
        from fastapi_cloud_tasks.delayed_route import DelayedRouteBuilder
        from fastapi_cloud_tasks.scheduled_route import ScheduledRouteBuilder

        assert DelayedRouteBuilder is fastapi_cloud_tasks.DelayedRouteBuilder
        assert ScheduledRouteBuilder is fastapi_cloud_tasks.ScheduledRouteBuilder

    def test_delayed_route_builder_keeps_the_seed_keywords(self):
        parameters = inspect.signature(fastapi_cloud_tasks.DelayedRouteBuilder).parameters
        assert {"base_url", "queue_path", "task_create_timeout", "pre_create_hook",
                "client"} <= set(parameters)
        assert parameters["task_create_timeout"].default == 10.0
        assert parameters["auto_create_queue"].default is True
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())


EXCEPTIONS = [
    getattr(fastapi_cloud_tasks, name)
    for name in fastapi_cloud_tasks.__all__
    if isinstance(getattr(fastapi_cloud_tasks, name), type)
    and issubclass(getattr(fastapi_cloud_tasks, name), BaseException)
]


class TestExceptions:
    def test_the_exported_exceptions_are_found(self):
        names = {cls.__name__ for cls in EXCEPTIONS}
        assert {"FastAPICloudTasksError", "MissingParamError", "WrongTypeError",
                "BadMethodException", "InvalidTaskOptionError"} <= names

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
    def test_every_exception_derives_from_the_one_base(self, cls):
        assert issubclass(cls, fastapi_cloud_tasks.FastAPICloudTasksError)

    def test_the_base_is_an_exception(self):
        assert issubclass(fastapi_cloud_tasks.FastAPICloudTasksError, Exception)

    @pytest.mark.parametrize(
        "name", ["MissingParamError", "WrongTypeError", "BadMethodException",
                 "InvalidTaskOptionError"]
    )
    def test_exception_is_a_value_error_and_lives_in_the_exceptions_module(self, name):
        cls = getattr(fastapi_cloud_tasks, name)
        assert getattr(exceptions, name) is cls
        assert issubclass(cls, ValueError)

    def test_argument_errors_share_a_catchable_parent(self):
        assert issubclass(fastapi_cloud_tasks.MissingParamError,
                          fastapi_cloud_tasks.TaskArgumentsError)
        assert issubclass(fastapi_cloud_tasks.WrongTypeError,
                          fastapi_cloud_tasks.TaskArgumentsError)


class TestImportSideEffects:
    def test_importing_the_package_imports_no_test_tools(self):
        result = run_python(
            """
            import sys
            import fastapi_cloud_tasks
            import fastapi_cloud_tasks.utils, fastapi_cloud_tasks.hooks
            import fastapi_cloud_tasks.dependencies, fastapi_cloud_tasks.decorators
            forbidden = ("pytest", "_pytest", "freezegun", "httpx", "starlette.testclient",
                         "fastapi.testclient")
            print(sorted(m for m in forbidden if m in sys.modules))
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"

    def test_import_and_building_routers_and_apps_need_no_credentials(self):
        result = run_python(
            """
            import google.auth
            calls = []
            def default(*args, **kwargs):
                calls.append(1)
                raise google.auth.exceptions.DefaultCredentialsError("no credentials")
            google.auth.default = default

            from fastapi import APIRouter, FastAPI
            from fastapi_cloud_tasks import (
                DelayedRouteBuilder, ScheduledRouteBuilder, location_path, queue_path,
            )

            delayed = APIRouter(route_class=DelayedRouteBuilder(
                base_url="https://worker.example.com",
                queue_path=queue_path("p", "asia-south1", "q"),
            ), prefix="/tasks")
            scheduled = APIRouter(route_class=ScheduledRouteBuilder(
                base_url="https://worker.example.com",
                location_path=location_path("p", "asia-south1"),
            ), prefix="/jobs")

            @delayed.post("/work")
            def work(n: int) -> None: ...

            @scheduled.post("/nightly")
            def nightly() -> None: ...

            app = FastAPI()
            app.include_router(delayed)
            app.include_router(scheduled)
            print(len(calls))
            try:
                work.delay(n=1)
            except google.auth.exceptions.DefaultCredentialsError:
                print("raised on delay", len(calls))
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["0", "raised on delay 1"]


@pytest.fixture
def listener():
    """A local TCP port that records whether anything connected to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.3)
    yield server
    server.close()


def accepted_a_connection(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return False
    connection.close()
    return True


class TestEmulatorClients:
    def test_emulator_clients_do_not_connect_when_created(self, listener):
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        tasks = fastapi_cloud_tasks.emulator_client(host)
        scheduler = fastapi_cloud_tasks.emulator_scheduler_client(host)
        assert not accepted_a_connection(listener)
        tasks.transport.close()
        scheduler.transport.close()

    @pytest.mark.asyncio
    async def test_async_emulator_clients_do_not_connect_when_created(self, listener):
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        tasks = fastapi_cloud_tasks.emulator_async_client(host)
        scheduler = fastapi_cloud_tasks.emulator_scheduler_async_client(host)
        assert not accepted_a_connection(listener)
        await tasks.transport.close()
        await scheduler.transport.close()

    @pytest.mark.parametrize(
        "name", ["emulator_client", "emulator_async_client", "emulator_scheduler_client",
                 "emulator_scheduler_async_client"],
    )
    def test_emulator_host_defaults_to_localhost_8123(self, name):
        host = inspect.signature(getattr(fastapi_cloud_tasks, name)).parameters["host"]
        assert host.default == "localhost:8123"

    def test_emulator_clients_are_the_real_client_classes(self):
        from google.cloud import scheduler_v1, tasks_v2

        tasks = fastapi_cloud_tasks.emulator_client("127.0.0.1:9")
        scheduler = fastapi_cloud_tasks.emulator_scheduler_client("127.0.0.1:9")
        assert isinstance(tasks, tasks_v2.CloudTasksClient)
        assert isinstance(scheduler, scheduler_v1.CloudSchedulerClient)
        tasks.transport.close()
        scheduler.transport.close()

    def test_emulator_client_needs_no_credentials(self, monkeypatch):
        import google.auth

        def default(*args: object, **kwargs: object) -> None:
            raise google.auth.exceptions.DefaultCredentialsError("no credentials")

        monkeypatch.setattr(google.auth, "default", default)
        fastapi_cloud_tasks.emulator_client("127.0.0.1:9").transport.close()
        fastapi_cloud_tasks.emulator_scheduler_client("127.0.0.1:9").transport.close()
