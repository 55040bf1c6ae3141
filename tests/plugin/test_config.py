"""Configuring the pytest-cloudtasks plugin: the ini options, the marker, the app fixture, and
what a test suite around it can rely on (isolation, nothing left patched, xdist)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
import time
from datetime import datetime, timezone

from fastapi import APIRouter, FastAPI

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path

QUEUE = queue_path("my-project", "europe-west1", "reports")
router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=QUEUE))
runs = []


@router.post("/report")
def build_report(report_id: int):
    runs.append((report_id, datetime.now(timezone.utc), time.time()))
    if report_id < 0:
        raise ValueError(f"no report {report_id}")


@router.post("/again")
def again(n: int):
    again.delay(n=n + 1)


app = FastAPI()
app.include_router(router)
'''

_runs = itertools.count()


@pytest.fixture
def unique(pytester: pytest.Pytester) -> Callable[[str], str]:
    """Each test's app gets a host of its own: endpoints of earlier in-process runs may not be
    garbage-collected yet, and must not be mistaken for this run's."""
    host = f"worker-{next(_runs)}.example.com"
    return lambda text: text.replace("worker.example.com", host)


@pytest.fixture
def write(pytester: pytest.Pytester, unique: Callable[[str], str]) -> Callable[..., None]:
    """Write the app, the ini (`ini_lines` under [pytest]) and the given modules."""

    def write(ini_lines: str = "cloudtasks_app = app_mod:app", **modules: str) -> None:
        pytester.makeini(
            "[pytest]\n" + ini_lines + "\nasyncio_default_fixture_loop_scope = function\n"
            "filterwarnings = error\n"
        )
        pytester.makepyfile(app_mod=unique(APP),
                            **{name: unique(text) for name, text in modules.items()})

    return write


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


# -- which app receives the tasks ----------------------------------------------------------


def test_missing_cloudtasks_app_says_how_to_set_it(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="", test_user="""
        from app_mod import build_report

        def test_deliver(cloudtasks_queue):
            build_report.delay(report_id=1)
            cloudtasks_queue.run_until_empty()
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: pytest-cloudtasks does not know which app to deliver tasks to. Set "
        '`cloudtasks_app = "package.module:app"` in your pytest configuration, or define a '
        "`cloudtasks_app` fixture returning the app in conftest.py.",
    ])


def test_without_an_app_a_test_can_still_inspect_what_was_enqueued(
    pytester: pytest.Pytester, write
) -> None:
    write(ini_lines="", test_user="""
        from app_mod import build_report

        def test_inspect(cloudtasks_queue):
            build_report.delay(report_id=1)
            assert cloudtasks_queue.tasks[0].arguments == {"report_id": 1}
    """)
    run(pytester).assert_outcomes(passed=1)


def test_unloadable_cloudtasks_app_names_the_setting(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="cloudtasks_app = app_mod:no_such_app", test_user="""
        from app_mod import build_report

        def test_deliver(cloudtasks_queue):
            build_report.delay(report_id=1)
            cloudtasks_queue.run_until_empty()
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: cloudtasks_app = 'app_mod:no_such_app' could not be loaded (*no_such_app*"
        "); expected 'package.module:app'.",
    ])


def test_cloudtasks_app_fixture_in_conftest_replaces_the_ini_setting(
    pytester: pytest.Pytester, write
) -> None:
    write(ini_lines="", conftest="""
        import pytest
        from fastapi import FastAPI
        from app_mod import router

        wrapper = FastAPI()
        wrapper.include_router(router)
        wrapper.state.used = 0

        @wrapper.middleware("http")
        async def count(request, call_next):
            wrapper.state.used += 1
            return await call_next(request)

        @pytest.fixture
        def cloudtasks_app():
            return wrapper
    """, test_user="""
        from conftest import wrapper
        from app_mod import build_report, runs

        def test_deliver(cloudtasks_queue):
            build_report.delay(report_id=4)
            assert [a.status_code for a in cloudtasks_queue.run_until_empty()] == [200]
            assert wrapper.state.used == 1
            assert [r[0] for r in runs] == [4]
    """)
    run(pytester).assert_outcomes(passed=1)


def test_report_header_shows_the_app_the_queue_defaults_and_the_clock(
    pytester: pytest.Pytester, write
) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_config =\n    max_attempts=2\n"
                    "    min_backoff=5",
          test_user="def test_nothing():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "cloudtasks: app=app_mod:app, queues=max_attempts=2 min_backoff=5, clock=time-machine",
    ])


def test_report_header_without_settings(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="", test_user="def test_nothing():\n    pass\n")
    result = run(pytester)
    result.stdout.fnmatch_lines([
        "cloudtasks: app=(cloudtasks_app fixture), queues=Cloud Tasks defaults, "
        "clock=time-machine",
    ])


