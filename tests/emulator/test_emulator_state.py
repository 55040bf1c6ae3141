"""`--data-dir`: queues, tasks and jobs outlive the emulator process, stopped or killed.

Each test starts a real emulator process on a fresh directory, makes state with Google's
clients, stops it with SIGTERM or SIGKILL, starts another on the same directory and reads the
state back; an unusable directory or file is one line on stderr. In-memory stays the default
(the shared emulator runs without --data-dir).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from emulator_support import LOCATION, EmulatorProcess, StartEmulator, Target, http_task
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2

FULL = tasks_v2.Task.View.FULL
PROG = "python -m fastapi_cloud_tasks.emulator"


def make_state(emulator: EmulatorProcess, target: Target, queue_name: str, prefix: str,
               ) -> tuple[tasks_v2.Queue, list[tasks_v2.Task], scheduler_v1.Job]:
    """A paused queue with its own settings, two tasks (one named, scheduled, with a body), a
    deleted named task, and a job: everything as the emulator answered it."""
    tasks, scheduler = emulator.tasks_client(), emulator.scheduler_client()
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=queue_name, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7),
        retry_config=tasks_v2.RetryConfig(max_attempts=4)))
    queue = tasks.pause_queue(name=queue_name)
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    created = [
        tasks.create_task(request={"parent": queue_name, "response_view": FULL, "task": http_task(
            target.url(f"{prefix}/named"), name=f"{queue_name}/tasks/order-1", body=b"{}",
            headers={"Content-Type": "application/json"}, schedule_time=later)}),
        tasks.create_task(request={"parent": queue_name, "response_view": FULL,
                                   "task": http_task(target.url(f"{prefix}/generated"))}),
    ]
    gone = tasks.create_task(parent=queue_name, task=http_task(
        target.url(f"{prefix}/gone"), name=f"{queue_name}/tasks/gone"))
    tasks.delete_task(name=gone.name)
    job = scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{prefix.strip('/')}", schedule="0 9 * * 1",
        time_zone="Europe/Paris", http_target=scheduler_v1.HttpTarget(uri=target.url(prefix))))
    return queue, created, job


def assert_state(emulator: EmulatorProcess, queue: tasks_v2.Queue, created: list[tasks_v2.Task],
                 job: scheduler_v1.Job) -> None:
    tasks, scheduler = emulator.tasks_client(), emulator.scheduler_client()
    assert tasks.get_queue(name=queue.name) == queue
    listed = list(tasks.list_tasks(request={"parent": queue.name, "response_view": FULL}))
    assert sorted(listed, key=lambda t: t.name) == sorted(created, key=lambda t: t.name)
    with pytest.raises(exceptions.AlreadyExists):  # the deleted name is still reserved
        tasks.create_task(parent=queue.name, task=http_task(
            created[0].http_request.url, name=f"{queue.name}/tasks/gone"))
    assert scheduler.get_job(name=job.name) == job


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_paused_queue_its_tasks_and_a_job_survive_a_restart(
    start_emulator: StartEmulator, target: Target, tmp_path: Path, queue_name: str,
    prefix: str, sig: signal.Signals,
) -> None:
    data_dir = str(tmp_path / "state")
    first = start_emulator("--data-dir", data_dir)
    queue, created, job = make_state(first, target, queue_name, prefix)

    code = first.terminate(sig)  # at once after the last create returned

    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    second = start_emulator("--data-dir", data_dir)
    assert_state(second, queue, created, job)
    # The tasks are live, not only listed: resumed, they are delivered, each once.
    second.tasks_client().resume_queue(name=queue_name)
    deliveries = target.wait_under(prefix, 2, timeout=10, finished=True)
    assert sorted(d.path for d in deliveries) == [f"{prefix}/generated", f"{prefix}/named"]
    assert {d.retry_count for d in deliveries} == {0}


def test_a_retried_task_keeps_its_counters_and_schedule_across_kill_9(
    start_emulator: StartEmulator, target: Target, tmp_path: Path, queue_name: str,
    prefix: str,
) -> None:
    data_dir = str(tmp_path / "state")
    first = start_emulator("--data-dir", data_dir)
    tasks = first.tasks_client()
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=queue_name, retry_config=tasks_v2.RetryConfig(
            min_backoff=timedelta(hours=1), max_backoff=timedelta(hours=1))))
    created = tasks.create_task(parent=queue_name,
                                task=http_task(target.url(f"{prefix}/busy?status=503")))
    target.wait_under(prefix, finished=True)
    for _ in range(500):  # the outcome is recorded just after the answer: 10 s at least
        retried = tasks.get_task(request={"name": created.name, "response_view": FULL})
        if retried.dispatch_count:
            break
        time.sleep(0.02)
    assert retried.dispatch_count == 1

    first.terminate(signal.SIGKILL)

    second = start_emulator("--data-dir", data_dir)
    again = second.tasks_client().get_task(request={"name": created.name, "response_view": FULL})
    assert again == retried
    assert (again.dispatch_count, again.response_count) == (1, 1)
    assert again.last_attempt.response_status.code == 14  # UNAVAILABLE: the 503
    assert again.schedule_time >= datetime.now(timezone.utc) + timedelta(minutes=50)


def test_state_is_kept_only_with_data_dir(
    start_emulator: StartEmulator, target: Target, queue_name: str, prefix: str
) -> None:
    first = start_emulator()
    first.tasks_client().create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    first.terminate()

    second = start_emulator()

    with pytest.raises(exceptions.NotFound):
        second.tasks_client().get_queue(name=queue_name)


# -- an unusable directory or file: one line, exit 1 ---------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastapi_cloud_tasks.emulator", "--port", "0",
                           "--http-port", "0", *args],
                          capture_output=True, text=True, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1
    assert "READY" not in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{PROG}: ")
    assert text in line


def test_a_damaged_state_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "emulator-state.sqlite3").write_bytes(b"not a database, just bytes\n" * 200)

    result = run("--data-dir", str(tmp_path))

    assert_one_line(result, "emulator-state.sqlite3' is not a readable emulator state file "
                            "(file is not a database): move it away, or give another --data-dir.")


def test_a_foreign_sqlite_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "emulator-state.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    db.close()
    before = path.read_bytes()

    result = run("--data-dir", str(tmp_path))

    assert_one_line(result, "emulator-state.sqlite3' is a SQLite database, not an emulator "
                            "state file: move it away, or give another --data-dir.")
    assert path.read_bytes() == before
    assert not (tmp_path / "emulator-state.sqlite3-wal").exists()


def test_a_directory_in_use_by_another_emulator_is_one_line_and_exit_1(
    start_emulator: StartEmulator, tmp_path: Path,
) -> None:
    start_emulator("--data-dir", str(tmp_path))

    result = run("--data-dir", str(tmp_path))

    assert_one_line(result, "is in use by another emulator: stop it, or give another directory.")


def test_a_data_dir_that_is_a_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    result = run("--data-dir", str(tmp_path / "file"))

    assert_one_line(result, "file' cannot be used: File exists. Give a directory you can write.")
