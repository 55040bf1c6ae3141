"""Routing misses: a task whose URL reaches no route of the app raises `TaskRoutingError` at its
first attempt, naming the method, the URL and the app's nearest routes; a 404 the endpoint
answers itself stays an ordinary failed attempt."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
from fastapi import APIRouter, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fastapi_cloud_tasks import DelayedRouteBuilder, queue_path

QUEUE = queue_path("my-project", "europe-west1", "emails")
# The README's trap: the router is included under /api, but base_url does not say so.
router = APIRouter(prefix="/tasks", route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=QUEUE))
calls = []


@router.post("/send")
def send_email(to: str):
    calls.append(to)


@router.post("/lookup")
def lookup(user_id: int):
    calls.append(user_id)
    raise HTTPException(404, f"no user {user_id}")


app = FastAPI()
app.include_router(router, prefix="/api")


@app.get("/api/tasks/report")
def report():
    return {}


@app.post("/api/tasks/slash/")
def slash():
    return {}


async def purge(request):
    return PlainTextResponse("purged")


app.mount("/admin", Starlette(routes=[Route("/purge", purge, methods=["POST"])]))
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
    host = f"worker-routing-{next(_runs)}.example.com"

    def run(source: str) -> pytest.RunResult:
        pytester.makeini(INI)
        pytester.makepyfile(app_mod=APP.replace("worker.example.com", host),
                            test_user=source.replace("worker.example.com", host))
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


def test_a_url_matching_no_route_raises_at_the_first_attempt(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import send_email
        from pytest_cloudtasks import CloudTasksUsageError, TaskRoutingError

        def test_trap(cloudtasks_queue):
            send_email.delay(to="ada@example.com")
            with pytest.raises(TaskRoutingError) as raised:
                cloudtasks_queue.run_until_empty()
            assert len(cloudtasks_queue.attempts) == 1
            assert raised.value.attempt.status_code == 404
            assert isinstance(raised.value, CloudTasksUsageError)
    """)
    result.assert_outcomes(passed=1)


def test_the_routing_error_names_method_url_and_the_nearest_routes(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import send_email

        def test_trap(cloudtasks_queue):
            send_email.delay(to="ada@example.com")
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://worker-routing-*.example.com/tasks/send?to=ada%40"
        "example.com (send_email(to='ada@example.com')) matches no route of the app: every "
        "attempt gets 404 Not Found. Nearest routes:",
        "E *    POST /api/tasks/send",
        "E *    *",
        "E *    *",
        "E  *The task URL is the builder's base_url + the route's path on its APIRouter: a "
        "prefix given to include_router(prefix=...) or app.mount() belongs in base_url. A task "
        "meant for another app needs cloudtasks_queue.route(base_url, app).",
    ])


def test_a_404_the_endpoint_answers_is_an_ordinary_failed_attempt(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from google.cloud import tasks_v2
        from app_mod import QUEUE, calls
        from pytest_cloudtasks import TaskFailed

        @pytest.mark.cloudtasks(max_attempts=3)
        def test_endpoint_404(cloudtasks_queue):
            cloudtasks_queue.client.create_task(parent=QUEUE, task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url="https://worker.example.com/api/tasks/lookup?user_id=7")))
            with pytest.raises(TaskFailed, match="failed for good after 3 attempt"):
                cloudtasks_queue.run_until_empty()
            assert [a.status_code for a in cloudtasks_queue.attempts] == [404, 404, 404]
            assert calls == [7, 7, 7]
    """)
    result.assert_outcomes(passed=1)


def test_a_method_the_route_does_not_answer_is_a_routing_error(run_user_tests) -> None:
    result = run_user_tests("""
        from google.cloud import tasks_v2
        from app_mod import QUEUE

        def test_wrong_method(cloudtasks_queue):
            cloudtasks_queue.client.create_task(parent=QUEUE, task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url="https://worker.example.com/api/tasks/report")))
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://worker-routing-*.example.com/api/tasks/report "
        "(POST https://*/api/tasks/report) reaches the route '/api/tasks/report' (its path "
        "matches), which answers only GET: every attempt gets 405 Method Not Allowed.*",
    ])


def test_a_missing_trailing_slash_is_a_routing_error_not_a_redirect(run_user_tests) -> None:
    result = run_user_tests("""
        from google.cloud import tasks_v2
        from app_mod import QUEUE

        def test_slash(cloudtasks_queue):
            cloudtasks_queue.client.create_task(parent=QUEUE, task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url="https://worker.example.com/api/tasks/slash")))
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://*/api/tasks/slash (*) matches no route of the app: "
        "every attempt gets 307, Starlette's redirect to the path with or without its trailing "
        "slash, which Cloud Tasks does not follow. Nearest routes:",
        "E *    POST /api/tasks/slash/",
    ])


def test_routes_of_a_mounted_app_are_matched_and_listed(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from google.cloud import tasks_v2
        from app_mod import QUEUE
        from pytest_cloudtasks import TaskRoutingError

        def test_mounted(cloudtasks_queue):
            for path in ("/admin/purge", "/admin/purg"):
                cloudtasks_queue.client.create_task(parent=QUEUE, task=tasks_v2.Task(
                    http_request=tasks_v2.HttpRequest(url="https://worker.example.com" + path)))
            with pytest.raises(TaskRoutingError, match="/admin/purg ") as raised:
                cloudtasks_queue.run_until_empty()
            assert [a.status_code for a in cloudtasks_queue.attempts] == [200, 404]
            assert "Nearest routes:\\n    POST /admin/purge\\n" in str(raised.value)
    """)
    result.assert_outcomes(passed=1)


def test_an_app_without_a_router_is_not_checked(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import send_email
        from pytest_cloudtasks import TaskFailed

        async def not_found(scope, receive, send):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"gone"})

        @pytest.fixture
        def cloudtasks_app():
            return not_found

        @pytest.mark.cloudtasks(max_attempts=2)
        def test_plain_asgi(cloudtasks_queue):
            send_email.delay(to="ada@example.com")
            with pytest.raises(TaskFailed, match="after 2 attempt"):
                cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(passed=1)