# -- queue settings: ini defaults and the marker ---------------------------------------------


def test_ini_cloudtasks_config_sets_every_tests_queue_defaults(
    pytester: pytest.Pytester, write
) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_config =\n    max_attempts=2\n"
                    "    min_backoff=5\n    max_dispatches_per_second=20",
          test_user="""
        from datetime import timedelta
        import pytest
        from app_mod import QUEUE, build_report
        from pytest_cloudtasks import TaskFailed

        def test_defaults(cloudtasks_queue):
            build_report.delay(report_id=-1)
            queue = cloudtasks_queue.client.get_queue(name=QUEUE)
            assert queue.retry_config.max_attempts == 2
            assert queue.retry_config.min_backoff == timedelta(seconds=5)
            assert queue.retry_config.max_doublings == 16
            assert queue.rate_limits.max_dispatches_per_second == 20
            with pytest.raises(TaskFailed, match="failed for good after 2 attempt"):
                cloudtasks_queue.run_until_empty()
            first, second = cloudtasks_queue.attempts
            assert second.dispatch_time - first.dispatch_time == timedelta(seconds=5)
    """)
    run(pytester).assert_outcomes(passed=1)


def test_ini_start_sets_every_tests_virtual_start(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_config = start=2030-06-01T12:00:00Z",
          test_user="""
        from datetime import datetime, timezone
        import pytest

        def test_ini_start(cloudtasks_queue):
            assert datetime.now(timezone.utc) == datetime(2030, 6, 1, 12, tzinfo=timezone.utc)

        @pytest.mark.cloudtasks(start="2031-01-01T00:00:00+00:00")
        def test_marker_start_wins(cloudtasks_queue):
            assert datetime.now(timezone.utc) == datetime(2031, 1, 1, tzinfo=timezone.utc)
    """)
    run(pytester).assert_outcomes(passed=2)


def test_marker_overrides_the_ini_defaults_key_by_key(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_config =\n    max_attempts=2\n"
                    "    min_backoff=5",
          test_user="""
        from datetime import timedelta
        import pytest
        from app_mod import QUEUE, build_report

        @pytest.mark.cloudtasks(max_attempts=7)
        def test_override(cloudtasks_queue):
            build_report.delay(report_id=1)
            retry = cloudtasks_queue.client.get_queue(name=QUEUE).retry_config
            assert (retry.max_attempts, retry.min_backoff) == (7, timedelta(seconds=5))
    """)
    run(pytester).assert_outcomes(passed=1)


def test_class_marker_applies_to_its_tests(pytester: pytest.Pytester, write) -> None:
    write(test_user="""
        import pytest
        from app_mod import QUEUE, build_report

        @pytest.mark.cloudtasks(max_attempts=3)
        class TestReports:
            def test_one(self, cloudtasks_queue):
                build_report.delay(report_id=1)
                queue = cloudtasks_queue.client.get_queue(name=QUEUE)
                assert queue.retry_config.max_attempts == 3

            @pytest.mark.cloudtasks(max_attempts=9)
            def test_closest_wins(self, cloudtasks_queue):
                build_report.delay(report_id=1)
                queue = cloudtasks_queue.client.get_queue(name=QUEUE)
                assert queue.retry_config.max_attempts == 9
    """)
    run(pytester).assert_outcomes(passed=2)


def test_ini_max_deliveries_bounds_every_drain(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_config = max_deliveries=3",
          test_user="""
        import pytest
        from app_mod import again

        def test_bound(cloudtasks_queue):
            again.delay(n=0)
            with pytest.raises(RuntimeError, match="stopped after 3 deliveries in a row "
                                                   "without the clock moving"):
                cloudtasks_queue.run_until_empty()
            assert len(cloudtasks_queue.attempts) == 3
    """)
    run(pytester).assert_outcomes(passed=1)


def test_bad_cloudtasks_config_line_is_a_usage_error(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_config = max_attempt=3",
          test_user="""
        def test_any(cloudtasks_queue):
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: cloudtasks_config line 'max_attempt=3': expected key=value with a key "
        "among assert_all_handled, deadline_scale, duplicates, fail_fast, *, shuffle, start, "
        "strict, tick, transient_failures.",
    ])


def test_unknown_marker_keyword_is_a_usage_error_listing_the_known_ones(
    pytester: pytest.Pytester, write
) -> None:
    write(test_user="""
        import pytest

        @pytest.mark.cloudtasks(max_attempt=3)
        def test_typo(cloudtasks_queue):
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: @pytest.mark.cloudtasks got unknown setting(s) max_attempt; known: "
        "assert_all_handled, "
        "deadline_scale, duplicates, fail_fast, lifespan, max_attempts, max_backoff, "
        "max_concurrent_dispatches, max_deliveries, "
        "max_dispatches_per_second, max_doublings, max_retry_duration, min_backoff, shuffle, "
        "start, strict, tick, transient_failures.",
    ])


