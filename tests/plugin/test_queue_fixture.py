"""The `cloudtasks_queue` fixture, used the way an application's test suite uses it.

Each test writes a small FastAPI app and a user's test module with pytester, runs pytest on
them, and checks the outcome and the exact messages a user would read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
import time
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from fastapi_cloud_tasks import CloudTasksHeaders, DelayedRouteBuilder, queue_path

BASE_URL = "https://worker.example.com"
QUEUE = queue_path("my-project", "europe-west1", "emails")
router = APIRouter(
    prefix="/tasks",
    route_class=DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE),
)
deliveries = []


class Email(BaseModel):
    to: str
    subject: str


@router.post("/send")
def send_email(email: Email, priority: int = 0, ct: CloudTasksHeaders = Depends()):
    deliveries.append({"to": email.to, "priority": priority, "headers": ct,
                       "now": datetime.now(timezone.utc), "time": time.time()})
    if email.subject == "crash":
        raise RuntimeError(f"SMTP server refused {email.to}")
    return {"sent": email.to}


@router.post("/flaky")
def flaky(ct: CloudTasksHeaders = Depends()):
    deliveries.append(ct)
    if ct.retry_count < 2:
        raise RuntimeError("not yet")


@router.post("/countdown")
def count_down(n: int):
    deliveries.append(n)
    if n > 0:
        count_down.delay(n=n - 1)


@router.post("/forever")
def forever(n: int):
    forever.delay(n=n + 1)


@router.post("/notify")
async def notify(user_id: int):
    deliveries.append(user_id)
    if user_id > 100:
        await notify.adelay(user_id=user_id - 100)


app = FastAPI()
app.include_router(router)


@app.post("/signup")
def signup(email: str):
    send_email.options(countdown=60).delay(email=Email(to=email, subject="welcome"))
    return {"ok": True}
'''

INI = """
[pytest]
cloudtasks_app = app_mod:app
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


_runs = itertools.count()


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Write the app, `modules` and `source` as the user's test module; run pytest on them.

    Each test's apps get hosts of their own: the endpoints of earlier in-process runs may not
    be garbage-collected yet, and must not be mistaken for this run's.
    """
    number = next(_runs)

    def unique(text: str) -> str:
        return (text.replace("worker.example.com", f"worker-{number}.example.com")
                .replace("billing.example.com", f"billing-{number}.example.com"))

    def run(source: str, *args: str, **modules: str) -> pytest.RunResult:
        pytester.makeini(INI)
        pytester.makepyfile(app_mod=unique(APP), test_user=unique(source),
                            **{name: unique(text) for name, text in modules.items()})
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run


# -- capture -----------------------------------------------------------------------------


def test_delay_is_captured_with_endpoint_and_typed_arguments(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import Email, send_email

        def test_captured(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="hi"), priority=2)

            assert len(cloudtasks_queue) == 1
            [task] = cloudtasks_queue.tasks
            assert task.endpoint is send_email
            assert task.arguments == {"email": Email(to="ada@example.com", subject="hi"),
                                      "priority": 2}
            assert type(task.arguments["priority"]) is int
            assert task.json() == {"to": "ada@example.com", "subject": "hi"}
            assert task.method == "POST"
            assert task.url == "https://worker.example.com/tasks/send?priority=2"
            assert task.queue == "projects/my-project/locations/europe-west1/queues/emails"
    """)
    result.assert_outcomes(passed=1)


