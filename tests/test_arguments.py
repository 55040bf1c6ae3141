"""Call-site validation and the round trip: what `.delay()` sends is what the endpoint gets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any
from uuid import UUID

import pytest
from fastapi import APIRouter, Body, Cookie, Depends, FastAPI, File, Form, Header, Path, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    BadMethodException,
    CloudTasksHeaders,
    DelayedRouteBuilder,
    FastAPICloudTasksError,
    MissingParamError,
    TaskArgumentsError,
    UndeliverableValueError,
    UnknownParamError,
    WrongTypeError,
)
from tests.conftest import BASE_URL, QUEUE
from tests.recording import RecordingTasks, deliver_task

received: dict[str, Any] = {}


class Color(str, Enum):
    red = "red"
    blue = "blue"


class Point(BaseModel):
    x: int
    y: int


class Order(BaseModel):
    id: UUID
    amount: Decimal
    placed_at: datetime
    color: Color
    points: list[Point]
    note: str | None = None


class Filters(BaseModel):
    size: int = 10
    labels: list[str] = []


def tenant(x_tenant: Annotated[str, Header()]) -> str:
    return x_tenant


def make_app(client: Any) -> tuple[FastAPI, APIRouter]:
    router = APIRouter(
        route_class=DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE, client=client),
        prefix="/tasks",
    )

    @router.post("/path/{name}/{when}/{uid}/{count}")
    def path_params(name: str, when: datetime, uid: UUID, count: int) -> None:
        received.update(name=name, when=when, uid=uid, count=count)

    @router.post("/files/{file_path:path}")
    def path_convertor(file_path: str) -> None:
        received.update(file_path=file_path)

    @router.post("/query")
    def query_params(
        text: str,
        tags: Annotated[list[str], Query()],
        amount: Decimal,
        color: Color = Color.red,
        flag: bool = False,
        since: datetime | None = None,
        limit: Annotated[int, Query(alias="max-items")] = 5,
        page: int | None = 1,
    ) -> None:
        received.update(text=text, tags=tags, amount=amount, color=color, flag=flag,
                        since=since, limit=limit, page=page)

    @router.post("/query-model")
    def query_model(filters: Annotated[Filters, Query()]) -> None:
        received.update(filters=filters)

    @router.post("/headers-cookies")
    def headers_cookies(
        x_request_id: Annotated[str, Header()],
        session: Annotated[str, Cookie()],
        theme: Annotated[str, Cookie()] = "light",
    ) -> None:
        received.update(x_request_id=x_request_id, session=session, theme=theme)

    @router.post("/body-single")
    def body_single(order: Order) -> None:
        received.update(order=order)

    @router.post("/body-several")
    def body_several(order: Order, point: Point, priority: Annotated[int, Body()]) -> None:
        received.update(order=order, point=point, priority=priority)

    @router.post("/body-embedded")
    def body_embedded(point: Annotated[Point, Body(embed=True)]) -> None:
        received.update(point=point)

    @router.post("/with-dependency")
    def with_dependency(
        value: int,
        who: Annotated[str, Depends(tenant)],
        ct: Annotated[CloudTasksHeaders, Depends()],
    ) -> None:
        received.update(value=value, who=who, retry_count=ct.retry_count)

    @router.put("/{item}")
    def put_item(item: Annotated[str, Path()], point: Point) -> None:
        received.update(item=item, point=point)

    app = FastAPI()
    app.include_router(router)
    return app, router


@pytest.fixture
def app_and_router(recording_client: Any) -> tuple[FastAPI, APIRouter]:
    received.clear()
    return make_app(recording_client)


@pytest.fixture
def app(app_and_router: tuple[FastAPI, APIRouter]) -> FastAPI:
    return app_and_router[0]


@pytest.fixture
def endpoints(app_and_router: tuple[FastAPI, APIRouter]) -> dict[str, Any]:
    return {route.name: route.endpoint for route in app_and_router[1].routes}


def round_trip(app: FastAPI, tasks_service: RecordingTasks, task: Any, **kwargs: Any) -> dict:
    task.delay(**kwargs)
    with TestClient(app) as client:
        response = deliver_task(client, tasks_service.last)
    assert response.status_code == 200, response.text
    return dict(received)


ORDER = Order(
    id=UUID("12345678-1234-5678-1234-567812345678"),
    amount=Decimal("1234.5600"),
    placed_at=datetime(2026, 3, 8, 2, 30, tzinfo=timezone(timedelta(hours=-5))),
    color=Color.blue,
    points=[Point(x=1, y=2), Point(x=-3, y=4)],
    note="naïve café ☕ \"quoted\" & <tags>",
)


class TestRoundTrip:
    def test_path_parameters_with_unicode_and_reserved_characters(self, app, tasks_service,
                                                                  endpoints):
        values = dict(
            name="Pav Bhaji? #1 & 50% ünïcödé",
            when=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=5.5))),
            uid=UUID("00000000-0000-0000-0000-000000000001"),
            count=-7,
        )
        assert round_trip(app, tasks_service, endpoints["path_params"], **values) == values

    def test_path_convertor_keeps_slashes(self, app, tasks_service, endpoints):
        got = round_trip(app, tasks_service, endpoints["path_convertor"], file_path="a/b c/d.txt")
        assert got == {"file_path": "a/b c/d.txt"}

    def test_query_lists_enums_decimals_and_aliases(self, app, tasks_service, endpoints):
        values = dict(
            text="a=b&c=d + e ☃",
            tags=["one", "two words", "three&four", ""],
            amount=Decimal("0.1000000000000000055511151231257827"),
            color=Color.blue,
            flag=True,
            since=datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc),
            limit=42,
            page=2,
        )
        assert round_trip(app, tasks_service, endpoints["query_params"], **values) == values

    def test_query_parameter_model(self, app, tasks_service, endpoints):
        filters = Filters(size=3, labels=["x", "y z"])
        got = round_trip(app, tasks_service, endpoints["query_model"], filters=filters)
        assert got == {"filters": filters}

    def test_headers_and_cookies(self, app, tasks_service, endpoints):
        values = dict(x_request_id="req-42", session='abc; def="g"\\h', theme="dark mode")
        assert round_trip(app, tasks_service, endpoints["headers_cookies"], **values) == values

    def test_single_body_model_is_sent_unwrapped(self, app, tasks_service, endpoints):
        got = round_trip(app, tasks_service, endpoints["body_single"], order=ORDER)
        assert got == {"order": ORDER}
        body = tasks_service.last.http_request.body
        assert body.startswith(b'{"id":"12345678-')

    def test_single_body_accepts_a_dict(self, app, tasks_service, endpoints):
        as_dict = ORDER.model_dump(mode="json")
        got = round_trip(app, tasks_service, endpoints["body_single"], order=as_dict)
        assert got == {"order": ORDER}

    def test_several_body_parameters_are_embedded(self, app, tasks_service, endpoints):
        values = dict(order=ORDER, point=Point(x=5, y=6), priority=3)
        assert round_trip(app, tasks_service, endpoints["body_several"], **values) == values

    def test_embedded_single_body(self, app, tasks_service, endpoints):
        got = round_trip(app, tasks_service, endpoints["body_embedded"], point=Point(x=1, y=1))
        assert got == {"point": Point(x=1, y=1)}
        assert tasks_service.last.http_request.body == b'{"point":{"x":1,"y":1}}'

    def test_sub_dependency_parameters_are_required_but_cloud_tasks_headers_are_not(
        self, app, tasks_service, endpoints
    ):
        got = round_trip(app, tasks_service, endpoints["with_dependency"], value=1,
                         x_tenant="acme")
        assert got == {"value": 1, "who": "acme", "retry_count": 0}
        with pytest.raises(MissingParamError, match="x_tenant"):
            endpoints["with_dependency"].delay(value=1)

    def test_put_with_path_and_body(self, app, tasks_service, endpoints):
        got = round_trip(app, tasks_service, endpoints["put_item"], item="x y",
                         point=Point(x=0, y=0))
        assert got == {"item": "x y", "point": Point(x=0, y=0)}
        assert tasks_service.last.http_request.http_method == 4  # PUT

    def test_json_body_has_a_content_type(self, app, tasks_service, endpoints):
        endpoints["body_embedded"].delay(point=Point(x=1, y=2))
        assert tasks_service.last.http_request.headers["Content-Type"] == "application/json"

    def test_no_body_no_content_type(self, app, tasks_service, endpoints):
        endpoints["query_model"].delay()
        http = tasks_service.last.http_request
        assert http.body == b""
        assert "Content-Type" not in http.headers


class TestCallSiteErrors:
    def test_every_problem_is_reported_at_once(self, app, tasks_service, endpoints):
        with pytest.raises(TaskArgumentsError) as caught:
            endpoints["query_params"].delay(text=5, amount="not a number", colour="red")
        error = caught.value
        problems = {(p.param, p.kind) for p in error.problems}
        assert problems == {("text", "type"), ("amount", "type"), ("colour", "unknown"),
                            ("tags", "missing")}
        message = str(error)
        assert "query_params (POST /tasks/query)" in message
        assert "4 invalid arguments" in message
        assert "colour: not a parameter; expected" in message
        assert tasks_service.requests == []

    def test_kinds_have_specific_classes(self, endpoints):
        with pytest.raises(MissingParamError):
            endpoints["body_single"].delay()
        with pytest.raises(WrongTypeError, match=r"order \(body\): points.0.x"):
            endpoints["body_single"].delay(order={**ORDER.model_dump(), "points": [{"x": "a"}]})
        with pytest.raises(UnknownParamError, match="nope"):
            endpoints["query_model"].delay(nope=1)
        assert issubclass(TaskArgumentsError, FastAPICloudTasksError)
        assert issubclass(TaskArgumentsError, ValueError)

    def test_slash_in_plain_path_parameter_is_undeliverable(self, endpoints, tasks_service):
        with pytest.raises(UndeliverableValueError, match=r"name \(path\).*\{name:path\}"):
            endpoints["path_params"].delay(
                name="a/b", when=datetime.now(timezone.utc), uid=UUID(int=1), count=1
            )
        assert tasks_service.requests == []

    def test_empty_path_parameter_is_undeliverable(self, endpoints):
        with pytest.raises(UndeliverableValueError, match="cannot be a path segment"):
            endpoints["put_item"].delay(item="", point=Point(x=1, y=1))

    def test_header_with_newline_is_undeliverable(self, endpoints):
        with pytest.raises(UndeliverableValueError, match="printable ASCII"):
            endpoints["headers_cookies"].delay(x_request_id="a\r\nInjected: 1", session="s")

    def test_none_for_a_parameter_with_another_default_is_undeliverable(self, endpoints):
        with pytest.raises(UndeliverableValueError, match="would arrive as 1, not None"):
            endpoints["query_params"].delay(text="t", tags=[], amount=1, page=None)

    def test_nan_cannot_be_sent_as_json(self, recording_client):
        router = APIRouter(route_class=DelayedRouteBuilder(
            base_url=BASE_URL, queue_path=QUEUE, client=recording_client))

        @router.post("/nan")
        def takes_float(value: Annotated[float, Body(embed=True)]) -> None: ...

        with pytest.raises(UndeliverableValueError, match="JSON"):
            takes_float.delay(value=float("nan"))


class TestRoutesThatCannotBeTasks:
    def builder(self) -> Any:
        return DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE)

    def test_several_methods(self):
        router = APIRouter(route_class=self.builder())
        with pytest.raises(BadMethodException, match="exactly one HTTP method"):
            router.add_api_route("/x", lambda: None, methods=["POST", "PUT"])

    def test_get_route_is_one_method(self):
        router = APIRouter(route_class=self.builder())

        @router.get("/x")
        def read() -> None: ...

        assert read._delayed_task.signature.method == "GET"

    def test_body_on_get(self):
        router = APIRouter(route_class=self.builder())
        with pytest.raises(BadMethodException, match="POST, PUT or PATCH"):

            @router.get("/x")
            def read(point: Point) -> None: ...

    def test_form_and_file_parameters(self):
        pytest.importorskip("multipart")
        router = APIRouter(route_class=self.builder())
        with pytest.raises(BadMethodException, match="form data or a file upload"):

            @router.post("/form")
            def form(name: Annotated[str, Form()]) -> None: ...

        with pytest.raises(BadMethodException, match="form data or a file upload"):

            @router.post("/file")
            def upload(data: Annotated[bytes, File()]) -> None: ...


class TestExactRoundTrips:
    """Plain scalars skip the parse-back because their text form is exact; the rest don't."""

    def test_int_convertor_rejects_a_negative_number_at_the_call_site(self, recording_client):
        router = APIRouter(route_class=DelayedRouteBuilder(
            base_url=BASE_URL, queue_path=QUEUE, client=recording_client))

        @router.post("/items/{item_id:int}")
        def item(item_id: int) -> None: ...

        assert not item._delayed_task.signature.params["item_id"].exact
        with pytest.raises(UndeliverableValueError, match="item_id"):
            item.delay(item_id=-7)

    def test_plain_scalars_are_exact(self, endpoints):
        params = endpoints["path_params"]._delayed_task.signature.params
        assert params["name"].exact
        assert params["count"].exact
        assert not params["when"].exact  # datetimes are re-parsed


