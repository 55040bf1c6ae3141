"""The dashboard over plain HTTP: what the page shows, that what clients sent is escaped, and
that its actions run the RPCs for the page's own forms and for nothing else."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from dashboard_support import Served, client, post_action, row, serve, tables
from emulator_support import LOCATION, SERVICE_ACCOUNT, http_task
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import duration_pb2

from fastapi_cloud_tasks.emulator.attempt_log import AttemptLog
from fastapi_cloud_tasks.emulator.dashboard import Dashboard
from fastapi_cloud_tasks.emulator.http_server import HttpRequest, Router
from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine

LATER = timedelta(hours=1)  # tasks wait for a button, not for their schedule


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with client(served) as session:
        yield session


@pytest.fixture
def tasks(served: Served) -> tasks_v2.CloudTasksClient:
    return served.emulator.tasks_client()


@pytest.fixture
def queue(tasks: tasks_v2.CloudTasksClient, ident: str) -> str:
    return tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=f"{LOCATION}/queues/{ident}",
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7, max_concurrent_dispatches=3),
        retry_config=tasks_v2.RetryConfig(max_attempts=5, min_backoff=duration_pb2.Duration(
            seconds=1), max_doublings=2))).name


def later_task(served: Served, tasks: tasks_v2.CloudTasksClient, queue: str, path: str,
               **settings: object) -> tasks_v2.Task:
    when = datetime.now(timezone.utc) + LATER
    return tasks.create_task(parent=queue, task=http_task(
        served.worker.url(path), schedule_time=when, **settings))


def wait_page(http: httpx.Client, shows: Callable[[str], bool], timeout: float = 10.0) -> str:
    """The page once `shows(html)`; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        html = http.get("/").text
        if shows(html):
            return html
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not show it within {timeout:g} s:\n{html}")
        time.sleep(0.05)


def short(name: str) -> str:
    return name.rsplit("/", 1)[1]


def test_the_page_shows_a_queue_its_settings_and_its_tasks(
    served: Served, http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str
) -> None:
    task = later_task(served, tasks, queue, "/shown", http_method=tasks_v2.HttpMethod.PUT)

    response = http.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert row(response.text, "queues", short(queue)) == {
        "Queue": short(queue), "State": "RUNNING", "Max rate": "7/s", "Burst": "7",
        "Max concurrent": "3", "Max attempts": "5", "Backoff": "1 s to 3600 s",
        "Doublings": "2", "Max retry duration": "unlimited", "Pending": "1", "In flight": "0",
        "Actions": "Pause Purge",
    }
    when = task.schedule_time.astimezone(timezone.utc)
    assert row(response.text, "tasks-", short(task.name)) == {
        "Task": short(task.name), "Method": "PUT", "URL": served.worker.url("/shown"),
        "Schedule time": f"{when:%Y-%m-%d %H:%M:%S} UTC", "Dispatches": "0",
        "Responses": "0", "Last response": "", "Actions": "Run Delete",
    }


def test_the_page_shows_a_job_its_schedule_zone_and_next_run(
    served: Served, http: httpx.Client, ident: str
) -> None:
    scheduler = served.emulator.scheduler_client()
    job = scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{ident}", schedule="0 7 * * *", time_zone="Asia/Kolkata",
        http_target=scheduler_v1.HttpTarget(uri=served.worker.url("/job"))))

    shown = row(http.get("/").text, "jobs", short(job.name))

    next_run = job.schedule_time.astimezone(timezone.utc)
    assert shown == {
        "Job": short(job.name), "Target": served.worker.url("/job"), "Schedule": "0 7 * * *",
        "Time zone": "Asia/Kolkata", "State": "ENABLED", "Last run": "",
        "Next run": f"{next_run:%Y-%m-%d %H:%M:%S} UTC", "Last status": "",
        "Actions": "Run Pause",
    }


def test_html_in_a_task_url_and_header_is_escaped(
    served: Served, http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str,
    prefix: str
) -> None:
    # Given a task whose URL and header carry markup, and an attempt that sent them
    task = later_task(served, tasks, queue, f"{prefix}/<script>alert('url')</script>",
                      headers={"X-Note": '<img src=x onerror="alert(1)">'})
    tasks.run_task(name=task.name)
    served.worker.wait_under(prefix, finished=True)

    html = wait_page(http, lambda page: "X-Note" in page)

    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "/&lt;script&gt;alert(&#39;url&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert len(re.findall(r"<script\b", html)) == 1  # the page's own