def test_captured_schedule_time_is_timezone_aware_and_now(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        import pytest
        from app_mod import Email, send_email

        @pytest.mark.cloudtasks(start="2026-01-01T00:00:00Z")
        def test_schedule_time(cloudtasks_queue):
            send_email.delay(email=Email(to="a@example.com", subject="hi"))
            send_email.options(countdown=90).delay(email=Email(to="b@example.com", subject="hi"))

            now, later = (t.schedule_time for t in cloudtasks_queue.tasks)
            assert now.utcoffset() == later.utcoffset() == timedelta(0)
            assert now == cloudtasks_queue.now
            assert later - now == timedelta(seconds=90)
    """)
    result.assert_outcomes(passed=1)


def test_tasks_lists_pending_only_while_created_keeps_every_task(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import Email, send_email

        def test_created(cloudtasks_queue):
            send_email.delay(email=Email(to="a@example.com", subject="hi"))
            send_email.options(countdown=3600).delay(email=Email(to="b@example.com", subject="hi"))
            cloudtasks_queue.advance(seconds=1)

            assert [t.arguments["email"].to for t in cloudtasks_queue.tasks] == ["b@example.com"]
            assert [t.arguments["email"].to for t in cloudtasks_queue.created] == [
                "a@example.com", "b@example.com"]
    """)
    result.assert_outcomes(passed=1)


# -- delivering --------------------------------------------------------------------------


def test_run_until_empty_delivers_with_cloud_tasks_headers(run_user_tests) -> None:
    result = run_user_tests("""
        import re
        from app_mod import Email, deliveries, send_email

        def test_delivered(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="hi"), priority=1)
            task_id = cloudtasks_queue.tasks[0].short_name

            [attempt] = cloudtasks_queue.run_until_empty()

            assert len(cloudtasks_queue) == 0
            assert attempt.status_code == 200
            assert attempt.response.json() == {"sent": "ada@example.com"}
            assert attempt.outcome.value == "succeeded"
            headers = attempt.request_headers
            assert headers["user-agent"] == "Google-Cloud-Tasks"
            assert headers["X-CLOUDTASKS-QUEUENAME"] == "emails"
            assert headers["x-cloudtasks-taskname"] == task_id
            assert re.fullmatch(r"\\d+\\.\\d{6}", headers["X-CloudTasks-TaskETA"])
            assert "X-CloudTasks-TaskPreviousResponse" not in headers

            [delivery] = deliveries
            ct = delivery["headers"]
            assert (ct.queue_name, ct.task_name) == ("emails", task_id)
            assert (ct.retry_count, ct.execution_count, ct.previous_response) == (0, 0, None)
            assert delivery["priority"] == 1
    """)
    result.assert_outcomes(passed=1)


def test_countdown_is_respected_by_advance(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        from app_mod import Email, deliveries, send_email

        def test_countdown(cloudtasks_queue):
            send_email.options(countdown=60).delay(email=Email(to="a@example.com", subject="hi"))
            start = cloudtasks_queue.tasks[0].schedule_time - timedelta(seconds=60)

            assert cloudtasks_queue.advance(seconds=59) == []
            assert deliveries == [] and len(cloudtasks_queue) == 1

            [attempt] = cloudtasks_queue.advance(seconds=1)
            assert attempt.dispatch_time == start + timedelta(seconds=60)
            assert len(deliveries) == 1 and len(cloudtasks_queue) == 0
    """)
    result.assert_outcomes(passed=1)


def test_advance_accepts_a_timedelta_and_unit_keywords(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        import pytest

        @pytest.mark.cloudtasks(start="2026-01-01T00:00:00Z")
        def test_units(cloudtasks_queue):
            start = cloudtasks_queue.now
            cloudtasks_queue.advance(timedelta(minutes=1))
            cloudtasks_queue.advance(30)
            cloudtasks_queue.advance(hours=1, minutes=2, seconds=3)
            cloudtasks_queue.advance(days=1)
            assert cloudtasks_queue.now - start == timedelta(days=1, hours=1, minutes=3,
                                                             seconds=33)
    """)
    result.assert_outcomes(passed=1)


