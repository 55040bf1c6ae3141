"""The `cloudtasks_scheduler` fixture, used the way an application's test suite uses it.

Each test writes a small FastAPI app with scheduled (and delayed) endpoints and a user's test
module with pytester, runs pytest on them, and checks the outcome.
"""

from __future__ import annotations

import itertools

import pytest

APP = '''
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, FastAPI, Request
from google.cloud import scheduler_v1
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    CloudSchedulerHeaders,
    DelayedRouteBuilder,
    ScheduledRouteBuilder,
    location_path,
    oidc_scheduled_hook,
    queue_path,
)

BASE_URL = "https://worker-{n}.example.com"
LOCATION = location_path("my-project", "asia-south1")
SERVICE_ACCOUNT = "scheduler@my-project.iam.gserviceaccount.com"
scheduled = APIRouter(
    prefix="/scheduled",
    route_class=ScheduledRouteBuilder(base_url=BASE_URL, location_path=LOCATION),
)
secured = APIRouter(
    prefix="/secured",
    route_class=ScheduledRouteBuilder(
        base_url=BASE_URL,
        location_path=LOCATION,
        pre_create_hook=oidc_scheduled_hook(
            scheduler_v1.OidcToken(service_account_email=SERVICE_ACCOUNT)),
    ),
)
tasks = APIRouter(
    prefix="/tasks",
    route_class=DelayedRouteBuilder(
        base_url=BASE_URL, queue_path=queue_path("my-project", "asia-south1", "default")),
)
runs = []


class Recipe(BaseModel):
    ingredients: list[str]


@scheduled.post("/home_cook")
def home_cook(recipe: Recipe):
    runs.append(("cook", recipe.ingredients))


@scheduled.post("/report/{kind}")
def report(kind: str, days: int = 1, sched: CloudSchedulerHeaders = Depends()):
    runs.append({"kind": kind, "days": days, "job": sched.job_name,
                 "schedule_time": sched.schedule_time, "scheduled": sched.is_scheduled,
                 "now": datetime.now(timezone.utc)})


@scheduled.post("/cleanup")
def cleanup(batch: int):
    runs.append(("cleanup", datetime.now(timezone.utc)))
    purge.options(countdown=90 * 60).delay(batch=batch)


@tasks.post("/purge")
def purge(batch: int):
    runs.append(("purge", datetime.now(timezone.utc)))


@scheduled.post("/broken")
def broken(sched: CloudSchedulerHeaders = Depends()):
    runs.append(("broken", sched.schedule_time))
    raise RuntimeError("the report server is down")


@secured.post("/audit")
def audit(request: Request):
    runs.append(("audit", request.headers.get("authorization")))


app = FastAPI()
for router in (scheduled, secured, tasks):
    app.include_router(router)
'''

INI = """
[pytest]
cloudtasks_app = app_mod:app
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


# Each run's app has its own host: earlier runs' endpoints can outlive their module in this
# process (newer FastAPI keeps references), and a captured job or task is matched to its
# endpoint by URL.
_hosts = itertools.count()


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester):
    """Write the app and `source` as the user's test module, run pytest on them."""

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makeini(INI)
        pytester.makepyfile(app_mod=APP.replace("{n}", str(next(_hosts))), test_user=source)
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run


# -- what is captured --------------------------------------------------------------------


def test_schedule_is_captured_with_its_settings_and_typed_arguments(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import BASE_URL, LOCATION, Recipe, home_cook, runs

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_captured(cloudtasks_scheduler):
            created = home_cook.scheduler(
                name="cook", schedule="0 7 * * *", time_zone="Asia/Kolkata",
            ).schedule(recipe=Recipe(ingredients=["Milk", "Cereal"]))
            assert created.name == f"{LOCATION}/jobs/cook"

            assert list(cloudtasks_scheduler.jobs) == ["cook"]
            job = cloudtasks_scheduler.jobs["cook"]
            assert job.name == f"{LOCATION}/jobs/cook"
            assert (job.schedule, job.time_zone, job.state) == (
                "0 7 * * *", "Asia/Kolkata", "ENABLED")
            assert job.next_run == datetime(2026, 3, 1, 1, 30, tzinfo=timezone.utc)
            assert (job.method, job.url) == ("POST", f"{BASE_URL}/scheduled/home_cook")
            assert job.endpoint is home_cook
            assert job.arguments == {"recipe": Recipe(ingredients=["Milk", "Cereal"])}
            assert job.json() == {"ingredients": ["Milk", "Cereal"]}
            assert job.headers["Content-Type"] == "application/json"
            assert job.retry_config.retry_count == 0
            assert job.attempt_deadline == timedelta(seconds=180)
            assert "cook" in repr(job) and "ENABLED" in repr(job)

            assert runs == []  # scheduling runs nothing
            assert cloudtasks_scheduler.attempts == []
    """)
    result.assert_outcomes(passed=1)


def test_jobs_are_snapshots(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import report

        def test_snapshot(cloudtasks_scheduler):
            report.scheduler(name="daily-report", schedule="0 6 * * *").schedule(kind="sales")
            job = cloudtasks_scheduler.jobs["daily-report"]
            job.retry_config.retry_count = 5
            job.headers["X-Extra"] = "1"
            again = cloudtasks_scheduler.jobs["daily-report"]
            assert again.retry_config.retry_count == 0
            assert "X-Extra" not in again.headers
    """)
    result.assert_outcomes(passed=1)


