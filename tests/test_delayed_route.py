"""`DelayedRouteBuilder`: `.delay()`, `.adelay()`, `.options()`, `@task_default_options`, queue
creation, lazy clients and `override_clients`, all through Google's real client classes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import google.auth
import pytest
from fastapi import APIRouter, Body, FastAPI
from fastapi.testclient import TestClient
from google.api_core import exceptions
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import tasks_v2
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    ClientOverride,
    DelayedRouteBuilder,
    InvalidTaskOptionError,
    MissingParamError,
    override_clients,
    queue_path,
    task_default_options,
)
from fastapi_cloud_tasks import clients as clients_module
from fastapi_cloud_tasks.engine.transports import tasks_async_client, tasks_client
from tests.conftest import BASE_URL, LOCATION, QUEUE
from tests.recording import RecordingTasks, deliver_task

OTHER_QUEUE = "projects/test-project/locations/asia-south1/queues/other-queue"

received: list[Any] = []


class Recipe(BaseModel):
    ingredients: list[str]


class Payload(BaseModel):
    message: str


def builder(client: Any = None, **settings: Any) -> Any:
    return DelayedRouteBuilder(**{"base_url": BASE_URL, "queue_path": QUEUE, "client": client,
                                  **settings})


def simple_task(client: Any = None, *, prefix: str = "", **settings: Any) -> Any:
    """A POST endpoint `/ping` taking a query parameter `n`, on a router of its own."""
    router = APIRouter(route_class=builder(client, **settings), prefix=prefix)

    @router.post("/ping")
    def ping(n: int = 0) -> None:
        received.append(n)

    return ping


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def assert_sent_in(tasks_service: RecordingTasks, before: datetime, countdown: timedelta) -> None:
    """The last task's schedule time is `countdown` from a moment between `before` and now
    (not "within 1 s of now": a loaded machine can pause longer between the two reads)."""
    assert before + countdown <= tasks_service.last.schedule_time <= now_utc() + countdown


@pytest.fixture(autouse=True)
def _clear_received() -> None:
    received.clear()


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make `google.auth.default()` fail (and count its calls), as on a machine without
    credentials."""
    calls: list[Any] = []

    def default(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise DefaultCredentialsError("no credentials in this test")

    monkeypatch.setattr(google.auth, "default", default)
    # The lazily built default clients must be built (and fail) inside this test.
    monkeypatch.setattr(clients_module.default_tasks_client, "_client", None)
    return calls


# -- the examples of the 0.x README, with pydantic v2 models -----------------------------------


@pytest.fixture
def readme_app(recording_client: tasks_v2.CloudTasksClient) -> tuple[FastAPI, Any, Any]:
    DelayedRoute = DelayedRouteBuilder(
        base_url=BASE_URL,
        queue_path=queue_path(project="test-project", location="asia-south1", queue="test-queue"),
        client=recording_client,
    )
    task_router = APIRouter(route_class=DelayedRoute, prefix="/tasks")
    delayed_router = APIRouter(route_class=DelayedRoute, prefix="/tasks")

    @task_router.post("/{restaurant}/make_dinner")
    async def make_dinner(restaurant: str, recipe: Recipe) -> None:
        received.append((restaurant, recipe))

    @delayed_router.post("/hello")
    async def hello(p: Payload = Payload(message="Default")) -> None:  # noqa: B008
        received.append(p)

    app = FastAPI()

    @app.get("/trigger")
    async def trigger() -> dict[str, str]:
        hello.delay(p=Payload(message="Triggered task"))
        return {"message": "Hello task triggered"}

    app.include_router(task_router)
    app.include_router(delayed_router)
    return app, make_dinner, hello


class TestReadmeExamples:
    def test_make_dinner_delay_posts_the_recipe_as_json_to_the_restaurant_url(
        self, readme_app, tasks_service
    ):
        _, make_dinner, _ = readme_app
        make_dinner.delay(restaurant="Taj", recipe=Recipe(ingredients=["Pav", "Bhaji"]))
        http = tasks_service.last.http_request
        assert http.url == f"{BASE_URL}/tasks/Taj/make_dinner"
        assert http.http_method == tasks_v2.HttpMethod.POST
        assert http.body == b'{"ingredients":["Pav","Bhaji"]}'
        assert http.headers["Content-Type"] == "application/json"

    def test_make_dinner_task_reaches_the_endpoint_with_the_same_arguments(
        self, readme_app, tasks_service
    ):
        app, make_dinner, _ = readme_app
        make_dinner.delay(restaurant="Taj", recipe=Recipe(ingredients=["Pav", "Bhaji"]))
        with TestClient(app) as client:
            response = deliver_task(client, tasks_service.last)
        assert response.status_code == 200, response.text
        assert received == [("Taj", Recipe(ingredients=["Pav", "Bhaji"]))]

    def test_make_dinner_with_countdown_1800_runs_half_an_hour_later(
        self, readme_app, tasks_service
    ):
        _, make_dinner, _ = readme_app
        before = now_utc()
        make_dinner.options(countdown=1800).delay(
            restaurant="Taj", recipe=Recipe(ingredients=["Pav", "Bhaji"])
        )
        after = now_utc()
        when = tasks_service.last.schedule_time
        assert before + timedelta(seconds=1800) <= when <= after + timedelta(seconds=1800)

    def test_hello_delay_sends_the_payload_under_the_router_prefix(
        self, readme_app, tasks_service
    ):
        _, _, hello = readme_app
        hello.delay(p=Payload(message="Triggered task"))
        http = tasks_service.last.http_request
        assert http.url == f"{BASE_URL}/tasks/hello"
        assert http.body == b'{"message":"Triggered task"}'

    def test_trigger_endpoint_enqueues_hello_and_the_task_runs_it(
        self, readme_app, tasks_service
    ):
        app, _, _ = readme_app
        with TestClient(app) as client:
            assert client.get("/trigger").json() == {"message": "Hello task triggered"}
            assert received == []
            response = deliver_task(client, tasks_service.last)
        assert response.status_code == 200, response.text
        assert received == [Payload(message="Triggered task")]

    def test_hello_without_a_payload_runs_with_the_default_one(self, readme_app, tasks_service):
        app, _, hello = readme_app
        hello.delay()
        with TestClient(app) as client:
            assert deliver_task(client, tasks_service.last).status_code == 200
        assert received == [Payload(message="Default")]

    def test_delay_returns_the_created_task(self, readme_app, tasks_service):
        _, _, hello = readme_app
        task = hello.delay(p=Payload(message="x"))
        assert isinstance(task, tasks_v2.Task)
        assert task.name.startswith(f"{QUEUE}/tasks/")
        assert task.http_request.url == f"{BASE_URL}/tasks/hello"


# -- URLs ------------------------------------------------------------------------------------


class TestUrls:
    def test_url_is_base_url_plus_router_prefix_path_and_query(self, recording_client,
                                                                tasks_service):
        ping = simple_task(recording_client, prefix="/jobs")
        ping.delay(n=3)
        assert tasks_service.last.http_request.url == f"{BASE_URL}/jobs/ping?n=3"

    def test_trailing_slash_of_base_url_is_not_doubled(self, recording_client, tasks_service):
        simple_task(recording_client, base_url=f"{BASE_URL}/").delay()
        assert tasks_service.last.http_request.url == f"{BASE_URL}/ping"

    def test_include_router_prefix_is_not_added_to_the_url(self, recording_client,
                                                           tasks_service):
        # The worker serves the router under /api: that part belongs in base_url.
        router = APIRouter(
            route_class=DelayedRouteBuilder(
                base_url=f"{BASE_URL}/api", queue_path=QUEUE, client=recording_client
            ),
            prefix="/tasks",
        )

        @router.post("/work")
        def work(n: int) -> None:
            received.append(n)

        app = FastAPI()
        app.include_router(router, prefix="/api")
        work.delay(n=1)
        assert tasks_service.last.http_request.url == f"{BASE_URL}/api/tasks/work?n=1"
        with TestClient(app) as client:
            assert deliver_task(client, tasks_service.last).status_code == 200
        assert received == [1]

    def test_prefixes_of_enclosing_routers_are_not_added_to_the_url(self, recording_client,
                                                                    tasks_service):
        inner = APIRouter(route_class=builder(recording_client), prefix="/inner")

        @inner.post("/work")
        def work() -> None: ...

        outer = APIRouter(prefix="/outer")
        outer.include_router(inner, prefix="/mid")
        app = FastAPI()
        app.include_router(outer, prefix="/api")
        work.delay()
        assert tasks_service.last.http_request.url == f"{BASE_URL}/inner/work"

    def test_base_url_can_be_overridden_per_call(self, recording_client, tasks_service):
        ping = simple_task(recording_client)
        ping.options(base_url="http://localhost:8000").delay()
        assert tasks_service.last.http_request.url == "http://localhost:8000/ping"

    @pytest.mark.parametrize("base_url", ["worker.example.com", "ftp://worker", "", None])
    def test_base_url_without_http_scheme_is_rejected_by_the_builder(self, base_url):
        with pytest.raises(InvalidTaskOptionError, match="base_url"):
            DelayedRouteBuilder(base_url=base_url, queue_path=QUEUE)

    @pytest.mark.parametrize(
        "base_url", ["https://worker.example.com?key=1", "https://worker.example.com/#x", "https://"]
    )
    def test_base_url_with_a_query_fragment_or_no_host_is_rejected(self, base_url):
        with pytest.raises(InvalidTaskOptionError, match="base_url"):
            DelayedRouteBuilder(base_url=base_url, queue_path=QUEUE)

    @pytest.mark.parametrize(("base_url", "reason"), [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://worker:99999", "Port out of range"),
        ("http://worker:eighty", "Port could not be cast"),
    ])
    def test_base_url_that_urllib_cannot_parse_is_rejected(self, base_url, reason):
        with pytest.raises(InvalidTaskOptionError) as caught:
            DelayedRouteBuilder(base_url=base_url, queue_path=QUEUE)
        assert str(caught.value).startswith(f"base_url={base_url!r} is not a valid URL ({reason}")
        assert "'http://[::1]:8000'" in str(caught.value)

    def test_url_longer_than_2083_characters_is_rejected_and_nothing_is_sent(
        self, recording_client, tasks_service
    ):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/q")
        def q(text: str) -> None: ...

        with pytest.raises(InvalidTaskOptionError, match="2083"):
            q.delay(text="x" * 2100)
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []


# -- builder settings ----------------------------------------------------------------------


class TestBuilderSettings:
    @pytest.mark.parametrize(
        ("setting", "value"),
        [
            ("queue_path", "test-queue"),
            ("queue_path", "projects/p/locations/l/queues/bad_queue_id"),
            ("task_create_timeout", 0),
            ("task_create_timeout", -1.0),
            ("task_create_timeout", "10"),
            ("task_create_timeout", float("nan")),
            ("task_create_timeout", float("inf")),
            ("pre_create_hook", "not callable"),
            ("auto_create_queue", "yes"),
        ],
    )
    def test_invalid_builder_setting_is_rejected_when_building(self, setting, value):
        settings: dict[str, Any] = {"base_url": BASE_URL, "queue_path": QUEUE, setting: value}
        with pytest.raises(InvalidTaskOptionError, match=setting):
            DelayedRouteBuilder(**settings)

    def test_queue_path_sets_the_parent(self, recording_client, tasks_service):
        simple_task(recording_client).delay()
        assert tasks_service.requests[-1].parent == QUEUE

    def test_queue_path_can_be_overridden_per_call(self, recording_client, tasks_service):
        simple_task(recording_client).options(queue_path=OTHER_QUEUE).delay()
        assert tasks_service.requests[-1].parent == OTHER_QUEUE

    def test_pre_create_hook_edits_the_request_before_it_is_sent(self, recording_client,
                                                                 tasks_service):
        def add_header(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
            request.task.http_request.headers["X-Hooked"] = "yes"
            return request

        simple_task(recording_client, pre_create_hook=add_header).delay()
        assert tasks_service.last.http_request.headers["X-Hooked"] == "yes"

    def test_pre_create_hook_returning_none_is_named_and_nothing_is_sent(self, recording_client,
                                                                          tasks_service):
        def forgets_to_return(request: tasks_v2.CreateTaskRequest) -> Any:
            request.task.http_request.headers["X-Hooked"] = "yes"

        ping = simple_task(recording_client, pre_create_hook=forgets_to_return)
        with pytest.raises(InvalidTaskOptionError) as caught:
            ping.delay()
        assert str(caught.value) == (
            "pre_create_hook tests.test_delayed_route.TestBuilderSettings."
            "test_pre_create_hook_returning_none_is_named_and_nothing_is_sent.<locals>."
            "forgets_to_return returned None; return the (modified) request."
        )
        assert tasks_service.requests == []

    def test_pre_create_hook_returning_another_type_is_rejected(self, recording_client,
                                                                tasks_service):
        ping = simple_task(recording_client,
                           pre_create_hook=lambda request: request.task)
        with pytest.raises(InvalidTaskOptionError,
                           match=r"<lambda> returned a Task, not a CreateTaskRequest; "
                                 r"return the \(modified\) request\."):
            ping.delay()
        assert tasks_service.requests == []

    def test_pre_create_hook_can_be_replaced_per_call(self, recording_client, tasks_service):
        def hook(value: str) -> Callable[[Any], Any]:
            def add(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
                request.task.http_request.headers["X-Hook"] = value
                return request

            return add

        ping = simple_task(recording_client, pre_create_hook=hook("builder"))
        ping.options(pre_create_hook=hook("call")).delay()
        assert tasks_service.last.http_request.headers["X-Hook"] == "call"

    def test_pre_create_hook_can_be_disabled_per_call(self, recording_client, tasks_service):
        def add_header(request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
            request.task.http_request.headers["X-Hooked"] = "yes"
            return request

        ping = simple_task(recording_client, pre_create_hook=add_header)
        ping.options(pre_create_hook=None).delay()
        assert "X-Hooked" not in tasks_service.last.http_request.headers

    def test_task_create_timeout_is_passed_to_create_queue_and_create_task(
        self, recording_client, monkeypatch
    ):
        timeouts = spy_timeouts(recording_client, monkeypatch)
        simple_task(recording_client, task_create_timeout=3.5).delay()
        assert timeouts == [("create_queue", 3.5), ("create_task", 3.5)]

    def test_task_create_timeout_defaults_to_10_seconds(self, recording_client, monkeypatch):
        timeouts = spy_timeouts(recording_client, monkeypatch)
        simple_task(recording_client, auto_create_queue=False).delay()
        assert timeouts == [("create_task", 10.0)]

    def test_task_create_timeout_can_be_overridden_per_call(self, recording_client,
                                                            monkeypatch):
        timeouts = spy_timeouts(recording_client, monkeypatch)
        ping = simple_task(recording_client, auto_create_queue=False)
        ping.options(task_create_timeout=1.25).delay()
        assert timeouts == [("create_task", 1.25)]

    def test_client_can_be_overridden_per_call(self, recording_client, tasks_service):
        other_service = RecordingTasks()
        ping = simple_task(recording_client)
        ping.options(client=tasks_client(other_service)).delay()
        assert len(other_service.requests) == 1
        assert tasks_service.requests == []


def spy_timeouts(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record the `timeout` each RPC of the real `client` is called with."""
    calls: list[tuple[str, Any]] = []
    for name in ("create_queue", "create_task"):
        original = getattr(client, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append((_name, kwargs.get("timeout")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(client, name, spy)
    return calls


# -- options and @task_default_options ---------------------------------------------------------


class TestOptionNames:
    def test_unknown_option_raises_and_lists_the_valid_ones(self, recording_client):
        ping = simple_task(recording_client)
        with pytest.raises(InvalidTaskOptionError) as caught:
            ping.options(countdwn=5)
        message = str(caught.value)
        assert "'countdwn'" in message
        for name in ("countdown", "schedule_time", "task_id", "dispatch_deadline", "base_url",
                     "queue_path", "client", "pre_create_hook", "task_create_timeout",
                     "auto_create_queue"):
            assert name in message

    def test_unknown_default_option_raises_when_decorating(self):
        with pytest.raises(InvalidTaskOptionError, match=r"'eta'.*countdown"):
            task_default_options(eta=5)

    def test_endpoint_arguments_are_not_options(self, recording_client):
        ping = simple_task(recording_client)
        with pytest.raises(InvalidTaskOptionError, match="'n'"):
            ping.options(n=1)

    def test_options_object_has_delay_and_adelay(self, recording_client, tasks_service):
        delayer = simple_task(recording_client).options(task_id="abc")
        assert callable(delayer.adelay)
        delayer.delay(n=2)
        assert tasks_service.last.http_request.url == f"{BASE_URL}/ping?n=2"


class TestTaskDefaultOptions:
    def test_defaults_below_the_route_decorator_apply(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(task_id="below")
        def work() -> None: ...

        work.delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/below"

    def test_defaults_above_the_route_decorator_apply(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @task_default_options(task_id="above")
        @router.post("/work")
        def work() -> None: ...

        work.delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/above"

    def test_defaults_override_builder_settings(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(queue_path=OTHER_QUEUE, base_url="https://other.example.com")
        def work() -> None: ...

        work.delay()
        assert tasks_service.requests[-1].parent == OTHER_QUEUE
        assert tasks_service.last.http_request.url == "https://other.example.com/work"

    @pytest.mark.parametrize("order", ["above", "below"])
    def test_options_override_defaults(self, recording_client, tasks_service, order):
        router = APIRouter(route_class=builder(recording_client))

        def work() -> None: ...

        if order == "below":
            endpoint = router.post("/work")(task_default_options(task_id="default")(work))
        else:
            endpoint = task_default_options(task_id="default")(router.post("/work")(work))
        endpoint.options(task_id="explicit").delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/explicit"

    def test_defaults_apply_after_an_earlier_delay(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        def work() -> None: ...

        work.delay()
        task_default_options(task_id="later")(work)
        work.delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/later"

    def test_stacked_default_decorators_combine(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(task_id="stacked")
        @task_default_options(dispatch_deadline=60)
        def work() -> None: ...

        work.delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/stacked"
        assert tasks_service.last.dispatch_deadline == timedelta(seconds=60)

    def test_invalid_default_value_raises_on_delay_and_nothing_is_sent(
        self, recording_client, tasks_service
    ):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(countdown=-5)
        def work() -> None: ...

        with pytest.raises(InvalidTaskOptionError, match="countdown"):
            work.delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_defaults_do_not_leak_to_other_endpoints(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/a")
        @task_default_options(task_id="only-a")
        def a() -> None: ...

        @router.post("/b")
        def b() -> None: ...

        b.delay()
        assert tasks_service.last.name != f"{QUEUE}/tasks/only-a"
        assert tasks_service.last.name == ""  # the service names it


# -- countdown and schedule_time -------------------------------------------------------------


class TestCountdown:
    @pytest.mark.parametrize("countdown", [90, 90.0, timedelta(seconds=90)])
    def test_countdown_sets_schedule_time_to_now_plus_countdown(
        self, recording_client, tasks_service, countdown
    ):
        before = now_utc()
        simple_task(recording_client).options(countdown=countdown).delay()
        after = now_utc()
        when = tasks_service.last.schedule_time
        assert when.tzinfo is not None
        assert before + timedelta(seconds=90) <= when <= after + timedelta(seconds=90)

    def test_countdown_zero_is_allowed_and_means_now(self, recording_client, tasks_service):
        before = now_utc()
        simple_task(recording_client).options(countdown=0).delay()
        assert before <= tasks_service.last.schedule_time <= now_utc()

    def test_without_countdown_the_schedule_time_is_left_unset(self, recording_client,
                                                               tasks_service):
        simple_task(recording_client).delay()
        assert "schedule_time" not in tasks_service.last

    @pytest.mark.parametrize("countdown", [-1, -0.5, timedelta(seconds=-1)])
    def test_negative_countdown_is_rejected(self, recording_client, countdown):
        with pytest.raises(InvalidTaskOptionError, match="negative"):
            simple_task(recording_client).options(countdown=countdown)

    @pytest.mark.parametrize("countdown", ["60", True, datetime(2030, 1, 1, tzinfo=timezone.utc)])
    def test_countdown_of_the_wrong_type_is_rejected(self, recording_client, countdown):
        with pytest.raises(InvalidTaskOptionError, match="countdown"):
            simple_task(recording_client).options(countdown=countdown)

    @pytest.mark.parametrize("countdown", [float("nan"), float("inf"), 1e20, 10**30])
    def test_unusable_countdown_number_is_an_option_error(self, recording_client, countdown):
        with pytest.raises(InvalidTaskOptionError, match="countdown"):
            simple_task(recording_client).options(countdown=countdown)

    def test_huge_countdown_is_rejected_by_the_30_day_rule_not_an_overflow(
        self, recording_client, tasks_service
    ):
        delayer = simple_task(recording_client).options(countdown=timedelta(days=999_999_999))
        with pytest.raises(InvalidTaskOptionError, match="30 days"):
            delayer.delay()
        assert tasks_service.requests == []

    def test_default_countdown_applies(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(countdown=300)
        def work() -> None: ...

        before = now_utc()
        work.delay()
        assert_sent_in(tasks_service, before, timedelta(seconds=300))


class TestScheduleTime:
    def test_aware_schedule_time_is_sent_as_the_same_instant(self, recording_client,
                                                             tasks_service):
        ist = timezone(timedelta(hours=5, minutes=30))
        when = (now_utc() + timedelta(hours=2)).astimezone(ist).replace(microsecond=0)
        simple_task(recording_client).options(schedule_time=when).delay()
        assert tasks_service.last.schedule_time == when

    @pytest.mark.parametrize("when", [
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
    ])
    def test_schedule_time_outside_datetime_range_in_utc_is_rejected(self, recording_client,
                                                                    when):
        with pytest.raises(InvalidTaskOptionError,
                           match=r"schedule_time=datetime.*is outside the range of datetime "
                                 r"once converted to UTC"):
            simple_task(recording_client).options(schedule_time=when)

    def test_naive_schedule_time_is_rejected(self, recording_client):
        with pytest.raises(InvalidTaskOptionError, match="timezone-aware"):
            simple_task(recording_client).options(schedule_time=datetime(2030, 1, 1))

    def test_countdown_and_schedule_time_in_one_call_are_rejected(self, recording_client,
                                                                  tasks_service):
        ping = simple_task(recording_client)
        with pytest.raises(InvalidTaskOptionError, match="either countdown or schedule_time"):
            ping.options(countdown=10, schedule_time=now_utc() + timedelta(minutes=1))
        assert tasks_service.requests == []

    def test_countdown_and_schedule_time_in_one_default_decorator_are_rejected_on_delay(
        self, recording_client, tasks_service
    ):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(countdown=10, schedule_time=now_utc() + timedelta(minutes=1))
        def work() -> None: ...

        with pytest.raises(InvalidTaskOptionError, match="either countdown or schedule_time"):
            work.delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_schedule_time_per_call_replaces_a_default_countdown(self, recording_client,
                                                                 tasks_service):
        router = APIRouter(route_class=builder(recording_client))
        when = (now_utc() + timedelta(days=2)).replace(microsecond=0)

        @router.post("/work")
        @task_default_options(countdown=60)
        def work() -> None: ...

        work.options(schedule_time=when).delay()
        assert tasks_service.last.schedule_time == when

    def test_countdown_per_call_replaces_a_default_schedule_time(self, recording_client,
                                                                 tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        @task_default_options(schedule_time=now_utc() + timedelta(days=2))
        def work() -> None: ...

        before = now_utc()
        work.options(countdown=60).delay()
        assert_sent_in(tasks_service, before, timedelta(seconds=60))


class TestThirtyDayLimit:
    def test_countdown_just_under_30_days_is_sent(self, recording_client, tasks_service):
        simple_task(recording_client).options(countdown=timedelta(days=30, minutes=-1)).delay()
        assert len(tasks_service.requests) == 1

    def test_countdown_over_30_days_is_rejected_and_nothing_is_sent(self, recording_client,
                                                                    tasks_service):
        delayer = simple_task(recording_client).options(countdown=timedelta(days=30, minutes=1))
        with pytest.raises(InvalidTaskOptionError, match="30 days"):
            delayer.delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_schedule_time_over_30_days_ahead_is_rejected_and_nothing_is_sent(
        self, recording_client, tasks_service
    ):
        when = now_utc() + timedelta(days=31)
        with pytest.raises(InvalidTaskOptionError, match="30 days"):
            simple_task(recording_client).options(schedule_time=when).delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_schedule_time_29_days_ahead_is_sent(self, recording_client, tasks_service):
        when = (now_utc() + timedelta(days=29)).replace(microsecond=0)
        simple_task(recording_client).options(schedule_time=when).delay()
        assert tasks_service.last.schedule_time == when


# -- task_id and dispatch_deadline -----------------------------------------------------------


class TestTaskId:
    def test_task_id_names_the_task_in_the_queue(self, recording_client, tasks_service):
        task = simple_task(recording_client).options(task_id="order-42_a").delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/order-42_a"
        assert task.name == f"{QUEUE}/tasks/order-42_a"

    def test_task_id_is_named_in_the_overridden_queue(self, recording_client, tasks_service):
        ping = simple_task(recording_client)
        ping.options(queue_path=OTHER_QUEUE, task_id="abc").delay()
        assert tasks_service.last.name == f"{OTHER_QUEUE}/tasks/abc"

    def test_task_id_of_500_characters_is_accepted(self, recording_client, tasks_service):
        simple_task(recording_client).options(task_id="a" * 500).delay()
        assert tasks_service.last.name == f"{QUEUE}/tasks/{'a' * 500}"

    @pytest.mark.parametrize(
        "task_id", ["", "a" * 501, "has space", "a/b", "dot.ted", "ünïcode", "new\nline", 42]
    )
    def test_invalid_task_id_is_rejected_locally(self, recording_client, tasks_service, task_id):
        with pytest.raises(InvalidTaskOptionError, match="task id"):
            simple_task(recording_client).options(task_id=task_id).delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []


class TestDispatchDeadline:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (15, timedelta(seconds=15)),
            (90.5, timedelta(seconds=90.5)),
            (timedelta(minutes=30), timedelta(minutes=30)),
        ],
    )
    def test_dispatch_deadline_is_sent(self, recording_client, tasks_service, value, expected):
        simple_task(recording_client).options(dispatch_deadline=value).delay()
        assert tasks_service.last.dispatch_deadline == expected

    def test_without_dispatch_deadline_it_is_left_unset(self, recording_client, tasks_service):
        simple_task(recording_client).delay()
        assert "dispatch_deadline" not in tasks_service.last

    @pytest.mark.parametrize(
        "value", [14, 14.999, timedelta(minutes=30, seconds=1), 0, -20, float("nan"), 1e20]
    )
    def test_dispatch_deadline_outside_15_seconds_to_30_minutes_is_rejected(
        self, recording_client, value
    ):
        with pytest.raises(InvalidTaskOptionError, match="dispatch_deadline"):
            simple_task(recording_client).options(dispatch_deadline=value)


# -- queue auto-creation -----------------------------------------------------------------------


class TestQueueAutoCreation:
    def test_first_delay_creates_the_queue_under_its_location(self, recording_client,
                                                              tasks_service):
        simple_task(recording_client).delay()
        (request,) = tasks_service.queue_requests
        assert request.parent == LOCATION
        assert request.queue.name == QUEUE
        assert len(tasks_service.requests) == 1

    def test_queue_is_created_once_per_client_and_queue(self, recording_client, tasks_service):
        ping = simple_task(recording_client)
        ping.delay()
        ping.delay()
        simple_task(recording_client).delay()  # another router, same client and queue
        assert len(tasks_service.queue_requests) == 1
        assert len(tasks_service.requests) == 3

    def test_another_queue_is_created_too(self, recording_client, tasks_service):
        ping = simple_task(recording_client)
        ping.delay()
        ping.options(queue_path=OTHER_QUEUE).delay()
        assert [r.queue.name for r in tasks_service.queue_requests] == [QUEUE, OTHER_QUEUE]

    def test_another_client_creates_the_queue_again(self, recording_client, tasks_service):
        simple_task(recording_client).delay()
        simple_task(tasks_client(tasks_service)).delay()
        # The second CreateQueue answers AlreadyExists, which is fine.
        assert len(tasks_service.queue_requests) == 2
        assert len(tasks_service.requests) == 2

    def test_already_existing_queue_counts_as_created(self, recording_client, tasks_service):
        tasks_service.queues[QUEUE] = tasks_v2.Queue(name=QUEUE)
        ping = simple_task(recording_client)
        ping.delay()
        ping.delay()
        assert len(tasks_service.queue_requests) == 1
        assert len(tasks_service.requests) == 2

    def test_other_queue_creation_error_is_raised_and_no_task_is_created(
        self, recording_client, tasks_service
    ):
        tasks_service.create_queue_error = exceptions.PermissionDenied("cloudtasks.queues.create")
        with pytest.raises(exceptions.PermissionDenied):
            simple_task(recording_client).delay()
        assert tasks_service.requests == []

    def test_failed_queue_creation_is_retried_on_the_next_delay(self, recording_client,
                                                                tasks_service):
        ping = simple_task(recording_client)
        tasks_service.create_queue_error = exceptions.PermissionDenied("cloudtasks.queues.create")
        with pytest.raises(exceptions.PermissionDenied):
            ping.delay()
        tasks_service.create_queue_error = None
        ping.delay()
        assert len(tasks_service.queue_requests) == 2
        assert len(tasks_service.requests) == 1

    def test_auto_create_queue_false_never_creates_the_queue(self, recording_client,
                                                             tasks_service):
        ping = simple_task(recording_client, auto_create_queue=False)
        ping.delay()
        ping.delay()
        assert tasks_service.queue_requests == []
        assert len(tasks_service.requests) == 2

    def test_auto_create_queue_can_be_disabled_per_call(self, recording_client, tasks_service):
        simple_task(recording_client).options(auto_create_queue=False).delay()
        assert tasks_service.queue_requests == []
        assert len(tasks_service.requests) == 1

    @pytest.mark.asyncio
    async def test_adelay_creates_the_queue_once(self, tasks_service):
        ping = simple_task(tasks_async_client(tasks_service))
        await ping.adelay()
        await ping.adelay()
        assert [r.queue.name for r in tasks_service.queue_requests] == [QUEUE]
        assert len(tasks_service.requests) == 2

    @pytest.mark.asyncio
    async def test_adelay_queue_creation_error_is_raised_and_retried(self, tasks_service):
        ping = simple_task(tasks_async_client(tasks_service))
        tasks_service.create_queue_error = exceptions.PermissionDenied("cloudtasks.queues.create")
        with pytest.raises(exceptions.PermissionDenied):
            await ping.adelay()
        assert tasks_service.requests == []
        tasks_service.create_queue_error = None
        await ping.adelay()
        assert len(tasks_service.queue_requests) == 2
        assert len(tasks_service.requests) == 1

    @pytest.mark.asyncio
    async def test_adelay_with_auto_create_queue_false_never_creates_the_queue(
        self, tasks_service
    ):
        await simple_task(tasks_async_client(tasks_service), auto_create_queue=False).adelay()
        assert tasks_service.queue_requests == []
        assert len(tasks_service.requests) == 1


# -- nothing is sent when something is invalid ---------------------------------------------


class TestNothingSentOnInvalidInput:
    def test_missing_argument(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        def work(n: int) -> None: ...

        with pytest.raises(MissingParamError):
            work.delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_task_over_one_mebibyte(self, recording_client, tasks_service):
        router = APIRouter(route_class=builder(recording_client))

        @router.post("/work")
        def work(blob: Annotated[str, Body(embed=True)]) -> None: ...

        with pytest.raises(InvalidTaskOptionError, match="1 MiB"):
            work.delay(blob="x" * (1024 * 1024))
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_delay_with_an_asyncio_client_says_to_use_adelay(self, tasks_service):
        ping = simple_task(tasks_async_client(tasks_service))
        with pytest.raises(InvalidTaskOptionError, match="adelay"):
            ping.delay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    @pytest.mark.asyncio
    async def test_adelay_with_invalid_arguments(self, tasks_service):
        router = APIRouter(route_class=builder(tasks_async_client(tasks_service)))

        @router.post("/work")
        def work(n: int) -> None: ...

        with pytest.raises(MissingParamError):
            await work.adelay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    @pytest.mark.asyncio
    async def test_adelay_with_schedule_time_over_30_days(self, tasks_service):
        delayer = simple_task(tasks_async_client(tasks_service)).options(
            schedule_time=now_utc() + timedelta(days=40)
        )
        with pytest.raises(InvalidTaskOptionError, match="30 days"):
            await delayer.adelay()
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []


# -- adelay ----------------------------------------------------------------------------------


class BlockingTasks(RecordingTasks):
    """A service whose CreateTask waits until the test's event loop releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.threads: list[int] = []
        self.released_in_time: bool | None = None

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        self.threads.append(threading.get_ident())
        self.entered.set()
        self.released_in_time = self.release.wait(timeout=10)
        return super().create_task(request)


class TestAdelay:
    @pytest.mark.asyncio
    async def test_adelay_with_an_asyncio_client_returns_the_created_task(self, tasks_service):
        ping = simple_task(tasks_async_client(tasks_service))
        task = await ping.adelay(n=4)
        assert isinstance(task, tasks_v2.Task)
        assert task.name.startswith(f"{QUEUE}/tasks/")
        assert tasks_service.last.http_request.url == f"{BASE_URL}/ping?n=4"

    @pytest.mark.asyncio
    async def test_options_adelay_applies_the_options(self, tasks_service):
        ping = simple_task(tasks_async_client(tasks_service))
        before = now_utc()
        task = await ping.options(task_id="async-1", countdown=120).adelay()
        assert task.name == f"{QUEUE}/tasks/async-1"
        assert_sent_in(tasks_service, before, timedelta(seconds=120))

    @pytest.mark.asyncio
    async def test_adelay_with_a_sync_client_sends_through_it(self, recording_client,
                                                              tasks_service):
        task = await simple_task(recording_client).adelay(n=5)
        assert task.http_request.url == f"{BASE_URL}/ping?n=5"
        assert len(tasks_service.requests) == 1
        assert len(tasks_service.queue_requests) == 1

    @pytest.mark.asyncio
    async def test_adelay_with_a_sync_client_does_not_block_the_event_loop(self):
        service = BlockingTasks()
        ping = simple_task(tasks_client(service))
        pending = asyncio.ensure_future(ping.adelay())
        for _ in range(500):  # the loop keeps running while CreateTask is in progress
            if service.entered.is_set():
                break
            await asyncio.sleep(0.01)
        service.release.set()
        task = await pending
        assert service.released_in_time is True
        assert service.threads != [threading.get_ident()]
        assert task.http_request.url == f"{BASE_URL}/ping"

    @pytest.mark.asyncio
    async def test_async_client_set_per_call_is_used_by_adelay(self, recording_client,
                                                               tasks_service):
        other = RecordingTasks()
        ping = simple_task(recording_client)
        await ping.options(client=tasks_async_client(other)).adelay()
        assert len(other.requests) == 1
        assert tasks_service.requests == []


# -- clients are created on first use ------------------------------------------------------


class TestLazyClients:
    def test_building_routers_and_apps_needs_no_credentials(self, no_credentials):
        router = APIRouter(route_class=builder(None), prefix="/tasks")

        @router.post("/work")
        def work(n: int) -> None:
            received.append(n)

        app = FastAPI()
        app.include_router(router, prefix="/api")
        with TestClient(app) as client:
            assert client.post("/api/tasks/work?n=1").status_code == 200
        assert received == [1]
        assert no_credentials == []

    def test_delay_without_a_client_raises_the_credentials_error_when_called(
        self, no_credentials
    ):
        ping = simple_task(None)
        assert no_credentials == []
        with pytest.raises(DefaultCredentialsError, match="no credentials in this test"):
            ping.delay()
        assert len(no_credentials) == 1

    def test_failed_default_client_is_built_again_on_the_next_delay(self, no_credentials):
        ping = simple_task(None)
        for _ in range(2):
            with pytest.raises(DefaultCredentialsError):
                ping.delay()
        assert len(no_credentials) == 2

    def test_invalid_arguments_are_reported_before_any_client_is_built(self, no_credentials):
        with pytest.raises(InvalidTaskOptionError, match="task id"):
            simple_task(None).options(task_id="bad id").delay()
        assert no_credentials == []

    @pytest.mark.asyncio
    async def test_adelay_without_a_client_raises_the_credentials_error_when_called(
        self, no_credentials
    ):
        ping = simple_task(None)
        assert no_credentials == []
        with pytest.raises(DefaultCredentialsError, match="no credentials in this test"):
            await ping.adelay()
        assert len(no_credentials) == 1


# -- override_clients ------------------------------------------------------------------------


class TestOverrideClients:
    def test_delay_inside_the_block_goes_to_the_override(self, recording_client,
                                                         tasks_service):
        other = RecordingTasks()
        ping = simple_task(recording_client)
        with override_clients(ClientOverride(tasks=tasks_client(other))):
            ping.delay(n=1)
        assert len(other.requests) == 1
        assert tasks_service.requests == []
        assert tasks_service.queue_requests == []

    def test_delay_after_the_block_goes_to_the_configured_client_again(self, recording_client,
                                                                        tasks_service):
        other = RecordingTasks()
        ping = simple_task(recording_client)
        with override_clients(ClientOverride(tasks=tasks_client(other))):
            ping.delay()
        ping.delay()
        assert len(other.requests) == 1
        assert len(tasks_service.requests) == 1

    def test_override_applies_to_a_per_call_client_too(self, recording_client, tasks_service):
        other = RecordingTasks()
        ping = simple_task(None)
        with override_clients(ClientOverride(tasks=tasks_client(other))):
            ping.options(client=recording_client).delay()
        assert len(other.requests) == 1
        assert tasks_service.requests == []

    def test_override_needs_no_credentials_for_a_builder_without_client(self, no_credentials):
        other = RecordingTasks()
        with override_clients(ClientOverride(tasks=tasks_client(other))):
            simple_task(None).delay()
        assert len(other.requests) == 1
        assert no_credentials == []

    def test_override_sync_client_serves_delay_of_an_asyncio_configured_builder(
        self, tasks_service
    ):
        other = RecordingTasks()
        ping = simple_task(tasks_async_client(tasks_service))
        with override_clients(ClientOverride(tasks=tasks_client(other))):
            ping.delay()
        assert len(other.requests) == 1
        assert tasks_service.requests == []

    def test_innermost_override_wins(self, recording_client):
        outer, inner = RecordingTasks(), RecordingTasks()
        ping = simple_task(recording_client)
        with override_clients(ClientOverride(tasks=tasks_client(outer))):
            with override_clients(ClientOverride(tasks=tasks_client(inner))):
                ping.delay()
            ping.delay()
        assert len(inner.requests) == 1
        assert len(outer.requests) == 1

    def test_override_ends_when_the_block_raises(self, recording_client, tasks_service):
        other = RecordingTasks()
        ping = simple_task(recording_client)
        with (
            pytest.raises(RuntimeError),
            override_clients(ClientOverride(tasks=tasks_client(other))),
        ):
            raise RuntimeError
        ping.delay()
        assert len(tasks_service.requests) == 1
        assert other.requests == []

    @pytest.mark.asyncio
    async def test_adelay_inside_the_block_goes_to_the_async_override(self, recording_client,
                                                                      tasks_service):
        other = RecordingTasks()
        ping = simple_task(recording_client)
        override = ClientOverride(tasks=tasks_client(RecordingTasks()),
                                  tasks_async=tasks_async_client(other))
        with override_clients(override):
            await ping.adelay()
        assert len(other.requests) == 1
        assert tasks_service.requests == []

    @pytest.mark.asyncio
    async def test_adelay_uses_the_sync_override_when_no_async_one_is_given(self,
                                                                           tasks_service):
        other = RecordingTasks()
        ping = simple_task(tasks_async_client(tasks_service))
        with override_clients(ClientOverride(tasks=tasks_client(other))):
            await ping.adelay()
        assert len(other.requests) == 1
        assert tasks_service.requests == []