def test_retries_are_delivered_with_backoff_and_retry_headers(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from datetime import timedelta
        from app_mod import deliveries, flaky

        @pytest.mark.cloudtasks(min_backoff=2, max_backoff=60)
        def test_flaky(cloudtasks_queue):
            flaky.delay()
            attempts = cloudtasks_queue.run_until_empty()

            assert [a.status_code for a in attempts] == [500, 500, 200]
            assert [a.retry_count for a in attempts] == [0, 1, 2]
            gaps = [b.dispatch_time - a.dispatch_time for a, b in zip(attempts, attempts[1:])]
            assert gaps == [timedelta(seconds=2), timedelta(seconds=4)]
            assert [ct.previous_response for ct in deliveries] == [None, 500, 500]
            assert [ct.execution_count for ct in deliveries] == [0, 0, 0]
            assert isinstance(attempts[0].exception, RuntimeError)
    """)
    result.assert_outcomes(passed=1)


def test_retries_used_up_raise_task_failed_after_max_attempts(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import Email, deliveries, send_email
        from pytest_cloudtasks import TaskFailed

        @pytest.mark.cloudtasks(max_attempts=3)
        def test_gives_up(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="crash"))
            with pytest.raises(TaskFailed) as failed:
                cloudtasks_queue.run_until_empty()
            assert len(deliveries) == 3
            assert [a.retry_count for a in cloudtasks_queue.attempts] == [0, 1, 2]
            assert failed.value.attempt is cloudtasks_queue.attempts[-1]
            assert len(cloudtasks_queue) == 0
    """)
    result.assert_outcomes(passed=1)


def test_task_failed_message_names_the_endpoint_and_shows_the_apps_traceback(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import Email, send_email

        @pytest.mark.cloudtasks(max_attempts=3)
        def test_gives_up(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="crash"), priority=5)
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    # The app's frame right under the headline; the server's ~45 frames counted, not shown.
    result.stdout.fnmatch_lines([
        "E  *TaskFailed: send_email(priority=5, email=Email(to='ada@example.com', "
        "subject='crash')) failed for good after 3 attempt(s); last response: 500 from an "
        "exception in the app:",
        "E  *Traceback (most recent call last):",
        'E  *app_mod.py", line *, in send_email',
        'E  *raise RuntimeError(f"SMTP server refused {email.to}")',
        "E  *RuntimeError: SMTP server refused ada@example.com",
        "E  *(* frames of the server around the app hidden: Starlette, FastAPI, anyio, asyncio; "
        "attempt.exception has the whole traceback)",
        "E  *Request: POST https://worker-*.example.com/tasks/send?priority=5",
        "E  *Attempts: #1-#3 500 (RuntimeError) from *T*+00:00 to *T*+00:00",
    ])
    message = result.stdout.str().split("TaskFailed: ", 1)[1].split("\n\n", 1)[0]
    assert "starlette" not in message
    assert "fastapi/" not in message
    assert len(message.splitlines()) <= 10


def test_fail_fast_raises_on_the_first_exception(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import Email, deliveries, send_email
        from pytest_cloudtasks import TaskFailed

        @pytest.mark.cloudtasks(fail_fast=True)
        def test_fast(cloudtasks_queue):
            send_email.delay(email=Email(to="ada@example.com", subject="crash"))
            with pytest.raises(TaskFailed, match=r"raised \\(fail_fast is on\\)") as failed:
                cloudtasks_queue.run_until_empty()
            assert len(deliveries) == 1
            assert isinstance(failed.value.__cause__, RuntimeError)
            assert str(failed.value.__cause__) == "SMTP server refused ada@example.com"
    """)
    result.assert_outcomes(passed=1)


def test_without_fail_fast_an_exception_is_retried(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import deliveries, flaky

        def test_retried(cloudtasks_queue):
            flaky.delay()
            assert [a.status_code for a in cloudtasks_queue.run_until_empty()] == [500, 500, 200]
    """)
    result.assert_outcomes(passed=1)