# -- running -----------------------------------------------------------------------------


def test_advance_runs_each_occurrence_through_the_app(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import report, runs

        START = datetime(2026, 3, 1, tzinfo=timezone.utc)

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_three_days(cloudtasks_scheduler):
            report.scheduler(name="daily-report", schedule="0 6 * * *").schedule(
                kind="sales", days=7)
            attempts = cloudtasks_scheduler.advance(days=3)

            sixes = [START + timedelta(days=d, hours=6) for d in range(3)]
            assert [a.status_code for a in attempts] == [200, 200, 200]
            assert [a.schedule_time for a in attempts] == sixes
            assert [a.dispatch_time for a in attempts] == sixes
            assert [a.outcome.value for a in attempts] == ["succeeded"] * 3
            assert attempts[0].request_headers["user-agent"] == "Google-Cloud-Scheduler"
            assert attempts[0].request_headers["x-cloudscheduler"] == "true"
            assert attempts[0].request_headers["X-CloudScheduler-ScheduleTime"] == (
                "2026-03-01T06:00:00+00:00")
            assert attempts[0].task.arguments == {"kind": "sales", "days": 7}

            assert [r["kind"] for r in runs] == ["sales"] * 3
            assert {r["days"] for r in runs} == {7}
            assert {r["job"] for r in runs} == {"daily-report"}
            assert {r["scheduled"] for r in runs} == {True}
            assert [r["schedule_time"] for r in runs] == sixes  # parsed, timezone-aware
            assert [r["now"] for r in runs] == sixes  # the app runs at the occurrence

            assert cloudtasks_scheduler.now == START + timedelta(days=3)
            assert cloudtasks_scheduler.attempts == attempts
            assert cloudtasks_scheduler.jobs["daily-report"].next_run == sixes[-1] + timedelta(
                days=1)
    """)
    result.assert_outcomes(passed=1)


def test_breakfast_example_from_the_readme(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest

        from app_mod import Recipe, home_cook, runs


        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_breakfast_every_morning(cloudtasks_scheduler):
            home_cook.scheduler(
                name="test-home-cook-at-7AM-IST", schedule="0 7 * * *", time_zone="Asia/Kolkata"
            ).schedule(recipe=Recipe(ingredients=["Milk", "Cereal"]))

            runs_ = cloudtasks_scheduler.advance(days=7)
            assert [run.schedule_time.isoformat() for run in runs_][:2] == [
                "2026-03-01T01:30:00+00:00", "2026-03-02T01:30:00+00:00"]
            assert len(runs_) == 7
            assert runs_[0].request_headers["X-CloudScheduler-ScheduleTime"] == (
                "2026-03-01T07:00:00+05:30")
            assert runs == [("cook", ["Milk", "Cereal"])] * 7
    """)
    result.assert_outcomes(passed=1)


def test_a_job_run_and_the_task_it_enqueues_run_in_time_order(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timedelta, timezone
        import pytest
        from app_mod import cleanup, purge, runs

        START = datetime(2026, 3, 1, tzinfo=timezone.utc)

        def at(hours, minutes=0):
            return START + timedelta(hours=hours, minutes=minutes)

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_interleaved(cloudtasks_scheduler, cloudtasks_queue):
            cleanup.scheduler(name="hourly-cleanup", schedule="0 * * * *").schedule(batch=50)
            # Either fixture moves the one clock.
            attempts = cloudtasks_queue.advance(hours=4)
            assert runs == [
                ("cleanup", at(1)), ("cleanup", at(2)), ("purge", at(2, 30)),
                ("cleanup", at(3)), ("purge", at(3, 30)), ("cleanup", at(4)),
            ]
            assert [type(a.task).__name__ for a in attempts] == [
                "CapturedJob", "CapturedJob", "CapturedTask",
                "CapturedJob", "CapturedTask", "CapturedJob"]
            assert attempts[2].task.endpoint is purge
            assert attempts[2].task.arguments == {"batch": 50}
            assert cloudtasks_queue.attempts == attempts
            assert len(cloudtasks_scheduler.attempts) == 4
            assert cloudtasks_scheduler.now == cloudtasks_queue.now == at(4)
            assert [t.schedule_time for t in cloudtasks_queue.tasks] == [at(4, 30), at(5, 30)]

            more = cloudtasks_scheduler.advance(minutes=45)
            assert [a.dispatch_time for a in more] == [at(4, 30)]
    """)
    result.assert_outcomes(passed=1)


def test_aadvance_in_an_async_test(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import report, runs

        @pytest.mark.asyncio
        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        async def test_async(cloudtasks_scheduler):
            report.scheduler(name="half-hourly", schedule="*/30 * * * *").schedule(kind="ops")
            attempts = await cloudtasks_scheduler.aadvance(hours=2)
            assert len(attempts) == 4
            assert {r["job"] for r in runs} == {"half-hourly"}
    """)
    result.assert_outcomes(passed=1)


