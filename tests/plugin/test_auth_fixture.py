"""Authenticated workers under the pytest plugin, used the way an application's test suite uses
it: the app protects its task routes with `verify_cloud_tasks_token`, its builders send OIDC
tokens with `oidc_delayed_hook` / `oidc_scheduled_hook`, and the harness mints a token for every
attempt with a key the verifier trusts for the test (and only for it)."""

from __future__ import annotations

import pytest

APP = '''
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks import (
    DelayedRouteBuilder,
    ScheduledRouteBuilder,
    location_path,
    oidc_delayed_hook,
    oidc_scheduled_hook,
    queue_path,
    task_url_audience,
    verify_cloud_tasks_token,
)

BASE_URL = "https://worker.example.com"
SA = "tasks-invoker@my-project.iam.gserviceaccount.com"
AUDIENCE = "https://worker.example.com/"
QUEUE = queue_path("my-project", "europe-west1", "emails")
LOCATION = location_path("my-project", "europe-west1")

# The explicit audience every token of `tasks` and `jobs` carries.
verified = verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA])
Claims = Annotated[dict[str, Any], Depends(verified)]
# No audience in the OidcToken: Google uses the full task URL, query string included.
by_url = verify_cloud_tasks_token(audience=task_url_audience(BASE_URL), service_accounts=[SA])
UrlClaims = Annotated[dict[str, Any], Depends(by_url)]
# The trap: expecting the URL without its query when the token's audience is the default.
path_only = verify_cloud_tasks_token(audience=BASE_URL + "/strict/send", service_accounts=[SA])

tasks = APIRouter(prefix="/tasks", route_class=DelayedRouteBuilder(
    base_url=BASE_URL, queue_path=QUEUE,
    pre_create_hook=oidc_delayed_hook(
        tasks_v2.OidcToken(service_account_email=SA, audience=AUDIENCE)),
))
url_tasks = APIRouter(prefix="/by-url", route_class=DelayedRouteBuilder(
    base_url=BASE_URL, queue_path=QUEUE,
    pre_create_hook=oidc_delayed_hook(tasks_v2.OidcToken(service_account_email=SA)),
))
strict = APIRouter(prefix="/strict", dependencies=[Depends(path_only)],
                   route_class=DelayedRouteBuilder(
    base_url=BASE_URL, queue_path=QUEUE,
    pre_create_hook=oidc_delayed_hook(tasks_v2.OidcToken(service_account_email=SA)),
))
guarded = APIRouter(prefix="/guarded", dependencies=[Depends(by_url)],
                    route_class=DelayedRouteBuilder(
    base_url=BASE_URL, queue_path=QUEUE,
    pre_create_hook=oidc_delayed_hook(tasks_v2.OidcToken(service_account_email=SA)),
))
jobs = APIRouter(prefix="/jobs", route_class=ScheduledRouteBuilder(
    base_url=BASE_URL, location_path=LOCATION,
    pre_create_hook=oidc_scheduled_hook(
        scheduler_v1.OidcToken(service_account_email=SA, audience=AUDIENCE)),
))
url_jobs = APIRouter(prefix="/url-jobs", route_class=ScheduledRouteBuilder(
    base_url=BASE_URL, location_path=LOCATION,
    pre_create_hook=oidc_scheduled_hook(scheduler_v1.OidcToken(service_account_email=SA)),
))
seen = []


@tasks.post("/send")
def send(to: str, claims: Claims):
    seen.append(("send", to, claims))
    return {"email": claims["email"]}


@url_tasks.post("/send")
async def send_by_url(to: str, n: int, claims: UrlClaims):
    seen.append(("send_by_url", to, claims))


@strict.post("/send")
def strict_send(to: str):
    seen.append(("strict_send", to))


@guarded.post("/count")
def count(n: int):
    seen.append(("count", n))


@jobs.post("/report")
def report(day: str, claims: Claims):
    seen.append(("report", day, claims))


@url_jobs.post("/report")
def url_report(day: str, claims: UrlClaims):
    seen.append(("url_report", day, claims))


app = FastAPI()
for router in (tasks, url_tasks, strict, guarded, jobs, url_jobs):
    app.include_router(router)
'''

INI = """
[pytest]
cloudtasks_app = app_mod:app
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester):
    """Write the app and `source` as the user's test module, run pytest on them."""

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makeini(INI)
        pytester.makepyfile(app_mod=APP, test_user=source)
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run


