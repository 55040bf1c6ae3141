"""The clock contract (README, "Time"), the same under both backends: `datetime.now()` and
`time.time()` virtual from the first move, `time.monotonic()`/`perf_counter()` real and
continuous; `tick`; apps with `from __future__ import annotations`; what bounds a drain."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

BACKENDS = ["time-machine", "freezegun"]

APP = '''
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    DelayedRouteBuilder, ScheduledRouteBuilder, location_path, queue_path)

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=queue_path("p", "europe-west1", "q")))
jobs = APIRouter(route_class=ScheduledRouteBuilder(
    base_url="https://worker.example.com", location_path=location_path("p", "europe-west1")))
ticks = []


class Stamp(BaseModel):
    at: datetime
    day: date


@router.post("/stamp")
def stamp(when: datetime, day: date) -> Stamp:
    return Stamp(at=when, day=day)


@router.post("/again")
def again(n: int):
    again.delay(n=n + 1)


@jobs.post("/tick")
def tick_job():
    ticks.append(1)


app = FastAPI()
app.include_router(router)
app.include_router(jobs)
'''

_runs = itertools.count()


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Write the app and the user's test module (hosts unique per test); run pytest."""
    number = next(_runs)

    def run(source: str, backend: str, ini: str = "") -> pytest.RunResult:
        pytester.makeini(
            "[pytest]\ncloudtasks_app = app_mod:app\nasyncio_default_fixture_loop_scope = "
            f"function\nfilterwarnings = error\ncloudtasks_clock = {backend}\n{ini}"
        )
        host = f"worker-{number}.example.com"
        pytester.makepyfile(app_mod=APP.replace("worker.example.com", host),
                            test_user=source.replace("worker.example.com", host))
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_is_virtual_from_the_first_move_and_still_between_moves(
    run_user_tests, backend: str
) -> None:
    result = run_user_tests("""
        import time
        from datetime import datetime, timedelta, timezone

        def test_clock(cloudtasks_queue):
            assert abs(time.time() - datetime.now(timezone.utc).timestamp()) < 5  # real
            cloudtasks_queue.advance(hours=1)
            now = cloudtasks_queue.now
            assert datetime.now(timezone.utc) == now
            assert time.time() == now.timestamp()
            time.sleep(0.01)
            assert time.time() == now.timestamp()  # it stands still between moves
            cloudtasks_queue.advance(minutes=30)
            assert time.time() == (now + timedelta(minutes=30)).timestamp()
    """, backend)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_monotonic_and_perf_counter_stay_real_and_continuous(run_user_tests, backend: str) -> None:
    result = run_user_tests("""
        import time

        def test_counters(cloudtasks_queue):
            m0, p0, n0 = time.monotonic(), time.perf_counter(), time.monotonic_ns()
            cloudtasks_queue.advance(hours=5)  # the first move starts the backend
            time.sleep(0.01)
            m1, p1, n1 = time.monotonic(), time.perf_counter(), time.monotonic_ns()
            # No jump (freezegun's fakes jumped ~57 years, to the epoch time), no hours moved,
            # and real time goes on between moves: durations are real durations.
            assert 0.01 <= m1 - m0 < 60 and 0.01 <= p1 - p0 < 60
            assert 10_000_000 <= n1 - n0 < 60 * 10**9
    """, backend)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["marker", "ini"])
def test_tick_lets_a_polling_loop_end(run_user_tests, backend: str, where: str) -> None:
    marker = "@pytest.mark.cloudtasks(tick=True)" if where == "marker" else ""
    result = run_user_tests(f"""
        import time
        import pytest
        from datetime import datetime, timezone

        {marker}
        def test_poll(cloudtasks_queue):
            cloudtasks_queue.advance(days=1)
            moved_to = cloudtasks_queue.now
            deadline = time.time() + 0.05
            for _ in range(10_000):  # a poll with a bound, as tests should
                if time.time() >= deadline:
                    break
                time.sleep(0.001)
            else:
                raise AssertionError("time.time() never reached the deadline")
            assert datetime.now(timezone.utc) > moved_to
            assert cloudtasks_queue.now > moved_to  # the harness ticks with the app
    """, backend, "cloudtasks_config = tick=true\n" if where == "ini" else "")
    result.assert_outcomes(passed=1)