def test_run_job_forces_a_run_now(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timezone
        import pytest
        from app_mod import LOCATION, report, runs

        @pytest.mark.cloudtasks(start="2026-03-01T10:20:30+00:00")
        def test_run_now(cloudtasks_scheduler):
            report.scheduler(name="yearly", schedule="0 0 1 1 *").schedule(kind="annual")
            [attempt] = cloudtasks_scheduler.run_job("yearly")
            now = datetime(2026, 3, 1, 10, 20, 30, tzinfo=timezone.utc)
            assert attempt.status_code == 200
            assert attempt.schedule_time == attempt.dispatch_time == now
            assert runs[0]["schedule_time"] == now
            assert cloudtasks_scheduler.jobs["yearly"].next_run == datetime(
                2027, 1, 1, tzinfo=timezone.utc)

            [again] = cloudtasks_scheduler.run_job(f"{LOCATION}/jobs/yearly")
            assert again.status_code == 200
            assert len(runs) == 2

        def test_unknown_job(cloudtasks_scheduler):
            report.scheduler(name="yearly", schedule="0 0 1 1 *").schedule(kind="annual")
            with pytest.raises(LookupError, match="no job 'nope'; jobs: \\\\['yearly'\\\\]"):
                cloudtasks_scheduler.run_job("nope")
    """)
    result.assert_outcomes(passed=2)


def test_run_job_works_before_the_clock_was_ever_moved(run_user_tests) -> None:
    # Without `start=`, the clock follows real time until the test moves it.
    result = run_user_tests("""
        from app_mod import report, runs

        def test_run_now(cloudtasks_scheduler):
            report.scheduler(name="yearly", schedule="0 0 1 1 *").schedule(kind="annual")
            [attempt] = cloudtasks_scheduler.run_job("yearly")
            assert attempt.status_code == 200
            assert runs[0]["schedule_time"] == attempt.schedule_time
    """)
    result.assert_outcomes(passed=1)


# -- states and updates ------------------------------------------------------------------


def test_a_paused_job_does_not_fire_until_resumed(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import LOCATION, report, runs

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_paused(cloudtasks_scheduler):
            report.scheduler(name="daily-report", schedule="0 6 * * *").schedule(kind="sales")
            cloudtasks_scheduler.client.pause_job(name=f"{LOCATION}/jobs/daily-report")
            job = cloudtasks_scheduler.jobs["daily-report"]
            assert (job.state, job.next_run) == ("PAUSED", None)

            assert cloudtasks_scheduler.advance(days=2) == []
            assert runs == []

            [forced] = cloudtasks_scheduler.run_job("daily-report")  # RunJob ignores the pause
            assert forced.status_code == 200
            assert cloudtasks_scheduler.jobs["daily-report"].state == "PAUSED"

            cloudtasks_scheduler.client.resume_job(name=f"{LOCATION}/jobs/daily-report")
            assert len(cloudtasks_scheduler.advance(days=1)) == 1
            assert len(runs) == 2
    """)
    result.assert_outcomes(passed=1)


