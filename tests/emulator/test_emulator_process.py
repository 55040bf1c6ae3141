"""The emulator as a process: its command line, stopping on a signal, and a load of 5,000
tasks from concurrent clients. Each test starts (and always kills) its own emulator."""

from __future__ import annotations

import collections
import itertools
import signal
import threading
import time
from datetime import timedelta

import pytest
from emulator_support import LOCATION, StartEmulator, Target, http_task
from google.cloud import tasks_v2

from fastapi_cloud_tasks.emulator.__main__ import main

LOAD_TASKS = 5000
LOAD_CLIENTS = 4
LOAD_BUDGET = 120.0  # seconds from the first create to the last delivery (a busy 2-core box: ~65)


def test_queues_given_on_the_command_line_exist_with_their_settings(
    start_emulator: StartEmulator, target: Target, ident: str, prefix: str
) -> None:
    name = f"{LOCATION}/queues/{ident}"
    emulator = start_emulator("--queue", f"{name},rate=10,concurrent=7,max_attempts=5,"
                              "min_backoff=0.5,max_backoff=2,max_doublings=1", "-q")
    client = emulator.tasks_client()

    queue = client.get_queue(name=name)

    assert queue.rate_limits.max_dispatches_per_second == 10
    assert queue.rate_limits.max_concurrent_dispatches == 7
    assert queue.retry_config.max_attempts == 5
    assert queue.retry_config.min_backoff == timedelta(seconds=0.5)
    assert queue.retry_config.max_backoff == timedelta(seconds=2)
    assert queue.retry_config.max_doublings == 1
    assert queue.state == tasks_v2.Queue.State.RUNNING
    client.create_task(parent=name, task=http_task(target.url(f"{prefix}/cli")))
    target.wait_under(prefix)


@pytest.mark.parametrize("argument", ["projects/p/locations/l/queues/q,speed=3",
                                      "projects/p/locations/l/queues/q,rate="])
def test_a_bad_queue_argument_is_a_usage_error(
    argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0", "--queue", argument])

    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "queue setting" in captured.err
    assert "READY" not in captured.out


def test_max_in_flight_bounds_the_requests_open_at_once_and_the_rest_still_go(
    start_emulator: StartEmulator, target: Target, queue_name: str, prefix: str
) -> None:
    emulator = start_emulator("--max-in-flight", "2", "-q")
    client = emulator.tasks_client()
    # All four due at once (created on a paused queue): created one by one on a running
    # queue, a create slower than the 0.5 s answer on a loaded machine left one open at a time.
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    client.pause_queue(name=queue_name)
    for index in range(4):
        client.create_task(parent=queue_name,
                           task=http_task(target.url(f"{prefix}/{index}?sleep=0.5")))
    client.resume_queue(name=queue_name)

    deliveries = target.wait_under(prefix, 4, timeout=10, finished=True)

    # +1 as a request arrives, -1 as it is answered (an answer sorts before an arrival at the
    # same instant): the running sum is how many were open at once.
    moments = sorted([(d.received, 1) for d in deliveries]
                     + [(d.finished, -1) for d in deliveries if d.finished is not None])
    open_at_once = max(itertools.accumulate(step for _, step in moments))
    assert open_at_once == 2


def test_max_in_flight_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0", "--max-in-flight", "0"])

    assert exit_info.value.code == 2
    assert "--max-in-flight 0: give 1 or more" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_emulator_gracefully_after_the_delivery_in_flight(
    start_emulator: StartEmulator, target: Target, queue_name: str, prefix: str, sig: int
) -> None:
    emulator = start_emulator("--auto-create-queues")
    client = emulator.tasks_client()
    client.create_task(parent=queue_name,
                       task=http_task(target.url(f"{prefix}/slow?sleep=1.5")))
    [in_flight] = target.wait_under(prefix)

    started = time.monotonic()
    code = emulator.terminate(sig, timeout=10)
    elapsed = time.monotonic() - started

    assert code == 0, emulator.log()
    assert elapsed < 10
    assert in_flight.finished is not None  # it was given its grace period, not cut off
    assert in_flight.status == 200
    assert "emulator stopped after 1 deliveries" in emulator.log()


def test_concurrent_clients_create_5000_tasks_and_each_is_delivered_exactly_once(
    start_emulator: StartEmulator, target: Target, ident: str, prefix: str,
    record_property: pytest.RecordProperty, capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = start_emulator("--max-rate", "100000", "-q")
    name = f"{LOCATION}/queues/{ident}"
    admin = emulator.tasks_client()
    admin.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=name, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=5000)))
    url = target.url(f"{prefix}/load")
    created: list[list[str]] = [[] for _ in range(LOAD_CLIENTS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(LOAD_CLIENTS + 1)

    def create(index: int) -> None:
        client = emulator.tasks_client()  # each thread its own channel
        try:
            task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url))
            barrier.wait(30)
            for _ in range(LOAD_TASKS // LOAD_CLIENTS):
                response = client.create_task(parent=name, task=task, timeout=30)
                created[index].append(response.name.rsplit("/", 1)[1])
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=create, args=(i,), daemon=True)
               for i in range(LOAD_CLIENTS)]
    for thread in threads:
        thread.start()
    barrier.wait(30)
    started, started_wall = time.monotonic(), time.time()
    for thread in threads:
        thread.join(max(0.0, LOAD_BUDGET - (time.monotonic() - started)))
    creating = time.monotonic() - started
    assert not errors, errors[:3]
    assert not any(thread.is_alive() for thread in threads), "creating did not finish in time"
    names = [n for per_client in created for n in per_client]
    assert len(names) == len(set(names)) == LOAD_TASKS

    deliveries = target.wait_under(prefix, LOAD_TASKS, finished=True,
                                   timeout=max(1.0, LOAD_BUDGET - (time.monotonic() - started)))
    end_to_end = max(d.finished or 0.0 for d in deliveries) - started_wall
    time.sleep(0.5)  # a duplicate would arrive now

    deliveries = target.under(prefix)
    counts = collections.Counter(d.task_name for d in deliveries)
    assert set(counts) == set(names)
    assert [n for n, c in counts.items() if c != 1] == []
    assert {d.status for d in deliveries} == {200}
    assert {d.headers["x-cloudtasks-taskretrycount"] for d in deliveries} == {"0"}
    assert list(admin.list_tasks(parent=name, timeout=30)) == []
    rate = LOAD_TASKS / creating
    record_property("creates_per_second", round(rate))
    record_property("end_to_end_seconds", round(end_to_end, 2))
    with capsys.disabled():
        print(f"\n[emulator load] {LOAD_TASKS} tasks from {LOAD_CLIENTS} clients: created in "
              f"{creating:.2f} s ({rate:.0f}/s), all delivered once within "
              f"{end_to_end:.2f} s of the first create")