FUTURE_ANNOTATIONS_TESTS = """
import importlib
import sys
from datetime import date, datetime, timezone

import pytest


def deliver_stamp(cloudtasks_queue):
    app_mod = sys.modules["app_mod"]
    app_mod.stamp.delay(when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                        day=date(2026, 1, 2))
    [attempt] = cloudtasks_queue.advance(seconds=1)
    assert attempt.status_code == 200, attempt.exception
    assert attempt.response.json() == {"at": "2026-01-02T03:04:05Z", "day": "2026-01-02"}


def test_first_request_after_the_clock_froze(cloudtasks_queue):
    import app_mod  # imported before freezing; its routes first served while frozen
    deliver_stamp(cloudtasks_queue)


@pytest.mark.cloudtasks(start="2026-01-01T00:00:00+00:00")
def test_app_imported_while_frozen(cloudtasks_queue):
    sys.modules.pop("app_mod", None)
    importlib.import_module("app_mod")  # its `datetime` is the backend's while frozen
    deliver_stamp(cloudtasks_queue)


def test_again_after_it_served_requests(cloudtasks_queue):
    deliver_stamp(cloudtasks_queue)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_app_with_future_annotations_and_datetimes_is_served_in_any_order(
    run_user_tests, backend: str
) -> None:
    """FastAPI >= 0.137 builds an included route's fields on its first request; under
    freezegun `datetime` was `FakeDatetime` then, and every delivery got a 500. Run under the
    oldest supported FastAPI too (tox -e fastapi-oldest), which builds them at import."""
    result = run_user_tests(FUTURE_ANNOTATIONS_TESTS, backend)
    result.assert_outcomes(passed=3)


def test_time_machine_backend_refuses_to_start_under_freezegun_with_a_fix(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        from freezegun import freeze_time

        def test_both(cloudtasks_queue):
            with freeze_time("2026-01-01"):
                cloudtasks_queue.advance(seconds=1)
    """, "time-machine")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *RuntimeError: The cloudtasks clock (time-machine) cannot start: time-machine "
        "cannot start when freezegun is active. Set `cloudtasks_clock = freezegun` so both "
        "use freezegun, or move time with time_machine.travel in this test instead of "
        "freezegun.",
    ])


# -- what bounds a drain ---------------------------------------------------------------------


def test_advance_runs_every_occurrence_of_its_window(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import tick_job, ticks

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:30+00:00")
        def test_two_days(cloudtasks_scheduler):
            tick_job.scheduler(name="every-minute", schedule="* * * * *").schedule()
            runs = cloudtasks_scheduler.advance(days=2)
            assert len(runs) == len(ticks) == 2 * 24 * 60
    """, "time-machine")
    result.assert_outcomes(passed=1)


def test_run_until_empty_with_an_enabled_job_names_the_job(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import tick_job

        @pytest.mark.cloudtasks(max_deliveries=20)
        def test_no_end(cloudtasks_queue, cloudtasks_scheduler):
            tick_job.scheduler(name="every-minute", schedule="* * * * *").schedule()
            cloudtasks_queue.run_until_empty()
    """, "time-machine")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *RunawayError: run_until_empty() stopped after 20 deliveries, job every-minute "
        "(* * * * * UTC) POST https://worker-*.example.com/tick (20 of them): a task chain that "
        "never ends, or an enabled job (its occurrences never run out), has no empty end. Use "
        "advance(...) to run what is due up to a time, or raise the limit with "
        "@pytest.mark.cloudtasks(max_deliveries=...).",
    ])


def test_a_task_enqueueing_itself_at_once_stops_advance_too(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import again

        @pytest.mark.cloudtasks(max_deliveries=50)
        def test_loop(cloudtasks_queue):
            again.delay(n=0)
            cloudtasks_queue.advance(days=2)
    """, "time-machine")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *RunawayError: stopped after 50 deliveries in a row without the clock moving (at "
        "*): again(n=49) (50 of them) keeps enqueueing itself with no delay, or fails with no "
        "backoff? *",
    ])