def task_router(client: Any) -> APIRouter:
    return APIRouter(route_class=DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE,
                                                     client=client))


class TestHostileValues:
    """Values that used to escape as raw Python errors, or be sent and never arrive."""

    @pytest.fixture
    def hostile(self, recording_client: Any) -> dict[str, Any]:
        router = task_router(recording_client)

        @router.post("/hostile/{name}")
        def everywhere(
            name: str,
            text: str = "",
            count: int = 0,
            x_count: Annotated[int, Header()] = 0,
            session: Annotated[str, Cookie()] = "",
            note: Annotated[str, Body(embed=True)] = "",
            raw: Annotated[bytes, Body(embed=True)] = b"",
            mapping: Annotated[dict[str, str], Body(embed=True)] = {},  # noqa: B006
        ) -> None: ...

        @router.post("/ints/{n}")
        def int_path(n: int) -> None: ...

        return {"everywhere": everywhere, "int_path": int_path}

    @pytest.mark.parametrize(("location", "kwargs"), [
        ("path", {"name": "a\ud800b"}),
        ("query", {"name": "n", "text": "\udfff"}),
        ("cookie", {"name": "n", "session": "s\ud800"}),
        ("body", {"name": "n", "note": "\ud83d"}),
    ])
    def test_a_lone_surrogate_is_undeliverable(self, hostile, tasks_service, location, kwargs):
        with pytest.raises(UndeliverableValueError,
                           match=rf"\({location}\): contains the lone surrogate '\\ud[89a-f]"):
            hostile["everywhere"].delay(**kwargs)
        assert tasks_service.requests == []

    def test_a_lone_surrogate_in_a_dict_key_is_undeliverable(self, hostile, tasks_service):
        # pydantic's JSON serialization replaces it, so the parse-back tells.
        with pytest.raises(UndeliverableValueError,
                           match=r"mapping \(body\): would arrive as \{'\ufffd"):
            hostile["everywhere"].delay(name="n", mapping={"\ud800": "key"})
        assert tasks_service.requests == []

    def test_bytes_that_are_not_utf8_are_undeliverable_in_a_body(self, hostile, tasks_service):
        with pytest.raises(UndeliverableValueError,
                           match=r"raw \(body\): cannot be serialized.*base64"):
            hostile["everywhere"].delay(name="n", raw=b"\xff\xfe")
        assert tasks_service.requests == []

    @pytest.mark.parametrize(("endpoint", "kwargs", "location"), [
        ("int_path", {"n": 10**4300}, "path"),
        ("everywhere", {"name": "n", "count": -(10**4300)}, "query"),
        ("everywhere", {"name": "n", "x_count": 10**5000}, "header"),
    ])
    def test_an_int_over_the_digit_limit_is_undeliverable(self, hostile, tasks_service,
                                                         endpoint, kwargs, location):
        with pytest.raises(UndeliverableValueError,
                           match=rf"\({location}\): an int of about [\d,]+ digits is over "
                                 r"Python's limit of 4,300 digits"):
            hostile[endpoint].delay(**kwargs)
        assert tasks_service.requests == []

    def test_a_cookie_character_above_latin1_is_undeliverable(self, hostile, tasks_service):
        with pytest.raises(UndeliverableValueError,
                           match=r"session \(cookie\): cookie value 'caf☃' contains '☃'.*U\+00FF"):
            hostile["everywhere"].delay(name="n", session="caf☃")
        assert tasks_service.requests == []

    def test_a_latin1_cookie_is_escaped_and_arrives(self, app, tasks_service, endpoints):
        values = dict(x_request_id="r", session="naïve ÿ", theme="é")
        assert round_trip(app, tasks_service, endpoints["headers_cookies"], **values) == values
        assert tasks_service.last.http_request.headers["Cookie"].isascii()


