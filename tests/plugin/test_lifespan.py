"""The app's lifespan around a test's deliveries, as uvicorn and Starlette's TestClient run it:
startup before the first delivery, `state` in every request's scope, shutdown at teardown."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
import asyncio
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path

QUEUE = queue_path("my-project", "europe-west1", "orders")
log = []
loops = []  # the event loop each order was served on


class Pool:
    def __init__(self):
        self.loop = asyncio.get_running_loop()  # a pool belongs to the loop it opened on
        self.closed = False


@asynccontextmanager
async def lifespan(app):
    log.append("startup")
    pool = Pool()
    yield {"db": pool, "settings": {"region": "eu"}}
    pool.closed = True
    log.append("shutdown")


router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=QUEUE))


@router.post("/orders")
async def place_order(order_id: int, request: Request):
    db = request.state.db
    assert not db.closed and db.loop is asyncio.get_running_loop()
    loops.append(db.loop)
    log.append(("order", order_id, request.state.settings["region"]))
    request.state.note = "mine"  # a request's own copy of the state: the next one has none


@router.post("/note")
async def read_note(request: Request):
    log.append(("note", getattr(request.state, "note", None)))


app = FastAPI(lifespan=lifespan)
app.include_router(router)
'''

OTHER_APP = '''
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path

log = []


@asynccontextmanager
async def lifespan(app):
    log.append("billing startup")
    yield {"ledger": "open"}
    log.append("billing shutdown")


router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://billing.example.com", queue_path=queue_path("p", "europe-west1", "bill")))


@router.post("/charge")
def charge(request: Request):
    log.append(("charge", request.state.ledger))


app = FastAPI(lifespan=lifespan)
app.include_router(router)
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
    """Write the app and the user's test module; run pytest on them. Each test's apps get
    hosts of their own (endpoints of earlier in-process runs may still be registered)."""
    number = next(_runs)

    def unique(text: str) -> str:
        return (text.replace("worker.example.com", f"worker-{number}.example.com")
                .replace("billing.example.com", f"billing-{number}.example.com"))

    def run(source: str, *args: str, ini: str = "", **modules: str) -> pytest.RunResult:
        pytester.makeini(INI + ini)
        pytester.makepyfile(app_mod=unique(APP), test_user=unique(source),
                            **{name: unique(text) for name, text in modules.items()})
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run


def test_a_sync_test_gets_startup_state_in_every_request_and_shutdown_at_teardown(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        from app_mod import log, place_order, read_note

        def test_orders(cloudtasks_queue):
            place_order.delay(order_id=1)
            assert log == []  # nothing delivered yet: no startup
            place_order.delay(order_id=2)
            read_note.delay()
            attempts = cloudtasks_queue.run_until_empty()
            assert [a.status_code for a in attempts] == [200, 200, 200]
            assert log == ["startup", ("order", 1, "eu"), ("order", 2, "eu"), ("note", None)]

        def test_after_teardown():
            assert log[-1] == "shutdown" and log.count("startup") == 1
    """)
    result.assert_outcomes(passed=2)


def test_an_async_test_runs_the_lifespan_on_its_own_loop(run_user_tests) -> None:
    result = run_user_tests("""
        import asyncio
        import pytest
        from app_mod import log, loops, place_order

        @pytest.mark.asyncio
        async def test_orders(cloudtasks_queue):
            await place_order.adelay(order_id=7)
            [attempt] = await cloudtasks_queue.arun_until_empty()
            assert attempt.status_code == 200, attempt
            assert log == ["startup", ("order", 7, "eu")]
            assert loops == [asyncio.get_running_loop()]  # the pool opened on the test's loop

        def test_after_teardown():
            assert log[-1] == "shutdown"
    """)
    result.assert_outcomes(passed=2)