def test_recent_attempts_show_status_retries_and_headers_but_no_token(
    served: Served, http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str,
    prefix: str
) -> None:
    # Given a task the worker fails once (503), then takes (201), sent with an ID token
    task = tasks.create_task(parent=queue, task=http_task(
        served.worker.url(f"{prefix}?status=503,201"),
        oidc_token=tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT)))
    served.worker.wait_under(prefix, count=2, finished=True)

    html = wait_page(http, lambda page: page.count(short(task.name)) >= 2 and "201" in page)

    rows = [dict(zip(tables(html)["attempts"][0], cells, strict=False))
            for cells in tables(html)["attempts"][1:] if short(task.name) in cells[1]]
    assert [(r["Status"], r["Outcome"], r["Retry count"]) for r in rows] == [
        ("201", "succeeded", "1"), ("503", "retrying", "0")]
    assert re.fullmatch(r"\d+ ms|[\d.]+ s", rows[0]["Duration"])
    assert f"X-CloudTasks-TaskName {short(task.name)}" in rows[0]["Headers sent"]
    assert "X-CloudTasks-TaskRetryCount 1" in rows[0]["Headers sent"]
    # The ID token the emulator minted is a credential: its length, never its value.
    sent = served.worker.under(prefix)[0].headers["authorization"]
    assert re.search(r"Authorization Bearer \(a token of \d+ characters, not shown\)",
                     rows[0]["Headers sent"])
    assert sent.split()[1] not in html


def test_the_state_fragment_is_the_tables_without_the_page(http: httpx.Client) -> None:
    fragment = http.get("/dashboard/state")
    page = http.get("/")

    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "<script" not in fragment.text
    assert 'id="queues-heading"' in fragment.text
    assert 'id="queues-heading"' in page.text


def test_the_page_allows_only_its_own_script_and_no_framing(http: httpx.Client) -> None:
    response = http.get("/")

    csp = response.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce is not None
    assert f'<script nonce="{nonce.group(1)}">' in response.text
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # no-referrer would make the browser's form POSTs `Origin: null`, refused as foreign.
    assert response.headers["referrer-policy"] == "same-origin"
    assert nonce.group(1) not in http.get("/").headers["content-security-policy"]  # per page


# -- actions ------------------------------------------------------------------------------

def test_pausing_resuming_and_purging_a_queue_from_the_page(
    served: Served, http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str
) -> None:
    later_task(served, tasks, queue, "/purged")

    paused = post_action(http, "pause-queue", queue)

    assert paused.status_code == 303
    assert paused.headers["location"] == (
        f"/?done=pause-queue&name={queue.replace('/', '%2F')}")
    assert tasks.get_queue(name=queue).state == tasks_v2.Queue.State.PAUSED
    after = http.get(paused.headers["location"]).text
    assert f"Paused queue {queue}." in after
    assert row(after, "queues", short(queue))["Actions"] == "Resume Purge"

    assert post_action(http, "resume-queue", queue).status_code == 303
    assert tasks.get_queue(name=queue).state == tasks_v2.Queue.State.RUNNING

    assert post_action(http, "purge-queue", queue).status_code == 303
    assert list(tasks.list_tasks(parent=queue)) == []


def test_running_and_deleting_a_task_from_the_page(
    served: Served, http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str,
    prefix: str
) -> None:
    ran = later_task(served, tasks, queue, f"{prefix}/ran")
    deleted = later_task(served, tasks, queue, f"{prefix}/deleted")

    assert post_action(http, "run-task", ran.name).status_code == 303
    assert post_action(http, "delete-task", deleted.name).status_code == 303

    assert [d.path for d in served.worker.wait_under(prefix)] == [f"{prefix}/ran"]
    with pytest.raises(exceptions.NotFound):
        tasks.get_task(name=deleted.name)


def test_running_pausing_and_resuming_a_job_from_the_page(
    served: Served, http: httpx.Client, ident: str, prefix: str
) -> None:
    scheduler = served.emulator.scheduler_client()
    job = scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{ident}", schedule="0 7 * * *",
        http_target=scheduler_v1.HttpTarget(uri=served.worker.url(f"{prefix}/job"))))

    assert post_action(http, "run-job", job.name).status_code == 303
    assert served.worker.wait_under(prefix)[0].headers["x-cloudscheduler"] == "true"
    assert post_action(http, "pause-job", job.name).status_code == 303
    assert scheduler.get_job(name=job.name).state == scheduler_v1.Job.State.PAUSED
    assert row(http.get("/").text, "jobs", short(job.name))["Next run"] == ""
    assert post_action(http, "resume-job", job.name).status_code == 303
    assert scheduler.get_job(name=job.name).state == scheduler_v1.Job.State.ENABLED