def test_payload_the_endpoint_rejects_fails_loudly_with_fastapis_detail(run_user_tests) -> None:
    result = run_user_tests("""
        from google.cloud import tasks_v2
        from app_mod import QUEUE

        def test_bad_payload(cloudtasks_queue):
            cloudtasks_queue.client.create_task(parent=QUEUE, task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url="https://worker.example.com/tasks/send",
                    headers={"Content-Type": "application/json"},
                    body=b'{"to": "ada@example.com"}',
                )))
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskFailed: send_email(<undecodable>) was rejected by the endpoint with 422: the "
        "payload does not match its schema. The service would retry it until its retries run out.",
        'E  *{"detail":*"type":"missing","loc":*"body","subject"*"msg":"Field required"*',
    ])


def test_tasks_enqueued_by_tasks_are_delivered_too(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import count_down, deliveries

        def test_chain(cloudtasks_queue):
            count_down.delay(n=3)
            attempts = cloudtasks_queue.run_until_empty()
            assert deliveries == [3, 2, 1, 0]
            assert [t.arguments for t in cloudtasks_queue.created] == [
                {"n": 3}, {"n": 2}, {"n": 1}, {"n": 0}]
            assert [a.task.arguments["n"] for a in attempts] == [3, 2, 1, 0]
            assert len(cloudtasks_queue) == 0
    """)
    result.assert_outcomes(passed=1)


def test_a_task_that_keeps_enqueueing_itself_is_stopped_at_max_deliveries(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import forever

        @pytest.mark.cloudtasks(max_deliveries=5)
        def test_loop(cloudtasks_queue):
            forever.delay(n=0)
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *RunawayError: stopped after 5 deliveries in a row without the clock moving (at "
        "*): forever(n=4) (5 of them) keeps enqueueing itself with no delay, or fails with no "
        "backoff? Raise the limit with @pytest.mark.cloudtasks(max_deliveries=...) if this is "
        "expected.",
    ])


# -- the virtual clock -------------------------------------------------------------------


def test_marker_start_as_iso_string_is_the_apps_now_and_moves_with_advance(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import time
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import Email, deliveries, send_email

        START = datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)

        @pytest.mark.cloudtasks(start="2026-03-08T06:30:00+00:00")
        def test_start(cloudtasks_queue):
            assert cloudtasks_queue.now == START
            assert datetime.now(timezone.utc) == START
            assert time.time() == START.timestamp()

            send_email.options(countdown=7200).delay(email=Email(to="a@b.co", subject="hi"))
            cloudtasks_queue.advance(hours=3)

            [delivery] = deliveries
            assert delivery["now"] == START + timedelta(hours=2)
            assert delivery["time"] == (START + timedelta(hours=2)).timestamp()
            assert datetime.now(timezone.utc) == START + timedelta(hours=3)
            assert time.time() == (START + timedelta(hours=3)).timestamp()
            assert cloudtasks_queue.now == START + timedelta(hours=3)
    """)
    result.assert_outcomes(passed=1)


def test_marker_start_as_datetime_with_offset(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timedelta, timezone
        import pytest

        IST = timezone(timedelta(hours=5, minutes=30))

        @pytest.mark.cloudtasks(start=datetime(2026, 3, 8, 12, 0, tzinfo=IST))
        def test_start(cloudtasks_queue):
            assert cloudtasks_queue.now == datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)
            assert datetime.now(timezone.utc) == datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)
            cloudtasks_queue.advance(minutes=1)
            assert datetime.now(timezone.utc) == datetime(2026, 3, 8, 6, 31, tzinfo=timezone.utc)
    """)
    result.assert_outcomes(passed=1)


def test_run_until_empty_leaves_the_clock_at_the_last_delivery(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import Email, send_email

        START = datetime(2026, 1, 1, tzinfo=timezone.utc)

        @pytest.mark.cloudtasks(start=START)
        def test_jump(cloudtasks_queue):
            send_email.options(countdown=3600).delay(email=Email(to="a@b.co", subject="hi"))
            cloudtasks_queue.run_until_empty()
            assert cloudtasks_queue.now == START + timedelta(hours=1)
            assert datetime.now(timezone.utc) == START + timedelta(hours=1)
    """)
    result.assert_outcomes(passed=1)


def test_the_clock_does_not_move_backwards(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        import pytest

        def test_backwards(cloudtasks_queue):
            cloudtasks_queue.advance(minutes=5)
            before = cloudtasks_queue.now
            with pytest.raises(ValueError, match="cannot move the clock backwards"):
                cloudtasks_queue.advance(seconds=-1)
            with pytest.raises(ValueError, match="cannot move the clock backwards"):
                cloudtasks_queue.advance(timedelta(minutes=1), minutes=-2)
            assert cloudtasks_queue.now == before
            cloudtasks_queue.advance(0)
            assert cloudtasks_queue.now == before
    """)
    result.assert_outcomes(passed=1)