def test_delayed_task_with_a_token_reaches_the_protected_endpoint(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import AUDIENCE, SA, seen, send

        def test_delivered(cloudtasks_queue):
            seen.clear()
            send.delay(to="ada@example.com")
            [task] = cloudtasks_queue.tasks
            assert "Authorization" not in task.headers  # minted at dispatch, not at create

            [attempt] = cloudtasks_queue.run_until_empty()

            assert attempt.status_code == 200, attempt.response.text
            assert attempt.response.json() == {"email": SA}
            assert attempt.request_headers["authorization"].startswith("Bearer ey")
            [(name, to, claims)] = seen
            assert (name, to) == ("send", "ada@example.com")
            assert claims["email"] == SA
            assert claims["aud"] == AUDIENCE
            assert claims["iss"] == "https://accounts.google.com"
            assert claims["email_verified"] is True
            assert claims["iat"] == int(attempt.dispatch_time.timestamp())
    """)
    result.assert_outcomes(passed=1)


def test_each_attempt_gets_a_token_minted_at_its_dispatch_time(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import seen, send

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00Z")
        def test_later(cloudtasks_queue):
            seen.clear()
            send.options(countdown=3 * 3600).delay(to="ada@example.com")

            [attempt] = cloudtasks_queue.advance(hours=3)

            assert attempt.status_code == 200, attempt.response.text
            [(_, _, claims)] = seen
            assert claims["iat"] == int(cloudtasks_queue.now.timestamp())
    """)
    result.assert_outcomes(passed=1)


def test_async_delay_to_an_async_endpoint(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import SA, seen, send_by_url

        @pytest.mark.asyncio
        async def test_async(cloudtasks_queue):
            seen.clear()
            await send_by_url.adelay(to="ada@example.com", n=1)

            [attempt] = await cloudtasks_queue.arun_until_empty()

            assert attempt.status_code == 200, attempt.response.text
            assert seen[0][2]["email"] == SA
    """)
    result.assert_outcomes(passed=1)


def test_scheduled_job_through_a_protected_endpoint(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import AUDIENCE, SA, report, seen

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00Z")
        def test_job(cloudtasks_scheduler):
            seen.clear()
            report.scheduler(name="nightly-report", schedule="0 3 * * *").schedule(day="mon")

            [forced] = cloudtasks_scheduler.run_job("nightly-report")
            [scheduled] = cloudtasks_scheduler.advance(days=1)

            for attempt in (forced, scheduled):
                assert attempt.status_code == 200, attempt.response.text
                assert attempt.request_headers["x-cloudscheduler"] == "true"
            assert [(name, day) for name, day, _ in seen] == [("report", "mon")] * 2
            assert {claims["email"] for _, _, claims in seen} == {SA}
            assert {claims["aud"] for _, _, claims in seen} == {AUDIENCE}
    """)
    result.assert_outcomes(passed=1)


def test_scheduled_job_default_audience_is_its_url(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import seen, url_report

        def test_job(cloudtasks_scheduler):
            seen.clear()
            url_report.scheduler(name="weekly", schedule="0 3 * * 1").schedule(day="mon")
            job = cloudtasks_scheduler.jobs["weekly"]

            [attempt] = cloudtasks_scheduler.run_job("weekly")

            assert attempt.status_code == 200, attempt.response.text
            [(_, _, claims)] = seen
            assert claims["aud"] == job.url
            assert "?day=mon" in claims["aud"]
    """)
    result.assert_outcomes(passed=1)


def test_task_without_a_token_gets_401_and_is_retried(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from pytest_cloudtasks import TaskFailed
        from app_mod import seen, send

        @pytest.mark.cloudtasks(max_attempts=2)
        def test_unsigned(cloudtasks_queue):
            seen.clear()
            send.options(pre_create_hook=None).delay(to="ada@example.com")

            with pytest.raises(TaskFailed, match="401") as failed:
                cloudtasks_queue.run_until_empty()

            attempts = cloudtasks_queue.attempts
            assert [a.status_code for a in attempts] == [401, 401]
            assert [a.retry_count for a in attempts] == [0, 1]
            assert failed.value.attempt is attempts[-1]
            assert "authorization" not in attempts[0].request_headers
            assert attempts[0].response.headers["www-authenticate"] == "Bearer"
            assert attempts[0].exception is None
            assert seen == []
    """)
    result.assert_outcomes(passed=1)


def test_task_without_a_token_stays_queued_for_its_retry(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import seen, send

        @pytest.mark.cloudtasks(start="2026-03-01T00:00:00Z")
        def test_unsigned(cloudtasks_queue):
            seen.clear()
            send.options(pre_create_hook=None).delay(to="ada@example.com")

            [attempt] = cloudtasks_queue.advance(seconds=0)

            assert attempt.status_code == 401
            assert attempt.outcome.value == "retrying"
            assert len(cloudtasks_queue) == 1
            assert seen == []
    """)
    result.assert_outcomes(passed=1)


def test_token_expires_on_the_virtual_clock(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from fastapi.testclient import TestClient
        from app_mod import AUDIENCE, SA, app, seen

        # A start far from the real date: a verifier on the real clock would reject the token.
        @pytest.mark.cloudtasks(start="2021-03-01T00:00:00Z")
        def test_expired(cloudtasks_harness, cloudtasks_queue):
            seen.clear()
            token = cloudtasks_harness.tokens.id_token(
                email=SA, audience=AUDIENCE, now=cloudtasks_queue.now)
            headers = {"Authorization": f"Bearer {token}"}

            with TestClient(app) as client:
                assert client.post("/tasks/send?to=a", headers=headers).status_code == 200
                cloudtasks_queue.advance(minutes=59)
                assert client.post("/tasks/send?to=b", headers=headers).status_code == 200
                cloudtasks_queue.advance(hours=2)
                response = client.post("/tasks/send?to=c", headers=headers)

            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "expired" in response.json()["detail"]
            assert [to for _, to, _ in seen] == ["a", "b"]
    """)
    result.assert_outcomes(passed=1)