def test_marker_positional_argument_is_a_usage_error(pytester: pytest.Pytester, write) -> None:
    write(test_user="""
        import pytest

        @pytest.mark.cloudtasks(3)
        def test_positional(cloudtasks_queue):
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: @pytest.mark.cloudtasks takes keyword arguments only.",
    ])


@pytest.mark.parametrize("start", ["'2026-03-08T06:30:00'", "'next tuesday'",
                                   "datetime(2026, 3, 8)", "1772951400"])
def test_start_without_an_offset_is_a_usage_error(
    pytester: pytest.Pytester, write, start: str
) -> None:
    write(test_user=f"""
        from datetime import datetime
        import pytest

        @pytest.mark.cloudtasks(start={start})
        def test_naive(cloudtasks_queue):
            pass
    """)
    shown = start.replace("datetime(", "datetime.datetime(").replace(", 3, 8)", ", 3, 8, 0, 0)")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"E  *UsageError: @pytest.mark.cloudtasks(start={shown}): give a "
        "timezone-aware datetime or an ISO 8601 string with an offset, e.g. "
        "'2026-03-08T06:30:00+00:00'.",
    ])


def test_marker_is_registered_for_strict_markers_and_listed(
    pytester: pytest.Pytester, write
) -> None:
    write(test_user="""
        import pytest

        @pytest.mark.cloudtasks(max_attempts=1)
        def test_marked():
            pass
    """)
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
    run(pytester, "--markers").stdout.fnmatch_lines([
        "@pytest.mark.cloudtasks(start=None, **settings): the virtual clock's start *",
    ])


def test_strict_marker_rejects_queues_nobody_created(pytester: pytest.Pytester, write) -> None:
    write(test_user="""
        import pytest
        from google.api_core import exceptions
        from google.cloud import tasks_v2
        from app_mod import QUEUE

        @pytest.mark.cloudtasks(strict=True)
        def test_strict(cloudtasks_queue):
            task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(
                url="https://worker.example.com/report?report_id=1"))
            with pytest.raises(exceptions.NotFound, match="Queue does not exist."):
                cloudtasks_queue.client.create_task(parent=QUEUE, task=task)
            cloudtasks_queue.client.create_queue(
                parent=QUEUE.rsplit("/queues/", 1)[0], queue=tasks_v2.Queue(name=QUEUE))
            cloudtasks_queue.client.create_task(parent=QUEUE, task=task)
            assert len(cloudtasks_queue) == 1
    """)
    run(pytester).assert_outcomes(passed=1)


# -- the clock backend ---------------------------------------------------------------------


def test_time_machine_clock_freezes_the_apps_time(pytester: pytest.Pytester, write) -> None:
    pytest.importorskip("time_machine")
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_clock = time-machine",
          test_user="""
        import time
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import build_report, runs

        START = datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)

        @pytest.mark.cloudtasks(start=START)
        def test_frozen(cloudtasks_queue):
            build_report.options(countdown=60).delay(report_id=1)
            cloudtasks_queue.advance(minutes=5)
            [(_, now, timestamp)] = runs
            assert now == START + timedelta(minutes=1)
            assert timestamp == (START + timedelta(minutes=1)).timestamp()
            assert time.time() == (START + timedelta(minutes=5)).timestamp()
    """)
    result = run(pytester)
    result.stdout.fnmatch_lines(["cloudtasks: *clock=time-machine"])
    result.assert_outcomes(passed=1)


def test_unknown_clock_backend_is_a_usage_error(pytester: pytest.Pytester, write) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app\ncloudtasks_clock = sundial", test_user="""
        def test_any(cloudtasks_queue):
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: clock backend 'sundial': use one of ('freezegun', 'time-machine')",
    ])


# -- isolation and cleanup -----------------------------------------------------------------

RECORDING = '''
from google.cloud import tasks_v2


class RecordingTasks:
    """What a suite might configure in tests that do not use the plugin."""

    def __init__(self):
        self.created = []

    def create_queue(self, request):
        return request.queue

    def create_task(self, request):
        self.created.append(request)
        return tasks_v2.Task(request.task, name=f"{request.parent}/tasks/recorded")
'''

RECORDED_APP = '''
from fastapi import APIRouter, FastAPI

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path
from fastapi_cloud_tasks.engine.transports import tasks_client
from recording import RecordingTasks

recording = RecordingTasks()
router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com",
    queue_path=queue_path("my-project", "europe-west1", "recorded"),
    client=tasks_client(recording)))


@router.post("/ping")
def ping(n: int):
    pass


app = FastAPI()
app.include_router(router)
'''