def test_time_is_real_until_the_test_moves_it(run_user_tests) -> None:
    result = run_user_tests("""
        import time
        from datetime import datetime, timezone

        def test_real(cloudtasks_queue):
            first = cloudtasks_queue.now
            time.sleep(0.01)
            assert cloudtasks_queue.now > first
            before = datetime.now(timezone.utc)
            assert before <= cloudtasks_queue.now <= datetime.now(timezone.utc)
    """)
    result.assert_outcomes(passed=1)


# -- the client and routing --------------------------------------------------------------


def test_paused_queue_holds_tasks_until_resumed(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import QUEUE, Email, deliveries, send_email

        def test_pause(cloudtasks_queue):
            send_email.delay(email=Email(to="a@b.co", subject="hi"))
            cloudtasks_queue.client.pause_queue(name=QUEUE)
            assert cloudtasks_queue.run_until_empty() == []
            assert len(cloudtasks_queue) == 1 and deliveries == []

            cloudtasks_queue.client.resume_queue(name=QUEUE)
            assert [a.status_code for a in cloudtasks_queue.run_until_empty()] == [200]
    """)
    result.assert_outcomes(passed=1)


def test_run_task_delivers_at_once_even_when_paused(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        from app_mod import QUEUE, Email, deliveries, send_email

        def test_run_task(cloudtasks_queue):
            send_email.options(countdown=3600).delay(email=Email(to="a@b.co", subject="hi"))
            send_email.options(countdown=3600).delay(email=Email(to="c@d.co", subject="hi"))
            cloudtasks_queue.client.pause_queue(name=QUEUE)
            second = cloudtasks_queue.tasks[1]
            start = cloudtasks_queue.now

            [attempt] = cloudtasks_queue.run_task(second.short_name)

            assert attempt.status_code == 200
            assert [d["to"] for d in deliveries] == ["c@d.co"]
            assert cloudtasks_queue.now - start < timedelta(seconds=1)
            assert [t.name for t in cloudtasks_queue.tasks] != [second.name]
            assert len(cloudtasks_queue) == 1
    """)
    result.assert_outcomes(passed=1)


def test_client_purge_get_list_and_delete(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from google.api_core import exceptions
        from google.cloud import tasks_v2
        from app_mod import QUEUE, Email, send_email

        def test_rpcs(cloudtasks_queue):
            client = cloudtasks_queue.client
            for to in ("a@b.co", "c@d.co", "e@f.co"):
                send_email.delay(email=Email(to=to, subject="hi"))
            first, second, third = cloudtasks_queue.tasks

            listed = client.list_tasks(request=tasks_v2.ListTasksRequest(
                parent=QUEUE, response_view=tasks_v2.Task.View.FULL))
            assert [t.name for t in listed] == [first.name, second.name, third.name]
            got = client.get_task(name=first.name)
            assert got.http_request.url == first.url and got.http_request.body == b""

            client.delete_task(name=first.name)
            assert [t.name for t in cloudtasks_queue.tasks] == [second.name, third.name]
            with pytest.raises(exceptions.NotFound, match="Requested entity was not found."):
                client.get_task(name=first.name)

            client.purge_queue(name=QUEUE)
            assert len(cloudtasks_queue) == 0
            assert cloudtasks_queue.run_until_empty() == []
    """)
    result.assert_outcomes(passed=1)


def test_queue_settings_from_the_marker_are_the_queues(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        import pytest
        from app_mod import QUEUE, Email, send_email

        @pytest.mark.cloudtasks(max_attempts=4, min_backoff=1, max_backoff=timedelta(seconds=30),
                                max_doublings=2, max_retry_duration=600,
                                max_dispatches_per_second=5, max_concurrent_dispatches=7)
        def test_settings(cloudtasks_queue):
            send_email.delay(email=Email(to="a@b.co", subject="hi"))
            queue = cloudtasks_queue.client.get_queue(name=QUEUE)
            retry, rates = queue.retry_config, queue.rate_limits
            assert (retry.max_attempts, retry.max_doublings) == (4, 2)
            assert (retry.min_backoff, retry.max_backoff, retry.max_retry_duration) == (
                timedelta(seconds=1), timedelta(seconds=30), timedelta(minutes=10))
            assert (rates.max_dispatches_per_second, rates.max_concurrent_dispatches) == (5, 7)
    """)
    result.assert_outcomes(passed=1)