class TestNoneForOptionalHeadersAndCookies:
    @pytest.fixture
    def optional(self, recording_client: Any) -> tuple[FastAPI, Any]:
        router = task_router(recording_client)

        @router.post("/optional")
        def optional_values(
            x_trace: Annotated[str | None, Header()] = None,
            session: Annotated[str | None, Cookie()] = None,
            x_mode: Annotated[str | None, Header()] = "fast",
        ) -> None:
            received.update(x_trace=x_trace, session=session, x_mode=x_mode)

        app = FastAPI()
        app.include_router(router)
        received.clear()
        return app, optional_values

    def test_none_is_not_sent_and_arrives_as_none(self, optional, tasks_service):
        app, endpoint = optional
        got = round_trip(app, tasks_service, endpoint, x_trace=None, session=None)
        assert got == {"x_trace": None, "session": None, "x_mode": "fast"}
        headers = {name.lower() for name in tasks_service.last.http_request.headers}
        assert not headers & {"x-trace", "cookie"}

    def test_none_for_a_header_with_another_default_is_undeliverable(self, optional):
        with pytest.raises(UndeliverableValueError,
                           match=r"x_mode \(header\): would arrive as 'fast', not None"):
            optional[1].delay(x_mode=None)


class TestRoutesDeclaredEarlier:
    """Starlette runs the first route that matches: a path an earlier route answers is refused."""

    def test_a_static_sibling_declared_before_answers_that_value(self, recording_client,
                                                                  tasks_service):
        router = task_router(recording_client)

        @router.post("/items/latest")
        def latest_item() -> None: ...

        @router.post("/items/{item_id}")
        def one_item(item_id: str) -> None: ...

        with pytest.raises(UndeliverableValueError) as caught:
            one_item.delay(item_id="latest")
        assert str(caught.value).endswith(
            "item_id (path): POST /items/latest is answered by "
            "tests.test_arguments.TestRoutesDeclaredEarlier."
            "test_a_static_sibling_declared_before_answers_that_value.<locals>.latest_item "
            "(POST /items/latest), declared before this route on its router (Starlette runs "
            "the first route that matches); pass another value, or declare this route before "
            "that one"
        )
        assert tasks_service.requests == []
        one_item.delay(item_id="latest-but-one")
        assert tasks_service.last.http_request.url.endswith("/items/latest-but-one")

    def test_routes_declared_after_or_for_another_method_do_not_count(self, recording_client,
                                                                       tasks_service):
        router = task_router(recording_client)

        @router.get("/items/latest")
        def read_latest() -> None: ...

        @router.post("/items/{item_id}")
        def one_item(item_id: str) -> None: ...

        @router.post("/items/newest")
        def newest() -> None: ...

        one_item.delay(item_id="latest")
        one_item.delay(item_id="newest")
        assert len(tasks_service.requests) == 2

    def test_routes_of_an_included_router_and_a_mount_count(self, recording_client):
        router = task_router(recording_client)
        other = APIRouter()

        @other.post("/files/README")
        def readme() -> None: ...

        router.include_router(other)
        router.mount("/files/static", FastAPI())

        @router.post("/files/{name:path}")
        def any_file(name: str) -> None: ...

        with pytest.raises(UndeliverableValueError, match=r"answered by .*readme \(POST "):
            any_file.delay(name="README")
        with pytest.raises(UndeliverableValueError, match=r"answered by fastapi.*/files/static"):
            any_file.delay(name="static/app.js")

    def test_app_level_routes_are_checked_too(self, recording_client):
        app = FastAPI()
        app.router.route_class = DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE,
                                                     client=recording_client)

        @app.post("/users/me")
        def me() -> None: ...

        @app.post("/users/{user}")
        def user(user: str) -> None: ...

        with pytest.raises(UndeliverableValueError, match="answered by"):
            user.delay(user="me")
