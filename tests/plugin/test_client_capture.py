"""Google's own clients, made anywhere, talk to the test's engine (pytest_cloudtasks/
client_capture.py): at import without credentials, in a handler, asyncio and REST, and
nothing is redirected once the test is over.

Every run is a subprocess with no Google credentials to find: HOME an empty folder, no
GOOGLE_APPLICATION_CREDENTIALS or CLOUDSDK_CONFIG, and NO_GCE_CHECK so google.auth never probes
the metadata server (an address off this machine).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

APP = '''
from fastapi import FastAPI, Request
from google.cloud import scheduler_v1, tasks_v2

# Made at import, as apps do: on this machine Google's constructor alone would raise
# DefaultCredentialsError, before any fixture runs.
client = tasks_v2.CloudTasksClient()
scheduler = scheduler_v1.CloudSchedulerClient()
QUEUE = client.queue_path("proj", "us-central1", "emails")

app = FastAPI()
received = []


@app.post("/work")
async def work(request: Request):
    received.append(await request.json())
    return {}


@app.post("/signup")
def signup(email: str):
    # A handler making its own client, served on the TestClient's worker thread.
    tasks_v2.CloudTasksClient().create_task(parent=QUEUE, task={"http_request": {
        "url": "https://app.example.com/work", "http_method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": ('{"email": "%s"}' % email).encode()}})
    return {"ok": True}
'''

INI = """
[pytest]
cloudtasks_app = app_mod:app
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    # starlette < 0.47 (tox's fastapi-oldest) uses an alias newer anyio deprecates
    ignore:The anyio.abc.BlockingPortal alias is deprecated:DeprecationWarning
