"""`ScheduledRouteBuilder`: `.scheduler(...).schedule()` keeps one Cloud Scheduler job in shape.

Real FastAPI apps and Google's real `CloudSchedulerClient` over an in-memory transport; the
`RecordingScheduler` behind it stores jobs (adding the `User-Agent` the service stores) and
records every RPC.
"""

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.testclient import TestClient
from google.api_core import exceptions
from google.cloud import scheduler_v1
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    CloudSchedulerHeaders,
    FastAPICloudTasksError,
    InvalidScheduleError,
    InvalidTaskOptionError,
    MissingParamError,
    ScheduledRouteBuilder,
    TaskArgumentsError,
    UnknownParamError,
    WrongTypeError,
    clients,
    oidc_scheduled_hook,
)
from fastapi_cloud_tasks.engine.transports import scheduler_async_client, scheduler_client
from tests.conftest import BASE_URL, LOCATION
from tests.recording import RecordingScheduler, deliver

MANAGED_FIELDS = {
    "http_target", "schedule", "time_zone", "description", "retry_config", "attempt_deadline",
}
received: dict[str, Any] = {}


class Recipe(BaseModel):
    ingredients: list[str]


class Point(BaseModel):
    x: int
    y: int


def make_router(client: Any, **builder: Any) -> APIRouter:
    settings = {"base_url": BASE_URL, "location_path": LOCATION, "client": client, **builder}
    router = APIRouter(route_class=ScheduledRouteBuilder(**settings), prefix="/jobs")

    @router.post("/home_cook")
    def home_cook(recipe: Recipe) -> None:
        received.update(recipe=recipe)

    @router.get("/reports/{kind}")
    def report(kind: str, day: int, verbose: bool = False) -> None:
        received.update(kind=kind, day=day, verbose=verbose)

    @router.put("/points/{item}")
    def put_point(item: str, point: Point) -> None:
        received.update(item=item, point=point)

    @router.post("/scheduled")
    def scheduled(
        value: int,
        run: Annotated[CloudSchedulerHeaders, Depends()],
        job_name: Annotated[str, Header(alias="X-CloudScheduler-JobName")],
    ) -> None:
        received.update(value=value, job_name=job_name, run_job_name=run.job_name,
                        is_scheduled=run.is_scheduled, schedule_time=run.schedule_time)

    return router


@pytest.fixture
def router(recording_scheduler: scheduler_v1.CloudSchedulerClient) -> APIRouter:
    received.clear()
    return make_router(recording_scheduler)


@pytest.fixture
def endpoints(router: APIRouter) -> dict[str, Any]:
    return {route.name: route.endpoint for route in router.routes}


def job_name(name: str) -> str:
    return f"{LOCATION}/jobs/{name}"


def deliver_job(app: FastAPI, job: scheduler_v1.Job) -> Any:
    """Call the app the way Cloud Scheduler runs the stored job."""
    http = job.http_target
    headers = dict(http.headers)
    headers.update({
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": job.name.rsplit("/", 1)[1],
        "X-CloudScheduler-ScheduleTime": "2026-01-02T07:00:00+05:30",
    })
    method = scheduler_v1.HttpMethod(http.http_method).name
    with TestClient(app) as client:
        return deliver(client, method, http.uri, headers, http.body)


def app_for(router: APIRouter) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    return app


# -- creating -------------------------------------------------------------------------------


