"""`CLOUD_TASKS_EMULATOR_HOST` / `CLOUD_SCHEDULER_EMULATOR_HOST`: an app whose builders have no
`client=` sends to the emulator with no credentials, in a process that has only those set.

The app runs in a child process with a bare environment: HOME in a temporary folder (no
application default credentials to find), no GOOGLE_APPLICATION_CREDENTIALS, no proxy. Google's
auth library would otherwise probe the GCE metadata server when it finds no credentials;
NO_GCE_CHECK keeps that probe (an address off this machine) from ever being sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from emulator_support import LOCATION, ROOT, EmulatorProcess, Target

APP = """
import json
import sys

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from fastapi_cloud_tasks import DelayedRouteBuilder, ScheduledRouteBuilder

BASE_URL, PREFIX, QUEUE, LOCATION = sys.argv[1:5]
tasks = APIRouter(prefix=PREFIX, route_class=DelayedRouteBuilder(
    base_url=BASE_URL, queue_path=QUEUE))
jobs = APIRouter(prefix=PREFIX, route_class=ScheduledRouteBuilder(
    base_url=BASE_URL, location_path=LOCATION))


@tasks.post("/ping")
def ping(n: int) -> None:
    pass


@jobs.post("/nightly")
def nightly(n: int) -> None:
    pass


app = FastAPI()


@app.post("/trigger")
async def trigger() -> dict[str, str]:
    sent = ping.delay(n=1)
    awaited = await ping.adelay(n=2)
    job = nightly.scheduler(name=PREFIX.strip("/"), schedule="0 3 * * *").schedule(n=3)
    return {"delay": sent.name, "adelay": awaited.name, "job": job.name}


app.include_router(tasks)
app.include_router(jobs)
with TestClient(app) as client:
    response = client.post("/trigger")
print(json.dumps(response.json()))
"""


def run_app(tmp_path: Path, target: Target, prefix: str, queue_name: str,
            **variables: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "NO_GCE_CHECK": "True",
        **variables,
    }
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    return subprocess.run(
        [sys.executable, str(script), target.base_url, prefix, queue_name, LOCATION],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_variables_send_delay_adelay_and_schedule_to_the_emulator(
    emulator: EmulatorProcess, target: Target, tmp_path: Path, prefix: str, queue_name: str
) -> None:
    # Given a child process whose only Google setting is the two variables
    done = run_app(tmp_path, target, prefix, queue_name,
                   CLOUD_TASKS_EMULATOR_HOST=emulator.address,
                   CLOUD_SCHEDULER_EMULATOR_HOST=emulator.address)

    # Then its tasks were created on the emulator and delivered, and so was its job
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent["delay"].startswith(f"{queue_name}/tasks/")
    assert sent["adelay"].startswith(f"{queue_name}/tasks/")
    deliveries = target.wait_under(f"{prefix}/ping", 2, timeout=10)
    assert sorted(d.query for d in deliveries) == ["n=1", "n=2"]
    scheduler = emulator.scheduler_client()
    job = scheduler.get_job(name=sent["job"])
    assert job.schedule == "0 3 * * *"
    assert job.http_target.uri == f"{target.base_url}{prefix}/nightly?n=3"
    scheduler.delete_job(name=job.name)


def test_without_the_variables_the_same_process_has_no_credentials(
    emulator: EmulatorProcess, target: Target, tmp_path: Path, prefix: str, queue_name: str
) -> None:
    """The control: the child's environment really holds no credentials."""
    done = run_app(tmp_path, target, prefix, queue_name)

    assert done.returncode != 0
    assert "DefaultCredentialsError" in done.stderr


@pytest.mark.parametrize("value", ["http://localhost:8123", "localhost"])
def test_a_variable_that_is_not_host_and_port_is_named_in_the_error(
    emulator: EmulatorProcess, target: Target, tmp_path: Path, prefix: str, queue_name: str,
    value: str,
) -> None:
    done = run_app(tmp_path, target, prefix, queue_name, CLOUD_TASKS_EMULATOR_HOST=value)

    assert done.returncode != 0
    assert (f"InvalidTaskOptionError: CLOUD_TASKS_EMULATOR_HOST={value!r}: expected HOST:PORT"
            in done.stderr)


def test_the_ready_output_prints_the_export_lines_to_copy(emulator: EmulatorProcess) -> None:
    lines = emulator.stdout_path.read_text().splitlines()
    assert lines[0] == f"READY {emulator.address} http={emulator.http_port}"
    assert lines[1:3] == [f"export CLOUD_TASKS_EMULATOR_HOST={emulator.address}",
                          f"export CLOUD_SCHEDULER_EMULATOR_HOST={emulator.address}"]