def test_a_test_that_delivers_nothing_runs_no_lifespan(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import log, place_order

        def test_inspect_only(cloudtasks_queue):
            place_order.delay(order_id=1)
            cloudtasks_queue.assert_enqueued(place_order, order_id=1)

        def test_after_teardown():
            assert log == []
    """)
    result.assert_outcomes(passed=2)


def test_a_routed_app_gets_its_own_lifespan(run_user_tests) -> None:
    result = run_user_tests("""
        import billing_mod
        from app_mod import log, place_order

        def test_both(cloudtasks_queue):
            cloudtasks_queue.route("https://billing.example.com", billing_mod.app)
            billing_mod.charge.delay()
            cloudtasks_queue.run_until_empty()
            assert billing_mod.log == ["billing startup", ("charge", "open")]
            assert log == []  # the default app received nothing: its lifespan never ran

        def test_after_teardown():
            assert billing_mod.log[-1] == "billing shutdown"
    """, billing_mod=OTHER_APP)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("where", ["marker", "ini"])
def test_lifespan_off_serves_the_app_without_it(run_user_tests, where: str) -> None:
    marker = '@pytest.mark.cloudtasks(lifespan="off")' if where == "marker" else ""
    result = run_user_tests(f"""
        import pytest
        from app_mod import log, read_note

        {marker}
        def test_off(cloudtasks_queue):
            read_note.delay()
            [attempt] = cloudtasks_queue.run_until_empty()
            assert attempt.status_code == 200
            assert log == [("note", None)]
    """, ini="cloudtasks_config = lifespan=off\n" if where == "ini" else "")
    result.assert_outcomes(passed=1)


def test_a_failing_startup_is_an_error_naming_the_app(run_user_tests) -> None:
    result = run_user_tests("""
        import app_mod
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def broken(app):
            raise ConnectionRefusedError("database at db:5432 refused the connection")
            yield

        def test_orders(cloudtasks_queue):
            app_mod.app.router.lifespan_context = broken
            app_mod.place_order.delay(order_id=1)
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *LifespanFailed: The lifespan of the app app_mod:app failed at startup: "
        "ConnectionRefusedError: database at db:5432 refused the connection. Fix the app's "
        "lifespan, or turn it off for this test with @pytest.mark.cloudtasks(lifespan=\"off\") "
        "(suite-wide: `lifespan = off` in cloudtasks_config).",
    ])
    result.stdout.fnmatch_lines(["*async def broken(app):*", "E  *ConnectionRefusedError: *"])


def test_a_failing_shutdown_is_a_teardown_error(run_user_tests) -> None:
    result = run_user_tests("""
        import app_mod
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def leaky(app):
            yield {"db": None}
            raise RuntimeError("3 connections still checked out")

        def test_orders(cloudtasks_queue):
            app_mod.app.router.lifespan_context = leaky
            app_mod.read_note.delay()
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "E  *LifespanFailed: The lifespan of the app app_mod:app failed at shutdown: "
        "RuntimeError: 3 connections still checked out.*",
    ])


PLAIN_ASGI = '''
async def app(scope, receive, send):
    assert scope["type"] == "http", "this app serves HTTP only"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def test_auto_serves_an_app_without_lifespan_support_and_on_requires_it(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        import plain_mod
        from app_mod import read_note

        def test_auto(cloudtasks_queue):
            cloudtasks_queue.route("https://worker.example.com", plain_mod.app)
            read_note.delay()
            [attempt] = cloudtasks_queue.run_until_empty()
            assert attempt.status_code == 200

        @pytest.mark.cloudtasks(lifespan="on")
        def test_on(cloudtasks_queue):
            cloudtasks_queue.route("https://worker.example.com", plain_mod.app)
            read_note.delay()
            cloudtasks_queue.run_until_empty()
    """, plain_mod=PLAIN_ASGI)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E  *LifespanFailed: The lifespan of the app plain_mod:app failed at startup: "
        "AssertionError: this app serves HTTP only*",
    ])


def test_an_unknown_lifespan_mode_is_a_usage_error(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest

        @pytest.mark.cloudtasks(lifespan="of")
        def test_typo(cloudtasks_queue):
            pass
    """)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: lifespan='of': use one of 'auto', 'on', 'off' (auto: run the app's "
        "lifespan if it has one).",
    ])


def test_sync_and_async_drains_in_one_test_are_a_usage_error(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import read_note

        @pytest.mark.asyncio
        async def test_mixed(cloudtasks_queue):
            read_note.delay()
            cloudtasks_queue.run_until_empty()  # the lifespan starts on the helper thread
            read_note.delay()
            await cloudtasks_queue.arun_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: the app app_mod:app got deliveries on two event loops: its lifespan "
        "runs on the first one, so one test drains either with the sync calls *",
    ])