def test_rate_limit_from_the_marker_spaces_deliveries(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import timedelta
        import pytest
        from app_mod import count_down, notify

        @pytest.mark.cloudtasks(max_dispatches_per_second=2)
        def test_rate(cloudtasks_queue):
            for user_id in range(5):
                notify.delay(user_id=user_id)
            attempts = cloudtasks_queue.run_until_empty()
            start = attempts[0].dispatch_time
            assert [a.dispatch_time - start for a in attempts] == [
                timedelta(0), timedelta(0), timedelta(seconds=0.5), timedelta(seconds=1),
                timedelta(seconds=1.5)]
    """)
    result.assert_outcomes(passed=1)


BILLING = '''
from fastapi import APIRouter, FastAPI

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://billing.example.com/api",
    queue_path=queue_path("my-project", "europe-west1", "billing")))
charged = []


@router.post("/charge")
def charge(cents: int):
    charged.append(cents)


app = FastAPI()
app.include_router(router, prefix="/api")
'''


def test_route_sends_a_base_url_to_another_app(run_user_tests) -> None:
    result = run_user_tests(billing=BILLING, source="""
        import billing
        from app_mod import Email, deliveries, send_email

        def test_routed(cloudtasks_queue):
            cloudtasks_queue.route("https://billing.example.com/api", billing.app)
            billing.charge.delay(cents=250)
            send_email.delay(email=Email(to="a@b.co", subject="hi"))
            attempts = cloudtasks_queue.run_until_empty()
            assert [a.status_code for a in attempts] == [200, 200]
            assert billing.charged == [250]
            assert len(deliveries) == 1
            assert attempts[0].task.endpoint is billing.charge
    """)
    result.assert_outcomes(passed=1)


def test_unrouted_url_goes_to_the_default_app(run_user_tests) -> None:
    result = run_user_tests(billing=BILLING, source="""
        import pytest
        import billing
        from pytest_cloudtasks import TaskRoutingError

        def test_not_routed(cloudtasks_queue):
            billing.charge.delay(cents=250)
            with pytest.raises(TaskRoutingError, match="/api/charge.*matches no route"):
                cloudtasks_queue.run_until_empty()
            assert cloudtasks_queue.attempts[0].status_code == 404
            assert billing.charged == []
    """)
    result.assert_outcomes(passed=1)


MISCONFIGURED = '''
from fastapi import APIRouter, FastAPI

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path, task_default_options

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://billing.example.com",
    queue_path=queue_path("my-project", "europe-west1", "billing")))


@router.post("/refund")
@task_default_options(countdown=-5)
def refund(cents: int):
    pass
'''


def test_an_endpoint_with_invalid_default_options_does_not_break_capture(
    run_user_tests,
) -> None:
    result = run_user_tests(misconfigured=MISCONFIGURED, source="""
        import pytest
        import misconfigured
        from google.cloud import tasks_v2
        from fastapi_cloud_tasks import InvalidTaskOptionError
        from app_mod import QUEUE, count_down

        def test_others_still_run(cloudtasks_queue):
            with pytest.raises(InvalidTaskOptionError, match="countdown=-5 is negative"):
                misconfigured.refund.delay(cents=1)
            count_down.delay(n=0)
            # A URL no endpoint serves: the lookup goes through every endpoint there is.
            cloudtasks_queue.client.create_task(parent=QUEUE, task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(url="https://worker.example.com/gone")))

            known, unknown = cloudtasks_queue.tasks
            assert known.endpoint is count_down
            assert unknown.endpoint is None
            assert unknown.describe() == "POST https://worker.example.com/gone"
    """)
    result.assert_outcomes(passed=1)


# -- async tests and the app's own TestClient ----------------------------------------------


def test_async_test_with_adelay_and_arun_until_empty(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import deliveries, notify

        @pytest.mark.asyncio
        async def test_async(cloudtasks_queue):
            await notify.adelay(user_id=107)
            assert len(cloudtasks_queue) == 1
            attempts = await cloudtasks_queue.arun_until_empty()
            assert [a.status_code for a in attempts] == [200, 200]
            assert deliveries == [107, 7]
    """)
    result.assert_outcomes(passed=1)


