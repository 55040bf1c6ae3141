"""The plugin in an environment without the `[testing]` extra: pytest still runs every test
that does not use it, and requesting a fixture says what to install.

Each run is a pytest subprocess whose first plugin (`-p blocker`, loaded before the `pytest11`
entry points) makes the named modules unimportable, as on a base install.
"""

from __future__ import annotations

import pytest

INSTALL = 'run `pip install "fastapi-cloud-tasks[[]testing]"`.'  # [[] is fnmatch for [
APP = """
from fastapi import APIRouter, FastAPI

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=queue_path("p", "europe-west1", "q")))
runs = []


@router.post("/ping")
def ping(n: int):
    runs.append(n)


app = FastAPI()
app.include_router(router)
"""
USES_QUEUE = """
from app_mod import ping, runs

def test_ping(cloudtasks_queue):
    ping.delay(n=1)
    cloudtasks_queue.advance(seconds=1)
    assert runs == [1]
"""
# fastapi_cloud_tasks itself is light (its names load on first use); what it would bring is not.
HEAVY = ["fastapi", "pydantic", "google.cloud.tasks_v2", "grpc", "httpx", "freezegun"]


def run_without(pytester: pytest.Pytester, blocked: list[str], test_file: str,
                ini: str = "", *args: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\ncloudtasks_app = app_mod:app\n"
                     "asyncio_default_fixture_loop_scope = function\n" + ini)
    pytester.makepyfile(
        blocker="import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked),
        app_mod=APP,
        test_user=test_file,
    )
    return pytester.runpytest_subprocess("-p", "blocker", "-p", "no:cacheprovider", *args,
                                         "test_user.py")


def test_without_httpx_pytest_runs_tests_that_do_not_use_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    result = run_without(pytester, ["httpx", "freezegun"], "def test_plain():\n    pass\n")
    result.assert_outcomes(passed=1)
    assert result.ret == 0


def test_loading_the_plugin_imports_none_of_the_heavy_modules(
    pytester: pytest.Pytester,
) -> None:
    result = run_without(pytester, [], f"""
import sys

def test_nothing_heavy_loaded():
    assert [m for m in {HEAVY!r} if m in sys.modules] == []
""")
    result.assert_outcomes(passed=1)


def test_without_httpx_a_fixture_is_a_usage_error_with_the_install_line(
    pytester: pytest.Pytester,
) -> None:
    result = run_without(pytester, ["httpx"], USES_QUEUE)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: The cloudtasks_queue fixture needs httpx (the responses of "
        f"Attempt.response), which is not installed: {INSTALL}",
    ])
    result.stdout.no_fnmatch_line("E  *ModuleNotFoundError*")


def test_without_time_machine_the_fixture_fails_at_setup_not_at_the_first_advance(
    pytester: pytest.Pytester,
) -> None:
    # Without time-machine its own pytest plugin is not installed either.
    result = run_without(pytester, ["time_machine"], USES_QUEUE.replace(
        "cloudtasks_queue", "cloudtasks_scheduler").replace("ping.delay(n=1)", "pass"
    ).replace("assert runs == [1]", "assert runs == []"), "", "-p", "no:time_machine")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: The cloudtasks_scheduler fixture needs time-machine (the default "
        f"clock backend, cloudtasks_clock = time-machine), which is not installed: {INSTALL}",
    ])


def test_without_time_machine_the_freezegun_clock_still_works(
    pytester: pytest.Pytester,
) -> None:
    result = run_without(pytester, ["time_machine"], USES_QUEUE,
                         "cloudtasks_clock = freezegun\n", "-p", "no:time_machine")
    result.assert_outcomes(passed=1)


def test_without_freezegun_its_clock_names_its_install_line(
    pytester: pytest.Pytester,
) -> None:
    result = run_without(pytester, ["freezegun"], USES_QUEUE, "cloudtasks_clock = freezegun\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: The cloudtasks_queue fixture needs freezegun (the clock backend "
        f"cloudtasks_clock = freezegun), which is not installed: {INSTALL}",
    ])


def test_without_httpx_importing_a_fixture_class_names_the_install_line(
    pytester: pytest.Pytester,
) -> None:
    result = run_without(pytester, ["httpx"], """
from pytest_cloudtasks import CloudTasksQueue

def test_annotated(cloudtasks_queue: CloudTasksQueue):
    pass
""")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *ModuleNotFoundError: pytest_cloudtasks.CloudTasksQueue needs httpx (the responses "
        f"of Attempt.response), which is not installed: {INSTALL}",
    ])


def test_fixture_classes_stay_importable_from_the_package() -> None:
    import pytest_cloudtasks
    from pytest_cloudtasks.queue import CloudTasksQueue

    assert pytest_cloudtasks.CloudTasksQueue is CloudTasksQueue
    assert set(pytest_cloudtasks.__all__) <= set(dir(pytest_cloudtasks))
    with pytest.raises(AttributeError, match="has no attribute 'CloudTaskQueue'"):
        pytest_cloudtasks.CloudTaskQueue  # noqa: B018
