"""`TaskFailed` messages: the app's own frames (causes included), the request and the attempt
history, in a few lines."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

APP = '''
import json

from fastapi import APIRouter, Depends, FastAPI, Response

from fastapi_cloud_tasks import CloudTasksHeaders, DelayedRouteBuilder, queue_path

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com",
    queue_path=queue_path("my-project", "europe-west1", "imports")))


def parse(text):
    return json.loads(text)


@router.post("/import")
def import_file(name: str, response: Response, ct: CloudTasksHeaders = Depends()):
    if ct.retry_count < 2:
        response.status_code = 503
        return {"busy": True}
    try:
        parse("{not json")
    except ValueError as exc:
        raise RuntimeError(f"cannot import {name}") from exc


app = FastAPI()
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
    host = f"worker-failures-{next(_runs)}.example.com"

    def run(source: str) -> pytest.RunResult:
        pytester.makeini(INI)
        pytester.makepyfile(app_mod=APP.replace("worker.example.com", host), test_user=source)
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


def test_causes_keep_the_apps_frames_and_the_history_groups_equal_answers(
    run_user_tests,
) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import import_file

        @pytest.mark.cloudtasks(max_attempts=3, min_backoff=1, max_backoff=1,
                                start="2026-01-01T00:00:00+00:00")
        def test_import(cloudtasks_queue):
            import_file.delay(name="users.csv")
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskFailed: import_file(name='users.csv') failed for good after 3 attempt(s); "
        "last response: 500 from an exception in the app:",
        "E  *Traceback (most recent call last):",
        'E  *app_mod.py", line *, in import_file',
        'E  *app_mod.py", line *, in parse',
        'E  *json*decoder.py", line *, in decode',
        "E  *json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: *",
        "E  *The above exception was the direct cause of the following exception:",
        "E  *Traceback (most recent call last):",
        'E  *app_mod.py", line *, in import_file',
        "E  *RuntimeError: cannot import users.csv",
        "E  *frames of the server around the app hidden*",
        "E  *Request: POST https://worker-failures-*.example.com/import?name=users.csv",
        "E  *Attempts: #1-#2 503 from 2026-01-01T00:00:00+00:00 to 2026-01-01T00:00:01+00:00; "
        "#3 500 (RuntimeError) at 2026-01-01T00:00:02+00:00",
    ])
    assert "starlette" not in result.stdout.str().split("TaskFailed: ", 1)[1].split(
        "test_user.py:", 1)[0]


def test_a_failure_without_an_exception_shows_status_and_body(run_user_tests) -> None:
    result = run_user_tests("""
        import pytest
        from app_mod import import_file

        @pytest.mark.cloudtasks(max_attempts=2, start="2026-01-01T00:00:00+00:00",
                                min_backoff=5, max_backoff=5)
        def test_busy(cloudtasks_queue):
            import_file.delay(name="a.csv")
            cloudtasks_queue.run_until_empty()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E  *TaskFailed: import_file(name='a.csv') failed for good after 2 attempt(s); last "
        'response: 503 {"busy":true}',
        "E  *Request: POST https://*/import?name=a.csv",
        "E  *Attempts: #1-#2 503 from 2026-01-01T00:00:00+00:00 to 2026-01-01T00:00:05+00:00",
    ])
