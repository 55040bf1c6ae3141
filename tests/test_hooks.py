"""`pre_create_hook`s on real request protos, and through the route builders."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi import APIRouter
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import duration_pb2
from pydantic import BaseModel

import fastapi_cloud_tasks
from fastapi_cloud_tasks import (
    InvalidTaskOptionError,
    ScheduledRouteBuilder,
    chained_hook,
    deadline_delayed_hook,
    deadline_scheduled_hook,
    noop_hook,
    oauth_delayed_hook,
    oauth_scheduled_hook,
    oidc_delayed_hook,
    oidc_scheduled_hook,
    oidc_task_hook,
)
from tests.conftest import BASE_URL, LOCATION, QUEUE

EMAIL = "tasks@test-project.iam.gserviceaccount.com"
AUDIENCE = "https://worker.example.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def task_request() -> tasks_v2.CreateTaskRequest:
    return tasks_v2.CreateTaskRequest(
        parent=QUEUE,
        task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(
            url=f"{BASE_URL}/work", http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json"}, body=b"{}",
        )),
    )


def job_request() -> scheduler_v1.CreateJobRequest:
    return scheduler_v1.CreateJobRequest(
        parent=LOCATION,
        job=scheduler_v1.Job(
            name=f"{LOCATION}/jobs/tick",
            schedule="0 7 * * *",
            http_target=scheduler_v1.HttpTarget(
                uri=f"{BASE_URL}/tick", http_method=scheduler_v1.HttpMethod.POST,
            ),
            attempt_deadline=timedelta(seconds=180),
        ),
    )


class TestNoop:
    def test_noop_hook_returns_the_same_request_unchanged(self):
        request = task_request()
        before = tasks_v2.CreateTaskRequest(request)
        assert noop_hook(request) is request
        assert request == before

    def test_noop_hook_works_on_job_requests(self):
        request = job_request()
        assert noop_hook(request) == job_request()


class TestTokenHooks:
    def test_oidc_delayed_hook_sets_the_tasks_oidc_token(self):
        token = tasks_v2.OidcToken(service_account_email=EMAIL, audience=AUDIENCE)
        request = oidc_delayed_hook(token)(task_request())
        assert request.task.http_request.oidc_token == token
        assert request.task.http_request.url == f"{BASE_URL}/work"

    def test_oidc_task_hook_is_the_old_name_of_oidc_delayed_hook(self):
        assert oidc_task_hook is oidc_delayed_hook
        token = tasks_v2.OidcToken(service_account_email=EMAIL)
        request = oidc_task_hook(token=token)(task_request())
        assert request.task.http_request.oidc_token.service_account_email == EMAIL

    def test_oidc_scheduled_hook_sets_the_jobs_oidc_token(self):
        token = scheduler_v1.OidcToken(service_account_email=EMAIL, audience=AUDIENCE)
        request = oidc_scheduled_hook(token)(job_request())
        assert request.job.http_target.oidc_token == token
        assert request.job.http_target.uri == f"{BASE_URL}/tick"

    def test_oauth_delayed_hook_sets_the_tasks_oauth_token(self):
        token = tasks_v2.OAuthToken(service_account_email=EMAIL, scope=SCOPE)
        request = oauth_delayed_hook(token)(task_request())
        assert request.task.http_request.oauth_token == token
        assert "oidc_token" not in request.task.http_request

    def test_oauth_scheduled_hook_sets_the_jobs_oauth_token(self):
        token = scheduler_v1.OAuthToken(service_account_email=EMAIL, scope=SCOPE)
        request = oauth_scheduled_hook(token)(job_request())
        assert request.job.http_target.oauth_token == token
        assert "oidc_token" not in request.job.http_target

    def test_token_hook_leaves_headers_and_body_alone(self):
        token = tasks_v2.OidcToken(service_account_email=EMAIL)
        http = oidc_delayed_hook(token)(task_request()).task.http_request
        assert dict(http.headers) == {"Content-Type": "application/json"}
        assert http.body == b"{}"

    def test_one_hook_serves_many_requests_independently(self):
        hook = oidc_delayed_hook(tasks_v2.OidcToken(service_account_email=EMAIL))
        first, second = hook(task_request()), hook(task_request())
        first.task.http_request.oidc_token.audience = "changed"
        assert second.task.http_request.oidc_token.audience == ""


class TestChainedHook:
    def test_hooks_run_in_the_order_given(self):
        order: list[str] = []

        def named(name: str) -> Any:
            def hook(request: Any) -> Any:
                order.append(name)
                return request

            return hook

        chained_hook(named("a"), named("b"), named("c"))(task_request())
        assert order == ["a", "b", "c"]

    def test_each_hook_gets_the_previous_hooks_result(self):
        replacement = task_request()
        replacement.task.http_request.url = f"{BASE_URL}/replaced"
        seen: list[str] = []

        def replace(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
            return replacement

        def look(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
            seen.append(request.task.http_request.url)
            return request

        result = chained_hook(replace, look)(task_request())
        assert seen == [f"{BASE_URL}/replaced"]
        assert result is replacement

    @pytest.mark.parametrize(
        ("first", "second", "winner"),
        [("oidc", "oauth", "oauth_token"), ("oauth", "oidc", "oidc_token")],
    )
    def test_the_last_token_hook_wins(self, first, second, winner):
        # oidc_token and oauth_token are one oneof: setting one clears the other.
        hooks = {
            "oidc": oidc_delayed_hook(tasks_v2.OidcToken(service_account_email=EMAIL)),
            "oauth": oauth_delayed_hook(tasks_v2.OAuthToken(service_account_email=EMAIL)),
        }
        http = chained_hook(hooks[first], hooks[second])(task_request()).task.http_request
        assert [name for name in ("oidc_token", "oauth_token") if name in http] == [winner]
        assert getattr(http, winner).service_account_email == EMAIL

    def test_chained_token_and_deadline_hooks_both_apply(self):
        hook = chained_hook(
            oidc_scheduled_hook(scheduler_v1.OidcToken(service_account_email=EMAIL)),
            deadline_scheduled_hook(timedelta(minutes=5)),
        )
        job = hook(job_request()).job
        assert job.http_target.oidc_token.service_account_email == EMAIL
        assert job.attempt_deadline == timedelta(minutes=5)

    def test_later_deadline_hook_overrides_an_earlier_one(self):
        hook = chained_hook(deadline_delayed_hook(60), deadline_delayed_hook(120))
        assert hook(task_request()).task.dispatch_deadline == timedelta(seconds=120)

    def test_chained_hook_of_nothing_returns_the_request(self):
        request = task_request()
        assert chained_hook()(request) is request


class TestDeadlineHooks:
    @pytest.mark.parametrize(
        ("duration", "expected"),
        [
            (timedelta(minutes=2), timedelta(minutes=2)),
            (45, timedelta(seconds=45)),
            (15.5, timedelta(seconds=15.5)),
            (duration_pb2.Duration(seconds=90), timedelta(seconds=90)),
            (15, timedelta(seconds=15)),
            (1800, timedelta(minutes=30)),
        ],
    )
    def test_deadline_delayed_hook_sets_the_dispatch_deadline(self, duration, expected):
        request = deadline_delayed_hook(duration)(task_request())
        assert request.task.dispatch_deadline == expected

    @pytest.mark.parametrize(
        ("duration", "expected"),
        [
            (timedelta(minutes=2), timedelta(minutes=2)),
            (45, timedelta(seconds=45)),
            (duration_pb2.Duration(seconds=1800), timedelta(minutes=30)),
        ],
    )
    def test_deadline_scheduled_hook_sets_the_attempt_deadline(self, duration, expected):
        request = deadline_scheduled_hook(duration)(job_request())
        assert request.job.attempt_deadline == expected

    @pytest.mark.parametrize("hook", [deadline_delayed_hook, deadline_scheduled_hook])
    @pytest.mark.parametrize(
        "duration",
        [14, 14.999, 0, -30, 1801, timedelta(minutes=30, microseconds=1),
         duration_pb2.Duration(seconds=14), duration_pb2.Duration(seconds=3600)],
    )
    def test_deadline_outside_15s_to_30min_is_rejected_when_the_hook_is_made(self, hook,
                                                                            duration):
        with pytest.raises(InvalidTaskOptionError, match=r"15 s to 1800 s"):
            hook(duration)

    @pytest.mark.parametrize("hook", [deadline_delayed_hook, deadline_scheduled_hook])
    @pytest.mark.parametrize("duration", ["60", None, True])
    def test_deadline_of_another_type_is_rejected(self, hook, duration):
        with pytest.raises(InvalidTaskOptionError, match="duration"):
            hook(duration)


# -- through the route builders -------------------------------------------------------------


class Recipe(BaseModel):
    ingredients: list[str]


def test_seed_style_oidc_task_hook_through_delayed_route_builder(recording_client,
                                                                  tasks_service):
    router = APIRouter(route_class=fastapi_cloud_tasks.DelayedRouteBuilder(
        base_url=BASE_URL,
        queue_path=QUEUE,
        client=recording_client,
        pre_create_hook=oidc_task_hook(
            token=tasks_v2.OidcToken(service_account_email=EMAIL, audience=AUDIENCE),
        ),
    ))

    @router.post("/cook")
    def cook(recipe: Recipe) -> None: ...

    cook.delay(recipe=Recipe(ingredients=["Milk", "Cereal"]))
    http = tasks_service.last.http_request
    assert http.oidc_token.service_account_email == EMAIL
    assert http.oidc_token.audience == AUDIENCE
    assert http.url == f"{BASE_URL}/cook"
    assert http.body == b'{"ingredients":["Milk","Cereal"]}'


def test_chained_delayed_hooks_apply_to_delay(recording_client, tasks_service):
    router = APIRouter(route_class=fastapi_cloud_tasks.DelayedRouteBuilder(
        base_url=BASE_URL, queue_path=QUEUE, client=recording_client,
        pre_create_hook=chained_hook(
            oauth_delayed_hook(tasks_v2.OAuthToken(service_account_email=EMAIL, scope=SCOPE)),
            deadline_delayed_hook(timedelta(minutes=20)),
        ),
    ))

    @router.post("/work")
    def work(n: int) -> None: ...

    work.delay(n=3)
    task = tasks_service.last
    assert task.http_request.oauth_token.scope == SCOPE
    assert task.dispatch_deadline == timedelta(minutes=20)
    assert task.http_request.url == f"{BASE_URL}/work?n=3"


def test_scheduled_hooks_apply_to_the_stored_job(recording_scheduler, scheduler_service):
    router = APIRouter(route_class=ScheduledRouteBuilder(
        base_url=BASE_URL, location_path=LOCATION, client=recording_scheduler,
        pre_create_hook=chained_hook(
            oidc_scheduled_hook(scheduler_v1.OidcToken(service_account_email=EMAIL,
                                                       audience=AUDIENCE)),
            deadline_scheduled_hook(600),
        ),
    ))

    @router.post("/tick")
    def tick() -> None: ...

    tick.scheduler(name="tick", schedule="*/10 * * * *").schedule()
    job = scheduler_service.jobs[f"{LOCATION}/jobs/tick"]
    assert job.http_target.oidc_token.audience == AUDIENCE
    assert job.attempt_deadline == timedelta(minutes=10)


def test_hook_set_attempt_deadline_is_not_seen_as_a_change(recording_scheduler,
                                                           scheduler_service):
    router = APIRouter(route_class=ScheduledRouteBuilder(
        base_url=BASE_URL, location_path=LOCATION, client=recording_scheduler,
        pre_create_hook=deadline_scheduled_hook(600),
    ))

    @router.post("/tick")
    def tick() -> None: ...

    for _ in range(2):
        tick.scheduler(name="tick", schedule="*/10 * * * *").schedule()
    assert scheduler_service.rpc_names() == ["get_job", "create_job", "get_job"]