"""


@pytest.fixture
def run_isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                 tmp_path_factory: pytest.TempPathFactory) -> Callable[..., pytest.RunResult]:
    home = tmp_path_factory.mktemp("empty-home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    for variable in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(variable, raising=False)

    def run(source: str, ini: str = INI) -> pytest.RunResult:
        pytester.makeini(ini)
        pytester.makepyfile(app_mod=APP, test_user=source)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider")

    return run


def test_a_module_level_client_made_without_credentials_talks_to_the_engine(run_isolated):
    result = run_isolated('''
import app_mod

def test_direct(cloudtasks_queue):
    app_mod.client.create_task(parent=app_mod.QUEUE, task={"http_request": {
        "url": "https://app.example.com/work", "body": b'{"n": 1}'}})
    task = cloudtasks_queue.assert_enqueued(url="https://app.example.com/work",
                                            method="POST", json={"n": 1}, queue="emails")
    assert task.endpoint is None
    cloudtasks_queue.run_until_empty()
    assert app_mod.received == [{"n": 1}]
''')
    result.assert_outcomes(passed=1)


def test_a_client_made_in_a_request_handler_is_captured(run_isolated):
    result = run_isolated('''
import re
from fastapi.testclient import TestClient
import app_mod

def test_signup(cloudtasks_queue):
    with TestClient(app_mod.app) as http:
        assert http.post("/signup", params={"email": "a@example.com"}).status_code == 200
    cloudtasks_queue.assert_enqueued(url=re.compile(r"https://app\\.example\\.com/.*"),
                                     headers={"content-type": "application/json"},
                                     json={"email": "a@example.com"}, times=1)
    attempts = cloudtasks_queue.run_until_empty()
    assert [a.status_code for a in attempts] == [200]
    assert app_mod.received == [{"email": "a@example.com"}]
''')
    result.assert_outcomes(passed=1)


def test_async_rest_and_scheduler_clients_with_any_options_are_captured(run_isolated):
    result = run_isolated('''
import pytest
from google.api_core.retry import Retry
from google.cloud import scheduler_v1, tasks_v2
import app_mod

TASK = {"http_request": {"url": "https://app.example.com/work", "body": b'{"n": 3}'}}

@pytest.mark.asyncio
async def test_async_tasks(cloudtasks_queue):
    client = tasks_v2.CloudTasksAsyncClient()
    await client.create_task(parent=app_mod.QUEUE, task=TASK, timeout=5.0)
    assert len(cloudtasks_queue) == 1

def test_rest_with_client_options(cloudtasks_queue):
    client = tasks_v2.CloudTasksClient(
        transport="rest", client_options={"api_endpoint": "https://tasks.invalid"})
    client.create_task(parent=app_mod.QUEUE, task=TASK, retry=Retry(timeout=5.0), timeout=2.0)
    [task] = cloudtasks_queue.tasks
    assert task.json() == {"n": 3}

def test_scheduler_clients(cloudtasks_scheduler):
    parent = "projects/proj/locations/us-central1"
    job = {"name": parent + "/jobs/nightly", "schedule": "0 3 * * *",
           "http_target": {"uri": "https://app.example.com/work", "body": b'{"n": 4}'}}
    app_mod.scheduler.create_job(parent=parent, job=job)
    assert [j.short_name for j in cloudtasks_scheduler.jobs.values()] == ["nightly"]
    cloudtasks_scheduler.run_job("nightly")
    assert app_mod.received[-1] == {"n": 4}

@pytest.mark.asyncio
async def test_async_scheduler(cloudtasks_scheduler):
    client = scheduler_v1.CloudSchedulerAsyncClient(transport="grpc_asyncio")
    jobs = await client.list_jobs(parent="projects/proj/locations/us-central1")
    assert [job async for job in jobs] == []
''')
    result.assert_outcomes(passed=4)


def test_outside_the_fixtures_clients_use_their_own_transport(run_isolated):
    # Given a real HTTP server on 127.0.0.1 answering CreateTask as Google's REST API does,
    # and a REST client pointed at it, used in a test with the fixture and in one without.
    result = run_isolated('''
import http.server, json, threading
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
import pytest
import app_mod

hits = []

class Google(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        hits.append(self.path)
        body = json.dumps({"name": app_mod.QUEUE + "/tasks/from-server"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Google)
threading.Thread(target=server.serve_forever, daemon=True).start()
client = tasks_v2.CloudTasksClient(
    transport="rest", credentials=AnonymousCredentials(),
    client_options={"api_endpoint": "http://127.0.0.1:%d" % server.server_port})
TASK = {"http_request": {"url": "https://app.example.com/work"}}

def test_1_with_the_fixture(cloudtasks_queue):
    assert client.create_task(parent=app_mod.QUEUE, task=TASK).name != (
        app_mod.QUEUE + "/tasks/from-server")
    assert hits == []

def test_2_after_it():
    assert client.create_task(parent=app_mod.QUEUE, task=TASK).name == (
        app_mod.QUEUE + "/tasks/from-server")
    assert len(hits) == 1

def test_3_the_deferred_credentials_error_outside():
    from google.auth.exceptions import DefaultCredentialsError
    with pytest.raises(DefaultCredentialsError, match="built without credentials"):
        app_mod.client.get_queue(name=app_mod.QUEUE)

def test_4_built_in_a_test_without_the_fixtures_it_raises_as_without_the_plugin():
    from google.auth.exceptions import DefaultCredentialsError
    with pytest.raises(DefaultCredentialsError, match="default credentials were not found"):
        tasks_v2.CloudTasksClient()
''')
    result.assert_outcomes(passed=4)


def test_opt_in_error_names_the_test_that_used_a_client_without_the_fixtures(run_isolated):
    result = run_isolated('''
import app_mod

TASK = {"http_request": {"url": "https://app.example.com/work"}}

def test_forgot_the_fixture():
    app_mod.client.create_task(parent=app_mod.QUEUE, task=TASK)

def test_with_the_fixture(cloudtasks_queue):
    app_mod.client.create_task(parent=app_mod.QUEUE, task=TASK)
    assert len(cloudtasks_queue) == 1
''', INI + "cloudtasks_clients_outside = error\n")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*ClientOutsideFixtureError: A CloudTasksClient was used by test "
        "test_user.py::test_forgot_the_fixture, which uses neither cloudtasks_queue nor "
        "cloudtasks_scheduler, and cloudtasks_clients_outside = 'error' forbids that*",
    ])


def test_a_bad_clients_outside_value_is_a_usage_error(run_isolated):
    result = run_isolated("def test_nothing():\n    pass\n",
                          INI + "cloudtasks_clients_outside = maybe\n")
    result.stderr.fnmatch_lines(["*cloudtasks_clients_outside = 'maybe': use 'allow'*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_client_made_when_conftest_imports_the_app_is_captured(run_isolated, pytester):
    # conftest.py files are imported before pytest_configure: the capture must already be on.
    pytester.makeconftest("import app_mod  # builds its clients at import\n")
    result = run_isolated('''
import app_mod

def test_direct(cloudtasks_queue):
    app_mod.client.create_task(parent=app_mod.QUEUE, task={"http_request": {
        "url": "https://app.example.com/work"}})
    assert len(cloudtasks_queue) == 1
''')
    result.assert_outcomes(passed=1)


def test_direct_tasks_follow_their_url_to_the_routed_app(run_isolated):
    result = run_isolated('''
from fastapi import FastAPI
import app_mod

billing = FastAPI()
charged = []

@billing.post("/charge")
def charge(amount: int):
    charged.append(amount)

def test_routed(cloudtasks_queue):
    cloudtasks_queue.route("https://billing.example.com", billing)
    app_mod.client.create_task(parent=app_mod.QUEUE, task={"http_request": {
        "url": "https://billing.example.com/charge?amount=5"}})
    [attempt] = cloudtasks_queue.run_until_empty()
    assert attempt.status_code == 200 and charged == [5] and app_mod.received == []
''')
    result.assert_outcomes(passed=1)


def test_assert_enqueued_by_request_reports_what_was_enqueued(run_isolated):
    result = run_isolated('''
import pytest
from pytest_cloudtasks import CloudTasksUsageError
import app_mod

def test_mismatch(cloudtasks_queue):
    app_mod.client.create_task(parent=app_mod.QUEUE, task={"http_request": {
        "url": "https://app.example.com/work", "body": b'{"n": 1}'}})
    cloudtasks_queue.assert_not_enqueued(url="https://app.example.com/work", method="GET")
    with pytest.raises(CloudTasksUsageError, match="unknown field.s. uri; known: url"):
        cloudtasks_queue.assert_enqueued(uri="https://app.example.com/work")
    cloudtasks_queue.assert_enqueued(url="https://app.example.com/work", json={"n": 2})
''')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E*AssertionError: a task with url='https://app.example.com/work', json={'n': 2} "
        "was not enqueued. Enqueued in this test:",
        "E*  POST https://app.example.com/work at *",
    ])


def test_a_retry_passed_by_the_caller_applies_to_the_engines_errors(run_isolated):
    result = run_isolated('''
import pytest
from google.api_core import exceptions
from google.api_core.retry import Retry, if_exception_type
import app_mod

@pytest.mark.cloudtasks(strict=True)  # NotFound for a queue nobody created, as Google
def test_retried(cloudtasks_queue):
    errors = []
    retry = Retry(predicate=if_exception_type(exceptions.NotFound), initial=0.001,
                  maximum=0.001, timeout=0.05, on_error=errors.append)
    with pytest.raises(exceptions.RetryError):
        app_mod.client.create_task(parent=app_mod.QUEUE, task={"http_request": {
            "url": "https://app.example.com/work"}}, retry=retry)
    assert errors and all(isinstance(e, exceptions.NotFound) for e in errors)
''')
    result.assert_outcomes(passed=1)


def test_the_readme_example_runs(run_isolated, pytester):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("### Testing apps that use Google's client directly", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    pytester.makeconftest('''
import pytest
from fastapi import FastAPI

app = FastAPI()

@app.post("/welcome")
def welcome() -> dict:
    return {}

@pytest.fixture
def cloudtasks_app():
    return app
''')
    result = run_isolated(code, INI.replace("cloudtasks_app = app_mod:app\n", ""))
    result.assert_outcomes(passed=1)


def test_the_client_classes_are_google_own_again_after_the_session(pytester):
    pytester.makepyfile(test_user="def test_nothing(cloudtasks_queue):\n    pass\n")
    pytester.makeini(INI.replace("cloudtasks_app = app_mod:app\n", ""))
    result = pytester.run(sys.executable, "-c", '''
import pytest
from google.cloud import scheduler_v1, tasks_v2
init = tasks_v2.CloudTasksClient.__init__
assert pytest.main(["-q", "-p", "no:cacheprovider", "test_user.py"]) == 0
for cls in (tasks_v2.CloudTasksClient, scheduler_v1.CloudSchedulerClient):
    assert "_transport" not in vars(cls), cls
assert tasks_v2.CloudTasksClient.__init__ is init
print("unpatched")
''')
    result.stdout.fnmatch_lines(["unpatched"])
    assert result.ret == 0
