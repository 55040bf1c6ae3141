"""WSGI apps as `cloudtasks_app`: Flask and Django served through a2wsgi with the headers,
deadlines and failure reports of an ASGI app. Tasks are created with Google's client."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

FLASK_APP = '''
import threading
import time

from flask import Flask, request

app = Flask(__name__)
log = []
released = threading.Event()


@app.post("/work")
def work():
    log.append({name: request.headers.get(name) for name in (
        "X-CloudTasks-QueueName", "X-CloudTasks-TaskName", "X-CloudTasks-TaskRetryCount",
        "X-CloudTasks-TaskExecutionCount", "Content-Type")})
    log.append(request.get_json())
    return "done"


@app.post("/items/")
def items():
    return "items"


@app.post("/boom")
def boom():
    raise ValueError("the handler broke")


@app.post("/slow")
def slow():
    retry = int(request.headers["X-CloudTasks-TaskRetryCount"])
    log.append((retry, request.headers.get("X-CloudTasks-TaskPreviousResponse")))
    if retry == 0:
        released.wait(30)  # a WSGI thread cannot be cancelled
        time.sleep(0.2)  # still running when the test ends: teardown must wait for it
        log.append("first attempt's thread finished")
    return "ok"
'''

DJANGO_APP = '''
from django.conf import settings

settings.configure(DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
                   MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
                   INSTALLED_APPS=[])

from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path

log = []


def work(request):
    log.append((request.headers["X-CloudTasks-QueueName"],
                request.headers["X-CloudTasks-TaskRetryCount"], request.body))
    return HttpResponse("done")


def boom(request):
    raise ValueError("the view broke")


urlpatterns = [path("work", work), path("boom", boom), path("slashed/", work)]
application = get_wsgi_application()
'''

CREATE = '''
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

def create(client, path, deadline=None, method="POST"):
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(
        url="https://worker.example.com" + path, http_method=tasks_v2.HttpMethod[method],
        headers={"Content-Type": "application/json"}, body=b'{"n": 1}'))
    if deadline is not None:
        task.dispatch_deadline = duration_pb2.Duration(seconds=deadline)
    return client.create_task(parent="projects/p/locations/europe-west1/queues/q", task=task)
'''

_runs = itertools.count()


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    number = next(_runs)

    def run(source: str, app: str = "flask") -> pytest.RunResult:
        target = "app_mod:app" if app == "flask" else "app_mod:application"
        pytester.makeini(f"[pytest]\ncloudtasks_app = {target}\nasyncio_default_fixture_"
                         "loop_scope = function\nfilterwarnings = error\n")
        host = f"worker-{number}.example.com"
        pytester.makepyfile(app_mod=(FLASK_APP if app == "flask" else DJANGO_APP),
                            create_mod=CREATE.replace("worker.example.com", host),
                            test_user=source)
        if app == "django":  # Django's settings are configured once per process
            return pytester.runpytest_subprocess("-p", "no:cacheprovider")
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


def test_a_flask_app_gets_the_cloud_tasks_headers_and_body(run_user_tests) -> None:
    result = run_user_tests("""
        from app_mod import log
        from create_mod import create

        def test_work(cloudtasks_queue):
            task = create(cloudtasks_queue.client, "/work")
            (attempt,) = cloudtasks_queue.run_until_empty()
            assert attempt.succeeded and attempt.response.text == "done"
            assert log == [{"X-CloudTasks-QueueName": "q",
                            "X-CloudTasks-TaskName": task.name.rpartition("/")[2],
                            "X-CloudTasks-TaskRetryCount": "0",
                            "X-CloudTasks-TaskExecutionCount": "0",
                            "Content-Type": "application/json"}, {"n": 1}]
    """)
    result.assert_outcomes(passed=1)


def test_a_failing_flask_handler_is_reported_with_its_own_frames(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from create_mod import create

        @pytest.mark.cloudtasks(max_attempts=2, min_backoff=1)
        def test_boom(cloudtasks_queue):
            create(cloudtasks_queue.client, "/boom")
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskFailed: POST https://worker-*.example.com/boom failed for good after 2 "
        "attempt(s); last response: 500*",
        "*app_mod.py*, line *, in boom",
        "*ValueError: the handler broke",
    ])


def test_a_flask_handler_past_its_deadline_fails_with_504_and_its_thread_is_waited_for(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import log, released
        from create_mod import create

        @pytest.mark.cloudtasks(deadline_scale=0.01, min_backoff=1)
        def test_slow(cloudtasks_queue):
            create(cloudtasks_queue.client, "/slow", deadline=15)
            first, second = cloudtasks_queue.run_until_empty()
            assert first.deadline_exceeded and first.status_code == 504
            assert second.succeeded
            assert log == [(0, None), (1, "504")]
            released.set()

        def test_after_teardown():
            assert log[-1] == "first attempt's thread finished"
    """)
    result.assert_outcomes(passed=2)