def test_default_audience_is_the_full_url_with_its_query(run_user_tests) -> None:
    result = run_user_tests("""
        from google.auth import jwt
        from app_mod import BASE_URL, seen, send_by_url

        def test_default_audience(cloudtasks_queue):
            seen.clear()
            send_by_url.delay(to="ada lovelace@example.com", n=2)
            [task] = cloudtasks_queue.tasks
            assert task.url.startswith(BASE_URL + "/by-url/send?")

            [attempt] = cloudtasks_queue.run_until_empty()

            assert attempt.status_code == 200, attempt.response.text
            token = attempt.request_headers["authorization"].removeprefix("Bearer ")
            assert jwt.decode(token, verify=False)["aud"] == task.url
            [(_, to, claims)] = seen
            assert to == "ada lovelace@example.com"
            assert claims["aud"] == task.url
    """)
    result.assert_outcomes(passed=1)


def test_expecting_the_url_without_its_query_is_the_audience_trap(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from pytest_cloudtasks import TaskFailed
        from app_mod import seen, strict_send

        @pytest.mark.cloudtasks(max_attempts=1)
        def test_trap(cloudtasks_queue):
            seen.clear()
            strict_send.delay(to="ada@example.com")

            with pytest.raises(TaskFailed, match="403"):
                cloudtasks_queue.run_until_empty()
            assert seen == []
    """)
    result.assert_outcomes(passed=1)


def test_router_level_protection_keeps_delay_arguments(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from fastapi_cloud_tasks import TaskArgumentsError
        from app_mod import count, seen

        def test_guarded(cloudtasks_queue):
            seen.clear()
            with pytest.raises(TaskArgumentsError):
                count.delay(n=1, request=None)
            count.delay(n=1)

            [attempt] = cloudtasks_queue.run_until_empty()

            assert attempt.status_code == 200, attempt.response.text
            assert seen == [("count", 1)]
    """)
    result.assert_outcomes(passed=1)


def test_the_harness_key_is_trusted_only_during_the_test(run_user_tests) -> None:
    result = run_user_tests("""
        from fastapi.testclient import TestClient
        from app_mod import AUDIENCE, SA, app, seen

        minted = []

        def test_mint(cloudtasks_harness, cloudtasks_queue):
            minted.append(cloudtasks_harness.tokens.id_token(
                email=SA, audience=AUDIENCE, now=cloudtasks_queue.now))

        def test_later_without_the_harness(monkeypatch):
            # Outside the harness the verifier fetches Google's certificates: record that
            # fetch and fail it instead of reaching the network.
            import fastapi_cloud_tasks.auth as auth

            fetched = []

            async def offline(self):
                fetched.append(self.url)
                raise OSError("offline")

            monkeypatch.setattr(auth.CertificateCache, "aget", offline)
            seen.clear()
            with TestClient(app) as client:
                response = client.post("/tasks/send?to=a",
                                       headers={"Authorization": f"Bearer {minted[0]}"})
            assert fetched == [auth.GOOGLE_CERTS_URL], "the harness key is still trusted"
            assert response.status_code == 503
            assert seen == []

        def test_another_test_has_another_key(cloudtasks_harness, cloudtasks_queue):
            seen.clear()
            with TestClient(app) as client:
                response = client.post("/tasks/send?to=a",
                                       headers={"Authorization": f"Bearer {minted[0]}"})
            assert response.status_code == 401
            assert seen == []
    """)
    result.assert_outcomes(passed=3)


def test_certificates_build_on_the_frozen_and_the_real_clock_alike(run_user_tests) -> None:
    # cryptography remembers the `datetime` class of its first certificate: one built under
    # freezegun (after the clock moved) must not break one built on real time, or vice versa.
    result = run_user_tests("""
        from fastapi.testclient import TestClient
        from app_mod import AUDIENCE, SA, app, send

        def test_frozen_first(cloudtasks_queue):
            send.options(countdown=60).delay(to="ada@example.com")
            [attempt] = cloudtasks_queue.advance(minutes=1)
            assert attempt.status_code == 200, attempt.response.text

        def test_real_clock_next(cloudtasks_harness, cloudtasks_queue):
            token = cloudtasks_harness.tokens.id_token(
                email=SA, audience=AUDIENCE, now=cloudtasks_queue.now)
            with TestClient(app) as client:
                response = client.post("/tasks/send?to=a",
                                       headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text

        def test_frozen_again(cloudtasks_queue):
            test_frozen_first(cloudtasks_queue)
    """)
    result.assert_outcomes(passed=3)