def test_schedule_again_with_the_same_settings_changes_nothing(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import LOCATION, report

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_idempotent(cloudtasks_scheduler):
            job = report.scheduler(name="daily-report", schedule="0 6 * * *")
            job.schedule(kind="sales", days=7)
            client = cloudtasks_scheduler.client
            name = f"{LOCATION}/jobs/daily-report"
            client.pause_job(name=name)
            before = client.get_job(name=name)
            cloudtasks_scheduler.advance(hours=1)

            job.schedule(kind="sales", days=7)  # e.g. the app starting up again

            after = client.get_job(name=name)
            assert list(cloudtasks_scheduler.jobs) == ["daily-report"]
            assert after.state == after.State.PAUSED
            assert after.user_update_time == before.user_update_time
    """)
    result.assert_outcomes(passed=1)


def test_schedule_again_with_new_settings_updates_and_keeps_the_state(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timezone
        import pytest
        from app_mod import LOCATION, report

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_update(cloudtasks_scheduler):
            report.scheduler(name="daily-report", schedule="0 6 * * *").schedule(kind="sales")
            report.scheduler(name="daily-report", schedule="0 6 * * *").schedule(kind="refunds")
            job = cloudtasks_scheduler.jobs["daily-report"]
            assert job.arguments == {"kind": "refunds", "days": 1}
            assert job.url.endswith("/scheduled/report/refunds")

            cloudtasks_scheduler.client.pause_job(name=f"{LOCATION}/jobs/daily-report")
            report.scheduler(
                name="daily-report", schedule="30 8 * * *", time_zone="Asia/Kolkata",
                retry_config={"retry_count": 3},
            ).schedule(kind="refunds")
            [job] = cloudtasks_scheduler.jobs.values()
            assert (job.schedule, job.time_zone, job.state) == (
                "30 8 * * *", "Asia/Kolkata", "PAUSED")
            assert job.retry_config.retry_count == 3
            assert cloudtasks_scheduler.advance(days=1) == []

            cloudtasks_scheduler.client.resume_job(name=job.name)
            [attempt] = cloudtasks_scheduler.advance(days=1)
            assert attempt.schedule_time == datetime(2026, 3, 2, 3, tzinfo=timezone.utc)
    """)
    result.assert_outcomes(passed=1)


def test_delete_removes_the_job(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import report

        def test_delete(cloudtasks_scheduler):
            job = report.scheduler(name="daily-report", schedule="0 6 * * *")
            job.schedule(kind="sales")
            assert job.delete() is True
            assert cloudtasks_scheduler.jobs == {}
            assert job.delete() is False
            assert cloudtasks_scheduler.advance(days=2) == []
    """)
    result.assert_outcomes(passed=1)


# -- tokens and failures -----------------------------------------------------------------


def test_an_oidc_job_delivers_a_bearer_id_token(run_user_tests) -> None:
    result = run_user_tests("""
        import base64
        import json
        import pytest
        from app_mod import BASE_URL, SERVICE_ACCOUNT, audit, runs

        def claims(token):
            part = token.split(".")[1]
            return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_token(cloudtasks_scheduler):
            audit.scheduler(name="audit", schedule="*/30 * * * *").schedule()
            job = cloudtasks_scheduler.jobs["audit"]
            assert job.job.http_target.oidc_token.service_account_email == SERVICE_ACCOUNT

            [attempt] = cloudtasks_scheduler.advance(minutes=30)
            assert attempt.status_code == 200
            [(_, authorization)] = runs
            scheme, _, token = authorization.partition(" ")
            assert scheme == "Bearer"
            got = claims(token)
            assert got["email"] == SERVICE_ACCOUNT
            assert got["aud"] == f"{BASE_URL}/secured/audit"
            assert got["iss"] == "https://accounts.google.com"
    """)
    result.assert_outcomes(passed=1)


def test_a_failing_job_is_retried_then_reported_and_its_schedule_goes_on(run_user_tests) -> None:
    result = run_user_tests("""
        from datetime import datetime, timedelta, timezone
        import pytest
        from pytest_cloudtasks import TaskFailed
        from app_mod import broken, runs

        SIX = datetime(2026, 3, 1, 6, tzinfo=timezone.utc)

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00+00:00")
        def test_broken(cloudtasks_scheduler):
            broken.scheduler(
                name="broken-report", schedule="0 6 * * *",
                retry_config={"retry_count": 2, "min_backoff_duration": timedelta(seconds=10)},
            ).schedule()

            with pytest.raises(TaskFailed, match="broken-report") as failed:
                cloudtasks_scheduler.advance(days=2)
            assert "the report server is down" in str(failed.value)
            first = cloudtasks_scheduler.attempts
            assert [a.dispatch_time - SIX for a in first] == [
                timedelta(0), timedelta(seconds=10), timedelta(seconds=30)]
            assert [a.status_code for a in first] == [500, 500, 500]
            assert [a.outcome.value for a in first] == ["retrying", "retrying", "failed"]
            assert {a.request_headers["X-CloudScheduler-ScheduleTime"] for a in first} == {
                "2026-03-01T06:00:00+00:00"}
            assert isinstance(first[0].exception, RuntimeError)
            assert failed.value.attempt == first[-1]
            assert runs == [("broken", SIX)] * 3

            job = cloudtasks_scheduler.jobs["broken-report"]
            assert job.state == "ENABLED"
            assert job.next_run == SIX + timedelta(days=1)

            # The failure does not stop the schedule: the next day runs (and fails) again.
            with pytest.raises(TaskFailed):
                cloudtasks_scheduler.advance(days=1)
            second = cloudtasks_scheduler.attempts[3:]
            assert [a.schedule_time for a in second] == [SIX + timedelta(days=1)] * 3
    """)
    result.assert_outcomes(passed=1)