def test_nothing_stays_patched_after_a_test_using_the_queue(
    pytester: pytest.Pytester, write
) -> None:
    write(ini_lines="cloudtasks_app = recorded_app:app", recording=RECORDING,
          recorded_app=RECORDED_APP, test_user="""
        import time
        from datetime import datetime, timezone
        import pytest
        from recorded_app import ping, recording
        from fastapi_cloud_tasks.clients import current_override

        @pytest.mark.cloudtasks(start="2001-02-03T04:05:06+00:00")
        def test_with_the_fixture(cloudtasks_queue):
            ping.delay(n=1)
            cloudtasks_queue.advance(hours=1)
            assert len(cloudtasks_queue.created) == 1
            assert recording.created == []
            assert datetime.now(timezone.utc).year == 2001

        def test_later_without_the_fixture():
            ping.delay(n=2)
            assert [r.task.http_request.url for r in recording.created] == [
                "https://worker.example.com/ping?n=2"]
            assert current_override() is None
            assert datetime.now(timezone.utc).year > 2001
            assert type(datetime.now()) is datetime
            assert time.time() > datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()
    """)
    run(pytester).assert_outcomes(passed=2)


def test_nothing_stays_patched_after_a_test_that_failed_mid_drain(
    pytester: pytest.Pytester, write
) -> None:
    write(ini_lines="cloudtasks_app = app_mod:app", recording=RECORDING,
          recorded_app=RECORDED_APP, test_user="""
        import time
        from datetime import datetime, timezone
        import pytest
        from app_mod import build_report
        from recorded_app import ping, recording

        @pytest.mark.cloudtasks(start="2001-02-03T04:05:06+00:00", max_attempts=1)
        def test_fails(cloudtasks_queue):
            build_report.delay(report_id=-5)
            cloudtasks_queue.run_until_empty()

        def test_later_without_the_fixture():
            ping.delay(n=2)
            assert len(recording.created) == 1
            assert datetime.now(timezone.utc).year > 2001
            assert time.time() > datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()
    """)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["E  *ValueError: no report -5"])


def test_each_test_starts_with_an_empty_queue(pytester: pytest.Pytester, write) -> None:
    write(test_user="""
        import pytest
        from google.api_core import exceptions
        from app_mod import QUEUE, build_report

        @pytest.mark.cloudtasks(max_attempts=1)
        def test_first(cloudtasks_queue):
            build_report.delay(report_id=1)
            build_report.options(countdown=600).delay(report_id=2)
            cloudtasks_queue.advance(seconds=1)
            assert len(cloudtasks_queue) == 1

        def test_second(cloudtasks_queue):
            assert len(cloudtasks_queue) == 0
            assert cloudtasks_queue.created == []
            assert cloudtasks_queue.attempts == []
            with pytest.raises(exceptions.NotFound):
                cloudtasks_queue.client.get_queue(name=QUEUE)
            build_report.delay(report_id=3)
            assert cloudtasks_queue.client.get_queue(name=QUEUE).retry_config.max_attempts == 100
    """)
    run(pytester).assert_outcomes(passed=2)


def test_a_task_id_used_in_one_test_is_free_in_the_next(pytester: pytest.Pytester, write) -> None:
    write(test_user="""
        import pytest
        from app_mod import build_report

        @pytest.mark.parametrize("attempt", [1, 2])
        def test_named(cloudtasks_queue, attempt):
            build_report.options(task_id="daily-report").delay(report_id=attempt)
            assert cloudtasks_queue.tasks[0].short_name == "daily-report"
    """)
    run(pytester).assert_outcomes(passed=2)


def test_tests_pass_under_xdist(pytester: pytest.Pytester, write) -> None:
    pytest.importorskip("xdist")
    write(test_user="""
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import build_report, runs

        @pytest.mark.parametrize("report_id", range(6))
        def test_reports(cloudtasks_queue, report_id):
            build_report.options(countdown=report_id).delay(report_id=report_id)
            assert len(cloudtasks_queue) == 1
            [attempt] = cloudtasks_queue.run_until_empty()
            assert attempt.status_code == 200
            assert runs[-1][0] == report_id

        @pytest.mark.cloudtasks(start="2030-01-01T00:00:00+00:00")
        def test_clock(cloudtasks_queue):
            cloudtasks_queue.advance(hours=1)
            assert datetime.now(timezone.utc) == datetime(2030, 1, 1, 1, tzinfo=timezone.utc)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "xdist", "-n", "2")
    result.stdout.fnmatch_lines(["created: 2/2 workers*"])
    result.assert_outcomes(passed=7)