def test_a_django_wsgi_application_gets_the_task_and_its_failures_are_reported(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import log
        from create_mod import create

        def test_work(cloudtasks_queue):
            create(cloudtasks_queue.client, "/work")
            (attempt,) = cloudtasks_queue.run_until_empty()
            assert attempt.succeeded and attempt.response.text == "done"
            assert log == [("q", "0", b'{"n": 1}')]

        @pytest.mark.cloudtasks(max_attempts=1)
        def test_boom(cloudtasks_queue):
            create(cloudtasks_queue.client, "/boom")
            cloudtasks_queue.run_until_empty()
    """, app="django")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskFailed: POST https://worker-*.example.com/boom failed for good after 1 "
        "attempt(s); last response: 500*",
        "*app_mod.py*, line *, in boom",
        "*ValueError: the view broke",
    ])


def test_a_plain_wsgi_callable_routed_by_base_url_and_one_forced_with_wsgiapp(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        from pytest_cloudtasks import WSGIApp
        from create_mod import create

        seen = []

        def plain(environ, start_response):
            seen.append(("plain", environ["PATH_INFO"], environ["HTTP_X_CLOUDTASKS_QUEUENAME"]))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"plain"]

        def generic(*args):  # two arguments in fact, but nothing says so
            environ, start_response = args
            seen.append(("forced", environ["PATH_INFO"]))
            start_response("204 No Content", [])
            return []

        def test_routed(cloudtasks_queue):
            cloudtasks_queue.route("https://other.example.com", plain)
            cloudtasks_queue.route("https://forced.example.com", WSGIApp(generic))
            for base in ("https://other.example.com", "https://forced.example.com"):
                cloudtasks_queue.client.create_task(
                    parent="projects/p/locations/europe-west1/queues/q",
                    task={"http_request": {"url": base + "/x", "http_method": "POST"}})
            attempts = cloudtasks_queue.run_until_empty()
            assert [a.status_code for a in attempts] == [200, 204]
            assert seen == [("plain", "/x", "q"), ("forced", "/x")]
    """)
    result.assert_outcomes(passed=1)


def test_only_wsgi_apps_are_detected_as_wsgi() -> None:
    import flask
    from django.core.handlers.wsgi import WSGIHandler
    from fastapi import FastAPI

    from pytest_cloudtasks.wsgi import WSGIApp, is_wsgi

    def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
        return []

    async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
        pass

    def varargs(*args):  # type: ignore[no-untyped-def]
        return []

    assert is_wsgi(flask.Flask("x"))
    assert is_wsgi(WSGIHandler.__new__(WSGIHandler))  # made without Django's settings
    assert is_wsgi(wsgi)
    for not_wsgi in (FastAPI(), asgi, varargs, WSGIApp(wsgi), object()):
        assert not is_wsgi(not_wsgi), not_wsgi


def test_a_flask_routing_miss_is_reported_from_its_url_map(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from pytest_cloudtasks import TaskRoutingError
        from create_mod import create

        @pytest.mark.parametrize("path", ["/wrok", "/items"])
        def test_miss(cloudtasks_queue, path):
            create(cloudtasks_queue.client, path)
            cloudtasks_queue.run_until_empty()

        def test_wrong_method(cloudtasks_queue):
            create(cloudtasks_queue.client, "/work", method="PUT")
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://worker-*.example.com/wrok (*) matches no route of "
        "the app: every attempt gets 404 Not Found. Nearest routes:",
        "E *POST /work",
    ])
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: PUT https://worker-*.example.com/work (*) reaches a Flask route "
        "whose path matches, which answers only POST: every attempt gets 405 Method Not "
        "Allowed.*",
    ])
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://worker-*.example.com/items (*) is redirected by "
        "Flask to '/items/' (the route's trailing slash): every "
        "attempt gets 308, which Cloud Tasks does not follow.*",
    ])


def test_a_django_routing_miss_is_reported_from_its_url_resolver(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from create_mod import create

        @pytest.mark.parametrize("path", ["/wrok", "/slashed"])
        def test_miss(cloudtasks_queue, path):
            create(cloudtasks_queue.client, path)
            cloudtasks_queue.run_until_empty()
    """, app="django")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://worker-*.example.com/wrok (*) matches no route of "
        "the app: every attempt gets 404 Not Found. Nearest routes:",
        "E *[*] /work",
    ])
    result.stdout.fnmatch_lines([
        "E  *TaskRoutingError: POST https://worker-*.example.com/slashed (*) is redirected by "
        "Django to '/slashed/' (APPEND_SLASH): every attempt gets 301, which Cloud Tasks does "
        "not follow.*",
    ])


def test_without_a2wsgi_a_wsgi_app_is_a_usage_error_with_the_install_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\ncloudtasks_app = app_mod:app\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(blocker="import sys\nsys.modules['a2wsgi'] = None\n",
                        app_mod=FLASK_APP, create_mod=CREATE, test_user="""
        from create_mod import create

        def test_work(cloudtasks_queue):
            create(cloudtasks_queue.client, "/work")
            cloudtasks_queue.run_until_empty()
    """)
    result = pytester.runpytest_subprocess("-p", "blocker", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *UsageError: Serving the WSGI app <Flask 'app_mod'> needs a2wsgi (serving a WSGI "
        'app (Flask, Django) to the drain), which is not installed: run `pip install '
        '"fastapi-cloud-tasks[[]testing]"`.',
    ])


def test_an_asgi_app_is_served_without_importing_the_wsgi_adapter(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user="""
        import sys

        import pytest
        from fastapi import FastAPI

        app = FastAPI()

        @app.post("/work")
        def work():
            return "ok"

        @pytest.fixture
        def cloudtasks_app():
            return app

        def test_work(cloudtasks_queue):
            cloudtasks_queue.client.create_task(
                parent="projects/p/locations/europe-west1/queues/q",
                task={"http_request": {"url": "https://w.example.com/work"}})
            (attempt,) = cloudtasks_queue.run_until_empty()
            assert attempt.succeeded
            assert "a2wsgi" not in sys.modules and "flask" not in sys.modules
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
