"""The assertions of `cloudtasks_queue` and `cloudtasks_scheduler` (`assert_enqueued`,
`assert_not_enqueued`, `times=`, `assert_scheduled`...) and the `assert_all_handled` teardown
check, used as a user's suite uses them, failure messages included."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    CloudTasksHeaders,
    DelayedRouteBuilder,
    ScheduledRouteBuilder,
    delayed_task,
    location_path,
    queue_path,
)

BASE_URL = "https://worker.example.com"
tasks = APIRouter(prefix="/tasks", route_class=DelayedRouteBuilder(
    base_url=BASE_URL, queue_path=queue_path("my-project", "europe-west1", "emails")))
jobs = APIRouter(prefix="/jobs", route_class=ScheduledRouteBuilder(
    base_url=BASE_URL, location_path=location_path("my-project", "europe-west1")))


class Email(BaseModel):
    to: str
    subject: str


@tasks.post("/send")
def send_email(email: Email, priority: int = 0, ct: CloudTasksHeaders = Depends()):
    pass


@delayed_task
@tasks.post("/count")
def count(times: int):
    pass


@jobs.post("/digest")
def digest(hour: int):
    pass


def plain_function(x: int):
    pass


app = FastAPI()
app.include_router(tasks)
app.include_router(jobs)
'''

_runs = itertools.count()


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    host = f"worker-assertions-{next(_runs)}.example.com"

    def run(source: str, ini: str = "") -> pytest.RunResult:
        pytester.makeini("[pytest]\ncloudtasks_app = app_mod:app\n"
                         "asyncio_default_fixture_loop_scope = function\n"
                         "filterwarnings = error\n" + ini)
        pytester.makepyfile(app_mod=APP.replace("worker.example.com", host), test_user=source)
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


# -- assert_enqueued validates what it looks for -------------------------------------------


def test_a_dict_for_a_model_and_text_for_an_int_match_as_delay_would_send_them(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        from app_mod import Email, send_email

        def test_coerced(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="hi"), priority=3)
            task = cloudtasks_queue.assert_enqueued(
                send_email, email={"to": "ada@example.com", "subject": "hi"}, priority="3")
            assert task.arguments["priority"] == 3
    """)
    result.assert_outcomes(passed=1)


def test_a_misspelled_parameter_is_a_usage_error_naming_it(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import send_email
        from pytest_cloudtasks import AssertionArgumentsError

        def test_typo(cloudtasks_queue):
            with pytest.raises(AssertionArgumentsError) as raised:
                cloudtasks_queue.assert_enqueued(send_email, priorty=3)
            assert not isinstance(raised.value, AssertionError)
            cloudtasks_queue.assert_enqueued(send_email, priorty=3, priority="high")
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionArgumentsError: assert_enqueued(send_email(priorty=3, priority='high')) "
        "can never match: 2 invalid arguments for the endpoint:",
        "E  *priorty: not a parameter of send_email; expected email, priority",
        "E  *priority (query): Input should be a valid integer, unable to parse string as an "
        "integer",
    ])


def test_a_function_that_is_no_task_endpoint_is_a_usage_error(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import plain_function

        def test_not_a_task(cloudtasks_queue):
            cloudtasks_queue.assert_enqueued(plain_function, x=1)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *CloudTasksUsageError: assert_enqueued(plain_function, ...): delayed_task(*): not an "
        "endpoint of a router whose route_class is a DelayedRouteBuilder(...).*",
    ])


# -- counts and absence ---------------------------------------------------------------------


def test_times_counts_exactly_and_the_typed_task_is_accepted(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import count

        def test_counted(cloudtasks_queue):
            count.delay(times=1)
            count.delay(times=1)
            count.delay(times=2)
            cloudtasks_queue.assert_enqueued(count, {"times": 1}, times=2)
            cloudtasks_queue.assert_enqueued(count.endpoint, times=3)
            cloudtasks_queue.assert_enqueued(count, {"times": 2}, times=3)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionError: count(times=2) was enqueued 1 time(s), expected 3:",
        "E  *count(times=2) at *",
    ])


def test_times_must_be_a_positive_count(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import count

        def test_zero(cloudtasks_queue):
            cloudtasks_queue.assert_enqueued(count, times=0)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *CloudTasksUsageError: assert_enqueued(..., times=0): give a count of 1 or more "
        "(for none, use assert_not_enqueued).",
    ])


def test_assert_not_enqueued_passes_and_fails_listing_the_matches(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import Email, send_email

        def test_never(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="hi"), priority=1)
            cloudtasks_queue.assert_not_enqueued(send_email, priority=2)
            cloudtasks_queue.assert_not_enqueued(send_email, email={"to": "bob@example.com",
                                                                    "subject": "hi"})
            cloudtasks_queue.assert_not_enqueued(send_email, priority=1)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionError: send_email(priority=1) was enqueued 1 time(s), expected never:",
        "E  *send_email(priority=1, email=Email(to='ada@example.com', subject='hi')) at *",
    ])


# -- the scheduler's jobs -------------------------------------------------------------------


def test_assert_scheduled_and_not_scheduled(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import digest

        def test_jobs(cloudtasks_scheduler):
            digest.scheduler(name="morning", schedule="0 7 * * *").schedule(hour=7)
            digest.scheduler(name="evening", schedule="0 19 * * *").schedule(hour=19)
            job = cloudtasks_scheduler.assert_scheduled(digest, hour="7")
            assert job.short_name == "morning"
            cloudtasks_scheduler.assert_scheduled(digest, times=2)
            cloudtasks_scheduler.assert_not_scheduled(digest, hour=12)
            cloudtasks_scheduler.assert_scheduled(digest, hour=12)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionError: digest(hour=12) is not scheduled. Jobs in this test:",
        "E  *job morning (0 7 * * * UTC) POST https://*/jobs/digest?hour=7 ENABLED, next run *",
        "E  *job evening (0 19 * * * UTC) POST https://*/jobs/digest?hour=19 ENABLED, next run *",
    ])