class TestCreate:
    def test_schedule_creates_the_job_when_get_job_says_not_found(
        self, endpoints, scheduler_service
    ):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        assert scheduler_service.rpc_names() == ["get_job", "create_job"]
        assert list(scheduler_service.jobs) == [job_name("daily")]

    def test_job_name_is_location_path_jobs_name(self, endpoints, scheduler_service):
        job = endpoints["report"].scheduler(name="my_job-1", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        assert job.name == "projects/test-project/locations/asia-south1/jobs/my_job-1"
        _, get_request = scheduler_service.calls[0]
        assert get_request.name == job.name

    def test_create_request_parent_is_the_location_path(self, endpoints, scheduler_service):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        _, create_request = scheduler_service.calls[1]
        assert create_request.parent == LOCATION

    def test_schedule_returns_the_created_job_with_its_state(self, endpoints):
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        assert isinstance(job, scheduler_v1.Job)
        assert job.state == scheduler_v1.Job.State.ENABLED

    def test_url_is_base_url_plus_router_path_with_the_router_prefix(
        self, endpoints, scheduler_service
    ):
        endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *").schedule(
            recipe=Recipe(ingredients=["Milk"])
        )
        job = scheduler_service.jobs[job_name("cook")]
        assert job.http_target.uri == "https://worker.example.com/jobs/home_cook"

    def test_include_router_prefix_is_not_added_to_the_url(
        self, router, endpoints, scheduler_service
    ):
        app = FastAPI()
        app.include_router(router, prefix="/api")
        endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *").schedule(
            recipe=Recipe(ingredients=["Milk"])
        )
        job = scheduler_service.jobs[job_name("cook")]
        assert job.http_target.uri == "https://worker.example.com/jobs/home_cook"

    def test_trailing_slash_of_base_url_is_not_doubled(self, recording_scheduler,
                                                       scheduler_service):
        router = make_router(recording_scheduler, base_url="https://worker.example.com/v1/")
        endpoint = {r.name: r.endpoint for r in router.routes}["home_cook"]
        endpoint.scheduler(name="cook", schedule="0 7 * * *").schedule(
            recipe=Recipe(ingredients=[])
        )
        uri = scheduler_service.jobs[job_name("cook")].http_target.uri
        assert uri == "https://worker.example.com/v1/jobs/home_cook"

    @pytest.mark.parametrize(
        ("endpoint", "kwargs", "method"),
        [
            ("home_cook", {"recipe": Recipe(ingredients=[])}, scheduler_v1.HttpMethod.POST),
            ("report", {"kind": "k", "day": 1}, scheduler_v1.HttpMethod.GET),
            ("put_point", {"item": "i", "point": Point(x=1, y=2)}, scheduler_v1.HttpMethod.PUT),
        ],
    )
    def test_http_method_is_the_routes_method(self, endpoints, scheduler_service, endpoint,
                                              kwargs, method):
        endpoints[endpoint].scheduler(name="job", schedule="0 7 * * *").schedule(**kwargs)
        assert scheduler_service.jobs[job_name("job")].http_target.http_method == method

    def test_body_is_json_with_a_content_type(self, endpoints, scheduler_service):
        endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *").schedule(
            recipe=Recipe(ingredients=["Milk", "Cereal"])
        )
        http = scheduler_service.jobs[job_name("cook")].http_target
        assert http.body == b'{"ingredients":["Milk","Cereal"]}'
        assert http.headers["Content-Type"] == "application/json"

    def test_no_body_and_no_content_type_without_body_parameters(
        self, endpoints, scheduler_service
    ):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        http = scheduler_service.jobs[job_name("daily")].http_target
        assert http.body == b""
        assert "Content-Type" not in http.headers

    def test_path_and_query_arguments_are_encoded_into_the_uri(
        self, endpoints, scheduler_service
    ):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="daily sales&more", day=3, verbose=True
        )
        uri = scheduler_service.jobs[job_name("daily")].http_target.uri
        assert uri == (
            "https://worker.example.com/jobs/reports/daily%20sales%26more?day=3&verbose=true"
        )

    def test_stored_job_reaches_the_endpoint_with_the_same_arguments(
        self, router, endpoints, scheduler_service
    ):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="daily sales & more? #1 ünï", day=3, verbose=True
        )
        response = deliver_job(app_for(router), scheduler_service.jobs[job_name("daily")])
        assert response.status_code == 200, response.text
        assert received == {"kind": "daily sales & more? #1 ünï", "day": 3, "verbose": True}

    def test_put_job_with_path_and_body_reaches_the_endpoint(
        self, router, endpoints, scheduler_service
    ):
        endpoints["put_point"].scheduler(name="pt", schedule="0 7 * * *").schedule(
            item="a b", point=Point(x=-1, y=2)
        )
        response = deliver_job(app_for(router), scheduler_service.jobs[job_name("pt")])
        assert response.status_code == 200, response.text
        assert received == {"item": "a b", "point": Point(x=-1, y=2)}

    def test_schedule_time_zone_and_description_are_sent(self, endpoints, scheduler_service):
        endpoints["report"].scheduler(
            name="daily", schedule="30 9 * * MON-FRI", time_zone="Europe/London",
            description="Weekday sales report",
        ).schedule(kind="sales", day=1)
        job = scheduler_service.jobs[job_name("daily")]
        assert (job.schedule, job.time_zone, job.description) == (
            "30 9 * * MON-FRI", "Europe/London", "Weekday sales report"
        )

    def test_time_zone_defaults_to_utc(self, endpoints, scheduler_service):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        assert scheduler_service.jobs[job_name("daily")].time_zone == "UTC"

    def test_retry_config_defaults_are_filled_in(self, endpoints, scheduler_service):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        retry = scheduler_service.jobs[job_name("daily")].retry_config
        assert retry.retry_count == 0
        assert retry.min_backoff_duration == timedelta(seconds=5)
        assert retry.max_backoff_duration == timedelta(hours=1)
        assert retry.max_doublings == 5
        assert retry.max_retry_duration == timedelta(0)

    def test_partial_retry_config_dict_keeps_the_given_fields_and_fills_the_rest(
        self, endpoints, scheduler_service
    ):
        endpoints["report"].scheduler(
            name="daily", schedule="0 7 * * *",
            retry_config={"retry_count": 3, "max_backoff_duration": timedelta(minutes=10)},
        ).schedule(kind="sales", day=1)
        retry = scheduler_service.jobs[job_name("daily")].retry_config
        assert retry.retry_count == 3
        assert retry.max_backoff_duration == timedelta(minutes=10)
        assert retry.min_backoff_duration == timedelta(seconds=5)
        assert retry.max_doublings == 5

    def test_retry_config_message_is_accepted(self, endpoints, scheduler_service):
        config = scheduler_v1.RetryConfig(
            retry_count=5, min_backoff_duration=timedelta(seconds=30), max_doublings=2,
        )
        endpoints["report"].scheduler(
            name="daily", schedule="0 7 * * *", retry_config=config
        ).schedule(kind="sales", day=1)
        retry = scheduler_service.jobs[job_name("daily")].retry_config
        assert (retry.retry_count, retry.min_backoff_duration, retry.max_doublings) == (
            5, timedelta(seconds=30), 2
        )
        assert retry.max_backoff_duration == timedelta(hours=1)

    def test_attempt_deadline_defaults_to_180_seconds(self, endpoints, scheduler_service):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").schedule(
            kind="sales", day=1
        )
        assert scheduler_service.jobs[job_name("daily")].attempt_deadline == timedelta(
            seconds=180
        )

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            (15, timedelta(seconds=15)),
            (90.5, timedelta(seconds=90.5)),
            (timedelta(minutes=30), timedelta(minutes=30)),
        ],
    )
    def test_attempt_deadline_accepts_seconds_or_timedelta(self, endpoints, scheduler_service,
                                                           given, expected):
        endpoints["report"].scheduler(
            name="daily", schedule="0 7 * * *", attempt_deadline=given
        ).schedule(kind="sales", day=1)
        assert scheduler_service.jobs[job_name("daily")].attempt_deadline == expected

    def test_hook_oidc_token_lands_in_the_jobs_http_target(self, recording_scheduler,
                                                           scheduler_service):
        token = scheduler_v1.OidcToken(
            service_account_email="scheduler@test-project.iam.gserviceaccount.com",
            audience="https://worker.example.com",
        )
        router = make_router(recording_scheduler, pre_create_hook=oidc_scheduled_hook(token))
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        endpoint.scheduler(name="daily", schedule="0 7 * * *").schedule(kind="k", day=1)
        stored = scheduler_service.jobs[job_name("daily")].http_target.oidc_token
        assert stored.service_account_email == "scheduler@test-project.iam.gserviceaccount.com"
        assert stored.audience == "https://worker.example.com"

    def test_hook_receives_the_create_job_request(self, recording_scheduler, scheduler_service):
        seen: list[Any] = []

        def hook(request: scheduler_v1.CreateJobRequest) -> scheduler_v1.CreateJobRequest:
            seen.append((type(request), request.parent, request.job.name))
            request.job.description = "set by the hook"
            return request

        router = make_router(recording_scheduler, pre_create_hook=hook)
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        endpoint.scheduler(name="daily", schedule="0 7 * * *").schedule(kind="k", day=1)
        assert seen == [(scheduler_v1.CreateJobRequest, LOCATION, job_name("daily"))]
        assert scheduler_service.jobs[job_name("daily")].description == "set by the hook"

    def test_job_created_meanwhile_by_another_instance_is_not_an_error(self, endpoints):
        class RacingScheduler(RecordingScheduler):
            """GetJob answers NotFound once, while another instance creates the job."""

            raced = False

            def get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job:
                if not self.raced:
                    self.raced = True
                    other = scheduler_v1.Job(name=request.name, schedule="0 7 * * *")
                    self.jobs[request.name] = other
                    self.calls.append(("get_job", request))
                    raise exceptions.NotFound("Job not found.")
                return super().get_job(request)

        service = RacingScheduler()
        router = make_router(scheduler_client(service))
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        endpoint.scheduler(name="daily", schedule="0 9 * * *").schedule(kind="k", day=1)
        assert service.rpc_names() == ["get_job", "create_job", "get_job", "update_job"]
        assert service.jobs[job_name("daily")].schedule == "0 9 * * *"