def test_an_action_answers_with_the_rpcs_error(
    http: httpx.Client, queue: str
) -> None:
    missing = f"{queue}/tasks/already-gone"

    response = post_action(http, "run-task", missing)

    assert response.status_code == 404
    assert (f'<p role="alert">Run task {missing} failed: NOT_FOUND: '
            "Requested entity was not found.</p>") in response.text


@pytest.mark.parametrize(("headers", "refused"), [
    ({"Origin": "http://attacker.example"}, "Origin 'http://attacker.example'"),
    ({"Origin": "null"}, "Origin 'null'"),
    ({"Origin": "", "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site 'cross-site'"),
    ({"Host": "rebound.attacker.example"}, "Host 'rebound.attacker.example'"),
], ids=["foreign-origin", "opaque-origin", "cross-site", "rebound-host"])
def test_a_page_of_another_origin_cannot_run_an_action(
    http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str,
    headers: dict[str, str], refused: str
) -> None:
    origin = headers.pop("Origin", None)
    token = re.search(r'name="token" value="([^"]+)"', http.get("/").text)
    assert token is not None
    if origin == "":  # no Origin at all: httpx sends none unless told
        response = http.post("/dashboard/actions/pause-queue",
                             data={"token": token.group(1), "name": queue}, headers=headers)
    else:
        response = post_action(http, "pause-queue", queue, token=token.group(1),
                               origin=origin, **headers)

    assert response.status_code == 403
    assert refused in response.json()["error"]["message"]
    assert tasks.get_queue(name=queue).state == tasks_v2.Queue.State.RUNNING


@pytest.mark.parametrize("token", ["", "a-guess"], ids=["no-token", "wrong-token"])
def test_a_form_without_this_emulators_token_is_refused(
    http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str, token: str
) -> None:
    response = post_action(http, "pause-queue", queue, token=token)

    assert response.status_code == 403
    assert "does not carry this emulator&#39;s dashboard token" in response.text
    assert tasks.get_queue(name=queue).state == tasks_v2.Queue.State.RUNNING


def test_an_action_takes_only_a_form(
    http: httpx.Client, tasks: tasks_v2.CloudTasksClient, queue: str
) -> None:
    token = re.search(r'name="token" value="([^"]+)"', http.get("/").text)
    assert token is not None

    response = http.post("/dashboard/actions/pause-queue",
                         json={"token": token.group(1), "name": queue},
                         headers={"Origin": str(http.base_url).rstrip("/")})

    assert response.status_code == 403
    assert "takes a form (application/x-www-form-urlencoded), not &#39;application/json&#39;" \
        in response.text
    assert tasks.get_queue(name=queue).state == tasks_v2.Queue.State.RUNNING


# -- in process: what needs no emulator process ----------------------------------------------

def in_process() -> Dashboard:
    clock = VirtualClock(datetime(2026, 3, 8, tzinfo=timezone.utc))
    return Dashboard(CloudTasksEngine(clock), CloudSchedulerEngine(clock), AttemptLog(clock))


def test_a_pubsub_target_job_shows_its_topic() -> None:
    dashboard = in_process()
    topic = LOCATION.split("/locations/")[0] + "/topics/cron-topic"
    dashboard.scheduler.create_job(scheduler_v1.CreateJobRequest(
        parent=LOCATION, job=scheduler_v1.Job(
            name=f"{LOCATION}/jobs/tick", schedule="0 * * * *",
            pubsub_target=scheduler_v1.PubsubTarget(topic_name=topic, data=b"x"))))

    [job] = dashboard.state()["jobs"]

    assert job["target"] == f"Pub/Sub {topic}"


def test_an_unknown_action_names_the_actions_there_are() -> None:
    response = in_process().act("explode-queue", HttpRequest("POST", "/", "", {}, b""))

    assert response.status == 404
    assert b"The dashboard has no action &#39;explode-queue&#39;; it has delete-task," \
        in response.body


def test_without_jinja2_the_page_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    router = Router()
    in_process().add_routes(router)

    response = router(HttpRequest("GET", "/", "", {}, b""))

    assert response.status == 503
    assert response.body == (b"The emulator's dashboard needs Jinja2, which is not installed: "
                             b'run `pip install "fastapi-cloud-tasks[emulator]"`.\n')


def test_the_emulator_imports_jinja2_on_the_first_page_not_at_start() -> None:
    code = ("import sys\nfrom fastapi_cloud_tasks.emulator.server import Emulator\n"
            "emulator = Emulator(port=0)\nrouter = emulator._http_routes()\n"
            "print('jinja2' in sys.modules)\n"
            "from fastapi_cloud_tasks.emulator.http_server import HttpRequest\n"
            "router(HttpRequest('GET', '/', '', {}, b''))\nprint('jinja2' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)

    assert done.stdout.split() == ["False", "True"]