def test_assert_not_scheduled_failure_lists_the_jobs(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import digest

        def test_jobs(cloudtasks_scheduler):
            digest.scheduler(name="morning", schedule="0 7 * * *").schedule(hour=7)
            cloudtasks_scheduler.assert_not_scheduled(digest)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionError: digest() is scheduled by 1 job(s), expected none:",
        "E  *job morning (0 7 * * * UTC) *",
    ])


# -- assert_all_handled ---------------------------------------------------------------------


def test_assert_all_handled_fails_a_test_leaving_tasks_and_jobs_unhandled(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import Email, count, digest, send_email

        @pytest.mark.cloudtasks(assert_all_handled=True, start="2026-01-01T00:00:00+00:00")
        def test_leaves_work(cloudtasks_queue, cloudtasks_scheduler):
            count.delay(times=1)                      # run below
            count.options(countdown=60).delay(times=2)  # asserted below
            send_email.options(countdown=3600).delay(email=Email(to="a@b.co", subject="hi"))
            digest.scheduler(name="morning", schedule="0 7 * * *").schedule(hour=7)
            cloudtasks_queue.advance(seconds=1)
            cloudtasks_queue.assert_enqueued(count, times=2)
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_leaves_work*",
        "assert_all_handled: the test left 1 task(s) and 1 job(s) it neither ran nor asserted:",
        "  task send_email(priority=0, email=Email(to='a@b.co', subject='hi')) due "
        "2026-01-01T01:00:00+00:00",
        "  job morning (0 7 * * * UTC) POST https://*/jobs/digest?hour=7",
        "Run them (advance(), run_until_empty(), run_task(), run_job()), assert them "
        "(assert_enqueued(), assert_scheduled()), or turn the check off for this test with "
        "@pytest.mark.cloudtasks(assert_all_handled=False).",
    ])


def test_assert_all_handled_from_the_ini_passes_when_all_was_run_or_asserted(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import count, digest

        def test_handled(cloudtasks_queue, cloudtasks_scheduler):
            count.delay(times=1)
            count.options(countdown=60).delay(times=2)
            digest.scheduler(name="morning", schedule="0 7 * * *").schedule(hour=7)
            cloudtasks_queue.advance(seconds=1)
            cloudtasks_queue.assert_enqueued(count, times=2)
            cloudtasks_scheduler.assert_scheduled(digest)

        def test_ran_the_job(cloudtasks_scheduler):
            digest.scheduler(name="morning", schedule="* * * * *").schedule(hour=7)
            cloudtasks_scheduler.advance(minutes=1)

        def test_left_one(cloudtasks_queue):
            count.delay(times=3)

        @pytest.mark.cloudtasks(assert_all_handled=False)
        def test_turned_off(cloudtasks_queue):
            count.delay(times=3)

        def test_failed_already(cloudtasks_queue):
            count.delay(times=3)
            assert False, "the test's own failure"
    """, ini="cloudtasks_config = assert_all_handled=true\n")
    result.assert_outcomes(passed=4, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "ERROR test_user.py::test_left_one - Failed: assert_all_handled:*"])
    assert "ERROR at teardown of test_failed_already" not in result.stdout.str()


# -- the marker and the ini are checked -----------------------------------------------------


def test_the_marker_applies_to_a_test_using_no_fixture(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timezone
        import pytest
        from app_mod import count

        @pytest.mark.cloudtasks(start="2026-01-01T00:00:00+00:00", assert_all_handled=True)
        def test_no_fixture():
            assert datetime.now(timezone.utc) == datetime(2026, 1, 1, tzinfo=timezone.utc)
            count.delay(times=1)  # captured by the test's engine, not sent to Google
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["  task count(times=1) due 2026-01-01T00:00:00+00:00"])


def test_a_mistyped_ini_boolean_is_a_usage_error(run_user_tests) -> None:
    result = run_user_tests("""
        def test_any(cloudtasks_queue):
            pass
    """, ini="cloudtasks_config = strict=ture\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: cloudtasks_config line 'strict=ture': strict takes true or false (or "
        "1/0, yes/no, on/off), not 'ture'.",
    ])


def test_a_mistyped_ini_number_is_a_usage_error(run_user_tests) -> None:
    result = run_user_tests("""
        def test_any(cloudtasks_queue):
            pass
    """, ini="cloudtasks_config = max_attempts=three\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: cloudtasks_config line 'max_attempts=three': max_attempts takes an "
        "integer, not 'three'.",
    ])


def test_marker_values_of_the_wrong_type_are_a_usage_error(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest

        @pytest.mark.cloudtasks(strict="no", max_attempts=2.5, min_backoff="1s")
        def test_any(cloudtasks_queue):
            pass
    """)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: @pytest.mark.cloudtasks got 3 value(s) of the wrong type: "
        "strict='no' (expected True or False), max_attempts=2.5 (expected an integer), "
        "min_backoff='1s' (expected a number of seconds).",
    ])


def test_a_marker_on_one_parameter_set_without_a_fixture_is_a_usage_error(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest

        @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.cloudtasks())])
        def test_param(n):
            pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: test_user.py::test_param[[]2[]] has @pytest.mark.cloudtasks on its parameters "
        "but uses neither cloudtasks_queue nor cloudtasks_scheduler: request one of them, or "
        "mark the whole test.",
    ])
