"""`dispatch_deadline` enforced on wall time, as Cloud Tasks does: past it the attempt fails as
DEADLINE_EXCEEDED and the next one sees `X-CloudTasks-TaskPreviousResponse: 504`.
`deadline_scale` shrinks the 15 s minimum so these tests wait a fraction of a second."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
import asyncio
import threading
import time

from fastapi import APIRouter, Depends, FastAPI

from fastapi_cloud_tasks import CloudTasksHeaders, DelayedRouteBuilder, queue_path

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=queue_path("p", "europe-west1", "q")))
log = []
released = threading.Event()


@router.post("/slow")
async def slow_async(headers: CloudTasksHeaders = Depends()):
    log.append(("async", headers.retry_count, headers.previous_response))
    if headers.retry_count == 0:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise


@router.post("/blocking")
def blocking_sync(headers: CloudTasksHeaders = Depends()):
    log.append(("sync", headers.retry_count))
    if headers.retry_count == 0:
        released.wait(30)  # a worker thread cannot be cancelled
        time.sleep(0.2)  # still running when the test ends: teardown must wait for it
        log.append("first attempt's thread finished")


@router.post("/hang")
async def hang():
    await asyncio.sleep(3600)


app = FastAPI()
app.include_router(router)
'''

_runs = itertools.count()


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    number = next(_runs)

    def run(source: str) -> pytest.RunResult:
        pytester.makeini("[pytest]\ncloudtasks_app = app_mod:app\nasyncio_default_fixture_loop_"
                         "scope = function\nfilterwarnings = error\n")
        host = f"worker-{number}.example.com"
        pytester.makepyfile(app_mod=APP.replace("worker.example.com", host),
                            test_user=source.replace("worker.example.com", host))
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


def test_an_async_endpoint_past_its_deadline_is_cancelled_and_retried_with_504(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import log, slow_async

        # 15 s (the minimum) x 0.01: the attempt gives up after 0.15 s of wall time.
        @pytest.mark.cloudtasks(deadline_scale=0.01, min_backoff=1)
        def test_deadline(cloudtasks_queue):
            slow_async.options(dispatch_deadline=15).delay()
            first, second = cloudtasks_queue.run_until_empty()
            assert first.deadline_exceeded and first.status_code == 504
            assert first.response is None and first.exception is None
            assert second.succeeded
            assert second.request_headers["X-CloudTasks-TaskPreviousResponse"] == "504"
            assert second.request_headers["X-CloudTasks-TaskExecutionCount"] == "0"
            assert log == [("async", 0, None), "cancelled", ("async", 1, 504)]
    """)
    result.assert_outcomes(passed=1)


def test_a_blocking_sync_endpoint_fails_at_the_deadline_and_its_thread_finishes_later(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import blocking_sync, log, released

        @pytest.mark.cloudtasks(deadline_scale=0.01, min_backoff=1)
        def test_blocked(cloudtasks_queue):
            blocking_sync.options(dispatch_deadline=15).delay()
            first, second = cloudtasks_queue.run_until_empty()
            assert first.deadline_exceeded and second.succeeded
            # The first attempt's thread still runs, as a worker does after Cloud Tasks gave up.
            assert log == [("sync", 0), ("sync", 1)]
            released.set()

        def test_after_teardown():
            # Teardown waited for the thread left running: it finished within the test.
            assert log[-1] == "first attempt's thread finished"
    """)
    result.assert_outcomes(passed=2)


def test_an_endpoint_that_always_hangs_fails_for_good_without_hanging_the_test(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import hang

        @pytest.mark.cloudtasks(deadline_scale=0.001, max_attempts=3, min_backoff=1)
        def test_hang(cloudtasks_queue):
            hang.options(dispatch_deadline=15).delay()
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E  *TaskFailed: *hang() failed for good after 3 attempt(s)*"])


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_deadline_scale_not_above_zero_is_a_usage_error(run_user_tests, value: str) -> None:
    result = run_user_tests(f"""
        import pytest

        @pytest.mark.cloudtasks(deadline_scale={value})
        def test_any(cloudtasks_queue):
            pass
    """)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"E  *UsageError: deadline_scale={float(value)!r}: give a number above 0 (0.01 lets a "
        "15 s deadline pass after 0.15 s).",
    ])