# -- unchanged, updated, forced -------------------------------------------------------------


def schedule_report(endpoints: dict[str, Any], **settings: Any) -> scheduler_v1.Job:
    args = settings.pop("args", {"kind": "sales", "day": 1})
    settings = {"name": "daily", "schedule": "0 7 * * *", **settings}
    job: scheduler_v1.Job = endpoints["report"].scheduler(**settings).schedule(**args)
    return job


class TestUnchanged:
    def test_same_configuration_again_makes_no_update(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        schedule_report(endpoints)
        assert scheduler_service.rpc_names() == ["get_job", "create_job", "get_job"]

    def test_unchanged_job_is_returned_as_stored(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        scheduler_service.jobs[job_name("daily")].state = scheduler_v1.Job.State.PAUSED
        job = schedule_report(endpoints)
        assert job.state == scheduler_v1.Job.State.PAUSED
        assert job.http_target.headers["User-Agent"] == "Google-Cloud-Scheduler"

    def test_user_agent_added_by_the_service_is_not_a_change(self, endpoints, scheduler_service):
        schedule_report(endpoints, args={"kind": "k", "day": 1})
        stored = scheduler_service.jobs[job_name("daily")].http_target
        stored.headers["user-agent"] = stored.headers.pop("User-Agent")  # any spelling
        schedule_report(endpoints, args={"kind": "k", "day": 1})
        assert "update_job" not in scheduler_service.rpc_names()

    def test_json_job_with_user_agent_is_not_a_change(self, endpoints, scheduler_service):
        job = endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *")
        job.schedule(recipe=Recipe(ingredients=["Milk"]))
        assert set(scheduler_service.jobs[job_name("cook")].http_target.headers) == {
            "Content-Type", "User-Agent",
        }
        job.schedule(recipe={"ingredients": ["Milk"]})
        assert scheduler_service.rpc_names() == ["get_job", "create_job", "get_job"]

    def test_defaults_left_implicit_by_the_service_are_not_a_change(
        self, endpoints, scheduler_service
    ):
        schedule_report(endpoints)
        stored = scheduler_service.jobs[job_name("daily")]
        # A job as another tool may have stored it: every default left unset.
        for field in ("retry_config", "attempt_deadline", "time_zone", "description"):
            delattr(stored, field)
        schedule_report(endpoints)
        assert "update_job" not in scheduler_service.rpc_names()

    def test_unset_http_method_means_post(self, endpoints, scheduler_service):
        job = endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *")
        job.schedule(recipe=Recipe(ingredients=[]))
        stored = scheduler_service.jobs[job_name("cook")].http_target
        stored.http_method = scheduler_v1.HttpMethod.HTTP_METHOD_UNSPECIFIED
        job.schedule(recipe=Recipe(ingredients=[]))
        assert "update_job" not in scheduler_service.rpc_names()

    def test_retry_defaults_filled_by_the_service_equal_an_omitted_retry_config(
        self, endpoints, scheduler_service
    ):
        schedule_report(endpoints, retry_config={"retry_count": 2})
        full = scheduler_v1.RetryConfig(
            retry_count=2, min_backoff_duration=timedelta(seconds=5),
            max_backoff_duration=timedelta(hours=1), max_doublings=5,
            max_retry_duration=timedelta(0),
        )
        schedule_report(endpoints, retry_config=full)
        assert "update_job" not in scheduler_service.rpc_names()

    def test_hook_added_token_is_not_a_change(self, recording_scheduler, scheduler_service):
        token = scheduler_v1.OidcToken(service_account_email="sa@p.iam.gserviceaccount.com")
        router = make_router(recording_scheduler, pre_create_hook=oidc_scheduled_hook(token))
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        for _ in range(2):
            endpoint.scheduler(name="daily", schedule="0 7 * * *").schedule(kind="k", day=1)
        assert scheduler_service.rpc_names() == ["get_job", "create_job", "get_job"]


CHANGES = {
    "schedule": ({"schedule": "*/15 * * * *"}, lambda job: job.schedule, "*/15 * * * *"),
    "time_zone": ({"time_zone": "Asia/Kolkata"}, lambda job: job.time_zone, "Asia/Kolkata"),
    "args": (
        {"args": {"kind": "sales", "day": 2}},
        lambda job: job.http_target.uri,
        "https://worker.example.com/jobs/reports/sales?day=2",
    ),
    "retry_config": (
        {"retry_config": {"retry_count": 4}}, lambda job: job.retry_config.retry_count, 4
    ),
    "description": ({"description": "new"}, lambda job: job.description, "new"),
    "attempt_deadline": (
        {"attempt_deadline": 600}, lambda job: job.attempt_deadline, timedelta(minutes=10)
    ),
}


class TestUpdate:
    @pytest.mark.parametrize("change", list(CHANGES))
    def test_each_managed_setting_change_triggers_update_job(self, endpoints, scheduler_service,
                                                             change):
        settings, read, expected = CHANGES[change]
        schedule_report(endpoints)
        assert read(scheduler_service.jobs[job_name("daily")]) != expected
        schedule_report(endpoints, **settings)
        assert scheduler_service.rpc_names() == ["get_job", "create_job", "get_job",
                                                 "update_job"]
        assert read(scheduler_service.jobs[job_name("daily")]) == expected

    def test_update_mask_lists_the_managed_fields(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        schedule_report(endpoints, description="changed")
        name, request = scheduler_service.calls[-1]
        assert name == "update_job"
        assert set(request.update_mask.paths) == MANAGED_FIELDS
        assert request.job.name == job_name("daily")

    def test_update_keeps_a_paused_job_paused(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        scheduler_service.jobs[job_name("daily")].state = scheduler_v1.Job.State.PAUSED
        job = schedule_report(endpoints, schedule="0 8 * * *")
        assert job.state == scheduler_v1.Job.State.PAUSED
        assert scheduler_service.jobs[job_name("daily")].state == scheduler_v1.Job.State.PAUSED
        assert "delete_job" not in scheduler_service.rpc_names()
        assert scheduler_service.rpc_names().count("create_job") == 1

    def test_update_returns_the_updated_job(self, endpoints):
        schedule_report(endpoints)
        job = schedule_report(endpoints, schedule="0 8 * * *")
        assert job.schedule == "0 8 * * *"

    def test_update_removes_an_oidc_token_no_longer_configured(self, recording_scheduler,
                                                                scheduler_service):
        token = scheduler_v1.OidcToken(service_account_email="sa@p.iam.gserviceaccount.com")
        with_token = make_router(recording_scheduler, pre_create_hook=oidc_scheduled_hook(token))
        without = make_router(recording_scheduler)
        for router in (with_token, without):
            endpoint = {r.name: r.endpoint for r in router.routes}["report"]
            endpoint.scheduler(name="daily", schedule="0 7 * * *").schedule(kind="k", day=1)
        assert scheduler_service.rpc_names()[-1] == "update_job"
        assert "oidc_token" not in scheduler_service.jobs[job_name("daily")].http_target


class TestForce:
    def test_force_rewrites_an_unchanged_job(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        schedule_report(endpoints, force=True)
        assert scheduler_service.rpc_names() == ["get_job", "create_job", "get_job",
                                                 "update_job"]

    def test_force_creates_an_absent_job(self, endpoints, scheduler_service):
        schedule_report(endpoints, force=True)
        assert scheduler_service.rpc_names() == ["get_job", "create_job"]

    def test_force_update_keeps_the_state(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        scheduler_service.jobs[job_name("daily")].state = scheduler_v1.Job.State.PAUSED
        job = schedule_report(endpoints, force=True)
        assert job.state == scheduler_v1.Job.State.PAUSED


class TestDelete:
    def test_delete_removes_the_job_and_returns_true(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        assert endpoints["report"].scheduler(name="daily", schedule="0 7 * * *").delete() is True
        assert scheduler_service.jobs == {}
        name, request = scheduler_service.calls[-1]
        assert (name, request.name) == ("delete_job", job_name("daily"))

    def test_delete_of_an_absent_job_returns_false(self, endpoints, scheduler_service):
        assert endpoints["report"].scheduler(name="gone", schedule="0 7 * * *").delete() is False
        assert scheduler_service.rpc_names() == ["delete_job"]

    def test_second_delete_returns_false(self, endpoints):
        schedule_report(endpoints)
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *")
        assert [job.delete(), job.delete()] == [True, False]


# -- arguments ------------------------------------------------------------------------------


class TestArguments:
    def test_every_bad_argument_is_reported_and_nothing_is_sent(self, endpoints,
                                                               scheduler_service):
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *")
        with pytest.raises(TaskArgumentsError) as caught:
            job.schedule(day="monday", colour="red")
        problems = {(p.param, p.kind) for p in caught.value.problems}
        assert problems == {("day", "type"), ("colour", "unknown"), ("kind", "missing")}
        assert "report (GET /jobs/reports/{kind})" in str(caught.value)
        assert scheduler_service.calls == []

    def test_missing_argument_raises_missing_param_error(self, endpoints, scheduler_service):
        job = endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *")
        with pytest.raises(MissingParamError, match="recipe"):
            job.schedule()
        assert scheduler_service.calls == []

    def test_wrong_type_raises_wrong_type_error(self, endpoints, scheduler_service):
        job = endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *")
        with pytest.raises(WrongTypeError, match=r"recipe \(body\): ingredients"):
            job.schedule(recipe={"ingredients": "not a list"})
        assert scheduler_service.calls == []

    def test_unknown_argument_raises_unknown_param_error(self, endpoints, scheduler_service):
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *")
        with pytest.raises(UnknownParamError, match="verbosity"):
            job.schedule(kind="k", day=1, verbosity=True)
        assert scheduler_service.calls == []

    def test_bad_arguments_do_not_touch_an_existing_job(self, endpoints, scheduler_service):
        schedule_report(endpoints)
        before = scheduler_v1.Job(scheduler_service.jobs[job_name("daily")])
        scheduler_service.calls.clear()
        with pytest.raises(TaskArgumentsError):
            schedule_report(endpoints, args={"kind": "k", "day": "x"})
        assert scheduler_service.calls == []
        assert scheduler_service.jobs[job_name("daily")] == before

    def test_cloud_scheduler_headers_are_not_required_from_the_caller(self, endpoints,
                                                                      scheduler_service):
        endpoints["scheduled"].scheduler(name="s", schedule="*/5 * * * *").schedule(value=7)
        http = scheduler_service.jobs[job_name("s")].http_target
        assert http.uri == "https://worker.example.com/jobs/scheduled?value=7"
        assert not any(h.lower().startswith("x-cloudscheduler") for h in http.headers)

    def test_scheduled_endpoint_gets_the_headers_cloud_scheduler_sends(
        self, router, endpoints, scheduler_service
    ):
        endpoints["scheduled"].scheduler(name="s", schedule="*/5 * * * *").schedule(value=7)
        response = deliver_job(app_for(router), scheduler_service.jobs[job_name("s")])
        assert response.status_code == 200, response.text
        assert received == {
            "value": 7, "job_name": "s", "run_job_name": "s", "is_scheduled": True,
            "schedule_time": datetime(2026, 1, 2, 1, 30, tzinfo=timezone.utc),
        }


def test_readme_example_schedules_home_cook_at_7am_ist(endpoints, scheduler_service):
    home_cook = endpoints["home_cook"]
    home_cook.scheduler(
        name="test-home-cook-at-7AM-IST",
        schedule="0 7 * * *",
        time_zone="Asia/Kolkata",
    ).schedule(recipe=Recipe(ingredients=["Milk", "Cereal"]))
    job = scheduler_service.jobs[job_name("test-home-cook-at-7AM-IST")]
    assert (job.schedule, job.time_zone) == ("0 7 * * *", "Asia/Kolkata")
    assert job.http_target.uri == "https://worker.example.com/jobs/home_cook"
    assert job.http_target.http_method == scheduler_v1.HttpMethod.POST
    assert job.http_target.body == b'{"ingredients":["Milk","Cereal"]}'


# -- job settings checked at .scheduler() ---------------------------------------------------


class TestJobSettings:
    @pytest.mark.parametrize(
        "name", ["", "a/b", "a b", "café", "x" * 501, "abc\n", "jobs.daily", None],
    )
    def test_invalid_job_id_is_rejected_naming_it(self, endpoints, scheduler_service, name):
        with pytest.raises(InvalidScheduleError) as caught:
            endpoints["report"].scheduler(name=name, schedule="0 7 * * *")
        assert f"name={name!r}" in str(caught.value)
        assert scheduler_service.calls == []

    @pytest.mark.parametrize("name", ["a", "A-z_0-9", "x" * 500])
    def test_valid_job_ids_are_accepted(self, endpoints, scheduler_service, name):
        endpoints["report"].scheduler(name=name, schedule="0 7 * * *").schedule(kind="k", day=1)
        assert job_name(name) in scheduler_service.jobs

    @pytest.mark.parametrize(
        ("retry_config", "fragment"),
        [
            ({"retry_count": 6}, "retry_count=6"),
            ({"retry_count": -1}, "retry_count=-1"),
            (scheduler_v1.RetryConfig(retry_count=9), "retry_count=9"),
            ({"min_backoff_duration": timedelta(hours=2)}, "min_backoff_duration"),
            ({"max_backoff_duration": timedelta(seconds=1)}, "max_backoff_duration"),
            ({"min_backoff_duration": timedelta(seconds=-1)}, "min_backoff_duration"),
            ({"max_retry_duration": timedelta(seconds=-1)}, "max_retry_duration"),
            ({"max_doublings": -1}, "max_doublings"),
            ({"retry_cont": 1}, "retry_cont"),
            ("3 retries", "'3 retries'"),
        ],
    )
    def test_invalid_retry_config_is_rejected(self, endpoints, scheduler_service, retry_config,
                                              fragment):
        with pytest.raises(InvalidScheduleError) as caught:
            endpoints["report"].scheduler(name="daily", schedule="0 7 * * *",
                                          retry_config=retry_config)
        assert fragment in str(caught.value)
        assert scheduler_service.calls == []

    @pytest.mark.parametrize("deadline", [14, 14.999, timedelta(minutes=30, seconds=1), 0, -20])
    def test_attempt_deadline_outside_15s_to_30min_is_rejected(self, endpoints, deadline):
        with pytest.raises(InvalidScheduleError, match="15 s to 1800 s"):
            endpoints["report"].scheduler(name="daily", schedule="0 7 * * *",
                                          attempt_deadline=deadline)

    @pytest.mark.parametrize("deadline", ["60", True])
    def test_attempt_deadline_of_another_type_is_rejected(self, endpoints, deadline):
        with pytest.raises(InvalidScheduleError, match="attempt_deadline"):
            endpoints["report"].scheduler(name="daily", schedule="0 7 * * *",
                                          attempt_deadline=deadline)

    def test_description_over_500_characters_is_rejected_before_any_call(self, endpoints,
                                                                         scheduler_service):
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *",
                                            description="d" * 501)
        with pytest.raises(InvalidScheduleError,
                           match="description is 501 characters long; Cloud Scheduler accepts "
                                 "at most 500"):
            job.schedule(kind="k", day=1)
        assert scheduler_service.calls == []

    def test_description_that_is_not_a_string_is_rejected_before_any_call(self, endpoints,
                                                                          scheduler_service):
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *",
                                            description=123)  # type: ignore[arg-type]
        with pytest.raises(InvalidScheduleError, match="description=123 must be a string"):
            job.schedule(kind="k", day=1)
        assert scheduler_service.calls == []

    def test_description_of_500_characters_is_sent(self, endpoints, scheduler_service):
        endpoints["report"].scheduler(name="daily", schedule="0 7 * * *",
                                      description="d" * 500).schedule(kind="k", day=1)
        assert scheduler_service.jobs[job_name("daily")].description == "d" * 500

    def test_uri_over_2083_characters_is_rejected_before_any_call(self, endpoints,
                                                                 scheduler_service):
        job = endpoints["report"].scheduler(name="daily", schedule="0 7 * * *")
        with pytest.raises(InvalidScheduleError,
                           match=r"URI is \d+ characters long once encoded; Cloud Scheduler "
                                 r"accepts at most 2083"):
            job.schedule(kind="k" * 2050, day=1)
        assert scheduler_service.calls == []

    def test_uri_length_counts_characters_after_encoding(self, recording_scheduler,
                                                         scheduler_service):
        # Each "é" of the base URL is 6 characters once percent-encoded as UTF-8.
        router = make_router(recording_scheduler,
                             base_url="https://worker.example.com/" + "é" * 340)
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        with pytest.raises(InvalidScheduleError, match="2083"):
            endpoint.scheduler(name="daily", schedule="0 7 * * *").schedule(kind="k", day=1)
        assert scheduler_service.calls == []

    def test_job_over_1_mib_is_rejected_before_any_call(self, endpoints, scheduler_service):
        job = endpoints["home_cook"].scheduler(name="cook", schedule="0 7 * * *")
        with pytest.raises(InvalidScheduleError,
                           match=r"is \d+ bytes; Cloud Scheduler accepts at most 1048576"):
            job.schedule(recipe=Recipe(ingredients=["x" * 1024] * 1024))
        assert scheduler_service.calls == []

    def test_limits_are_checked_after_the_hook(self, recording_scheduler, scheduler_service):
        def long_description(request: scheduler_v1.CreateJobRequest) -> Any:
            request.job.description = "set by the hook " * 40
            return request

        router = make_router(recording_scheduler, pre_create_hook=long_description)
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        with pytest.raises(InvalidScheduleError, match="640 characters long"):
            endpoint.scheduler(name="daily", schedule="0 7 * * *").schedule(kind="k", day=1)
        assert scheduler_service.calls == []

    def test_hook_returning_none_is_named_and_nothing_is_sent(self, recording_scheduler,
                                                             scheduler_service):
        def forgets_to_return(request: scheduler_v1.CreateJobRequest) -> Any:
            request.job.description = "edited"

        router = make_router(recording_scheduler, pre_create_hook=forgets_to_return)
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        job = endpoint.scheduler(name="daily", schedule="0 7 * * *")
        with pytest.raises(InvalidTaskOptionError,
                           match=r"pre_create_hook .*\.forgets_to_return returned None; return "
                                 r"the \(modified\) request\."):
            job.schedule(kind="k", day=1)
        assert scheduler_service.calls == []

    def test_job_setting_errors_are_library_value_errors(self):
        assert issubclass(InvalidScheduleError, FastAPICloudTasksError)
        assert issubclass(InvalidScheduleError, ValueError)


# -- clients --------------------------------------------------------------------------------


class TestClients:
    def test_asyncio_client_gives_a_clear_error_and_sends_nothing(self):
        service = RecordingScheduler()
        router = make_router(scheduler_async_client(service))
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        job = endpoint.scheduler(name="daily", schedule="0 7 * * *")
        with pytest.raises(InvalidTaskOptionError, match="asyncio scheduler client") as caught:
            job.schedule(kind="k", day=1)
        assert "CloudSchedulerClient" in str(caught.value)
        assert service.calls == []

    def test_asyncio_client_delete_gives_the_same_error(self):
        service = RecordingScheduler()
        router = make_router(scheduler_async_client(service))
        endpoint = {r.name: r.endpoint for r in router.routes}["report"]
        with pytest.raises(InvalidTaskOptionError, match="asyncio scheduler client"):
            endpoint.scheduler(name="daily", schedule="0 7 * * *").delete()
        assert service.calls == []

    def test_default_client_is_created_only_by_schedule(self, monkeypatch):
        service = RecordingScheduler()
        created: list[scheduler_v1.CloudSchedulerClient] = []

        def factory() -> scheduler_v1.CloudSchedulerClient:
            created.append(scheduler_client(service))
            return created[-1]

        monkeypatch.setitem(
            clients._DEFAULTS, "scheduler",
            (clients.LazyClient(factory), scheduler_v1.CloudSchedulerAsyncClient),
        )
        router = make_router(None)
        app_for(router)
        job = {r.name: r.endpoint for r in router.routes}["report"].scheduler(
            name="daily", schedule="0 7 * * *"
        )
        with pytest.raises(TaskArgumentsError):
            job.schedule(kind="k")
        assert created == []
        job.schedule(kind="k", day=1)
        assert len(created) == 1
        assert service.rpc_names() == ["get_job", "create_job"]


# -- builder settings -----------------------------------------------------------------------


class TestBuilderSettings:
    @pytest.mark.parametrize(
        "location_path",
        [
            "projects/p/locations",
            "projects/p/locations/l/",
            "projects/p/locations/l/queues/q",
            "locations/l",
            "projects//locations/l",
            "projects/p/locations/l\n",
            "",
            None,
        ],
    )
    def test_invalid_location_path_is_rejected_by_the_builder(self, location_path):
        with pytest.raises(InvalidTaskOptionError) as caught:
            ScheduledRouteBuilder(base_url=BASE_URL, location_path=location_path)
        assert f"location_path={location_path!r}" in str(caught.value)

    @pytest.mark.parametrize("base_url", ["worker.example.com", "ftp://worker", "", None])
    def test_base_url_without_http_or_https_is_rejected_by_the_builder(self, base_url):
        with pytest.raises(InvalidTaskOptionError) as caught:
            ScheduledRouteBuilder(base_url=base_url, location_path=LOCATION)
        assert f"base_url={base_url!r}" in str(caught.value)

    @pytest.mark.parametrize("timeout", [0, -1, -0.5, "10", True])
    def test_non_positive_job_create_timeout_is_rejected_by_the_builder(self, timeout):
        with pytest.raises(InvalidTaskOptionError, match="job_create_timeout"):
            ScheduledRouteBuilder(base_url=BASE_URL, location_path=LOCATION,
                                  job_create_timeout=timeout)

    def test_valid_builder_settings_give_a_route_class(self):
        route_class = ScheduledRouteBuilder(
            base_url="http://localhost:8000", location_path=LOCATION, job_create_timeout=0.5
        )
        router = APIRouter(route_class=route_class)

        @router.post("/x")
        def x() -> None: ...

        assert callable(x.scheduler)