def test_async_test_aadvance_respects_countdown(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import deliveries, notify

        @pytest.mark.asyncio
        async def test_async(cloudtasks_queue):
            await notify.options(countdown=30).adelay(user_id=1)
            assert await cloudtasks_queue.aadvance(seconds=29) == []
            assert len(await cloudtasks_queue.aadvance(seconds=1)) == 1
            assert deliveries == [1]
    """)
    result.assert_outcomes(passed=1)


def test_enqueue_from_a_request_served_by_the_users_test_client(run_user_tests) -> None:
    result = run_user_tests("""
        from fastapi.testclient import TestClient
        from app_mod import Email, app, deliveries, send_email

        def test_signup(cloudtasks_queue):
            with TestClient(app) as client:
                assert client.post("/signup", params={"email": "ada@example.com"}).json() == {
                    "ok": True}

            cloudtasks_queue.assert_enqueued(
                send_email, email=Email(to="ada@example.com", subject="welcome"))
            assert cloudtasks_queue.advance(seconds=59) == []
            cloudtasks_queue.advance(seconds=1)
            assert [d["to"] for d in deliveries] == ["ada@example.com"]
    """)
    result.assert_outcomes(passed=1)


# -- assertions --------------------------------------------------------------------------


def test_assert_enqueued_matches_a_subset_of_the_arguments(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import Email, count_down, send_email

        def test_found(cloudtasks_queue):
            send_email.delay(email=Email(to="a@b.co", subject="hi"), priority=3)
            count_down.delay(n=0)
            cloudtasks_queue.run_until_empty()

            task = cloudtasks_queue.assert_enqueued(send_email, priority=3)
            assert task.arguments["email"].to == "a@b.co"
            cloudtasks_queue.assert_enqueued(send_email)
            cloudtasks_queue.assert_enqueued(count_down, n=0)
    """)
    result.assert_outcomes(passed=1)


def test_assert_enqueued_failure_lists_what_was_enqueued(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import Email, count_down, send_email

        @pytest.mark.cloudtasks(start="2026-05-01T09:00:00+00:00")
        def test_missing(cloudtasks_queue):
            send_email.delay(email=Email(to="a@b.co", subject="hi"), priority=3)
            count_down.options(countdown=5).delay(n=2)
            cloudtasks_queue.assert_enqueued(send_email, priority=4)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionError: send_email(priority=4) was not enqueued. Enqueued in this test:",
        "E  *send_email(*priority=3*) at 2026-05-01T09:00:00+00:00",
        "E  *count_down(n=2) at 2026-05-01T09:00:05+00:00",
    ])


def test_assert_enqueued_failure_with_nothing_enqueued(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import count_down

        def test_nothing(cloudtasks_queue):
            cloudtasks_queue.assert_enqueued(count_down, n=1)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *AssertionError: count_down(n=1) was not enqueued. Enqueued in this test:",
        "E  *(nothing)",
    ])
