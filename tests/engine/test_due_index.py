"""The due-time index: dispatch order exactly as scanning every queue or job gave it, at a cost
that does not grow with the number of queues or jobs."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine, JobDispatch, JobRecord
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, Dispatch
from fastapi_cloud_tasks.engine.due_index import DueIndex
from fastapi_cloud_tasks.engine.queue_config import TokenBucket
from fastapi_cloud_tasks.engine.transports import scheduler_client, tasks_client

LOCATION = "projects/test-project/locations/asia-south1"
URL = "https://worker.example.com/tasks/work"
START = datetime(2024, 7, 17, 17, 11, 5, 266817, tzinfo=timezone.utc)


def test_due_index_gives_the_smallest_priority_skipping_replaced_and_discarded_keys() -> None:
    index: DueIndex[str] = DueIndex()
    index.set("a", (3, 0))
    index.set("b", (1, 0))
    index.set("c", (2, 0))
    index.set("b", (5, 0))  # moved later: its first entry is stale
    index.discard("c")
    assert index.peek() == ((3, 0), "a")
    index.discard("a")
    assert index.peek() == ((5, 0), "b")
    assert len(index) == 1
    assert "b" in index
    assert "a" not in index
    index.discard("b")
    assert index.peek() is None


def test_due_index_heap_stays_bounded_however_often_keys_move() -> None:
    index: DueIndex[int] = DueIndex()
    for step in range(10_000):
        index.set(step % 10, (step, 0))
    assert len(index._heap) <= 2 * len(index) + 65
    assert index.peek() == ((9990, 0), 0)


# -- the engine against the rule it replaced ------------------------------------------------


def scanned_next_due(engine: CloudTasksEngine, now: datetime) -> datetime | None:
    """`next_due_time` as it was: every queue looked at."""
    if any(not r.in_flight for r in engine._forced.values()):
        return now
    times = []
    for queue in engine._queues.values():
        top = engine._top(queue)
        if top is not None and queue.running and queue.in_flight < queue.max_concurrent:
            times.append(max(top.schedule_time, queue.bucket.ready_at(now)))
    return min(times, default=None)


def scanned_pick(engine: CloudTasksEngine, now: datetime) -> str | None:
    """The task `take_due` started when it looked at every queue."""
    forced = [r for r in engine._forced.values() if not r.in_flight]
    if forced:
        return min(forced, key=lambda r: r.seq).name
    best = None
    for queue in engine._queues.values():
        top = engine._top(queue)
        if (top is None or not queue.running or top.schedule_time > now
                or queue.in_flight >= queue.max_concurrent or queue.bucket.ready_at(now) > now):
            continue
        if best is None or (top.schedule_time, top.seq) < (best.schedule_time, best.seq):
            best = top
    return None if best is None else best.name


@pytest.mark.parametrize("seed", range(12))
def test_dispatch_order_and_due_times_are_those_of_scanning_every_queue(seed: int) -> None:
    # Given queues that are paused, resumed, purged, rate-limited and at their concurrency
    # limit, tasks created, deleted, forced and retried, and a clock moved in small and big steps
    rng = random.Random(seed)
    clock = VirtualClock(START)
    engine = CloudTasksEngine(clock)
    client = tasks_client(engine)
    queues = [f"{LOCATION}/queues/q{i}" for i in range(6)]
    for name in queues:
        client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
            name=name, retry_config=tasks_v2.RetryConfig(
                max_attempts=3, min_backoff=timedelta(seconds=rng.choice([0.1, 1, 5])))))
    in_flight: list[Dispatch] = []
    for _ in range(600):  # bounded: a fixed number of random steps
        now = clock.now()
        # Then after every step the engine agrees with the scan
        assert engine.next_due_time() == scanned_next_due(engine, now)
        action = rng.random()
        queue = rng.choice(queues)
        if action < 0.30:
            when = now + timedelta(seconds=rng.choice([0, 0, 0.5, 3, 60]))
            client.create_task(parent=queue, task=tasks_v2.Task(
                schedule_time=when, http_request=tasks_v2.HttpRequest(url=URL)))
        elif action < 0.55:
            expected = scanned_pick(engine, now)
            dispatch = engine.take_due()
            assert (None if dispatch is None else dispatch.record.name) == expected
            if dispatch is not None:
                in_flight.append(dispatch)
        elif action < 0.70 and in_flight:
            dispatch = in_flight.pop(rng.randrange(len(in_flight)))
            engine.finish(dispatch, rng.choice([200, 200, 500, 429, None]))
        elif action < 0.76:
            state = engine.get_queue(tasks_v2.GetQueueRequest(name=queue)).state
            if state == tasks_v2.Queue.State.PAUSED:
                client.resume_queue(name=queue)
            else:
                client.pause_queue(name=queue)
        elif action < 0.80:
            limits = tasks_v2.RateLimits(
                max_dispatches_per_second=rng.choice([1, 5, 500]),
                max_concurrent_dispatches=rng.choice([1, 2, 1000]))
            client.update_queue(queue=tasks_v2.Queue(name=queue, rate_limits=limits),
                                update_mask=field_mask_pb2.FieldMask(paths=["rate_limits"]))
        elif action < 0.82:
            client.purge_queue(name=queue)
        elif action < 0.86:
            pending = engine.pending(queue)
            if pending:
                record = rng.choice(pending)
                if rng.random() < 0.5:
                    client.delete_task(name=record.name)
                else:
                    client.run_task(name=record.name)
        else:
            due = engine.next_due_time()
            step = timedelta(seconds=rng.choice([0.001, 0.2, 1, 30]))
            clock.move_to(due if due is not None and rng.random() < 0.5 else now + step)


def test_a_dispatch_looks_at_the_due_queue_only_however_many_queues_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 1,000 queues each holding a task due tomorrow, and one queue with 20 tasks due now
    clock = VirtualClock(START)
    engine = CloudTasksEngine(clock)
    client = tasks_client(engine)
    for i in range(1000):
        client.create_task(parent=f"{LOCATION}/queues/idle-{i}", task=tasks_v2.Task(
            schedule_time=START + timedelta(days=1), http_request=tasks_v2.HttpRequest(url=URL)))
    for _ in range(20):
        client.create_task(parent=f"{LOCATION}/queues/busy",
                           task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=URL)))
    looked = 0
    real_ready_at = TokenBucket.ready_at

    def counting_ready_at(bucket: TokenBucket, now: datetime) -> datetime:
        nonlocal looked
        looked += 1
        return real_ready_at(bucket, now)

    monkeypatch.setattr(TokenBucket, "ready_at", counting_ready_at)
    # When a driver asks what is due and takes it, 20 times
    for _ in range(20):
        assert engine.next_due_time() == START
        dispatch = engine.take_due()
        assert dispatch is not None
        engine.finish(dispatch, 200)
    # Then each dispatch looked at a few queues' rate limits, not at the 1,000 idle ones
    assert looked <= 20 * 5
    assert engine.next_due_time() == START + timedelta(days=1)


# -- the scheduler against the rule it replaced ---------------------------------------------


def scanned_job_next_due(engine: CloudSchedulerEngine, now: datetime) -> datetime | None:
    """The scheduler's `next_due_time` as it was: every job looked at."""
    times = [now if r.forced else r.due_time() for r in engine._jobs.values()]
    return min((t for t in times if t is not None), default=None)


def scanned_job_pick(engine: CloudSchedulerEngine, now: datetime) -> str | None:
    due = [(now if r.forced else r.due_time(), r.seq, r) for r in engine._jobs.values()]
    ready = [(t, seq, r) for t, seq, r in due if t is not None and t <= now]
    return min(ready, key=lambda item: (item[0], item[1]))[2].name if ready else None


SCHEDULES = ["* * * * *", "*/5 * * * *", "0 * * * *", "0 0 1 1 *"]


def make_job(client: scheduler_v1.CloudSchedulerClient, job_id: str, schedule: str,
             retries: int) -> None:
    client.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{job_id}", schedule=schedule,
        http_target=scheduler_v1.HttpTarget(uri=URL),
        retry_config=scheduler_v1.RetryConfig(retry_count=retries)))


@pytest.mark.parametrize("seed", range(12))
def test_job_run_order_and_due_times_are_those_of_scanning_every_job(seed: int) -> None:
    # Given jobs created, updated, paused, resumed, forced and deleted, runs that fail and
    # retry or overlap the next occurrence, and a clock moved in small and big steps
    rng = random.Random(seed)
    clock = VirtualClock(START)
    engine = CloudSchedulerEngine(clock)
    client = scheduler_client(engine)
    ids = [f"job-{i}" for i in range(6)]
    for job_id in ids[:3]:
        make_job(client, job_id, rng.choice(SCHEDULES), rng.randrange(3))
    in_flight: list[JobDispatch] = []
    for _ in range(600):  # bounded: a fixed number of random steps
        now = clock.now()
        # Then after every step the engine agrees with the scan
        assert engine.next_due_time() == scanned_job_next_due(engine, now)
        action = rng.random()
        job_id = rng.choice(ids)
        record: JobRecord | None = engine._jobs.get(f"{LOCATION}/jobs/{job_id}")
        if action < 0.35:
            expected = scanned_job_pick(engine, now)
            dispatch = engine.take_due()
            assert (None if dispatch is None else dispatch.record.name) == expected
            if dispatch is not None:
                in_flight.append(dispatch)
        elif action < 0.55 and in_flight:
            dispatch = in_flight.pop(rng.randrange(len(in_flight)))
            engine.finish(dispatch, rng.choice([200, 200, 500, None]))
        elif action < 0.60 and record is None:
            make_job(client, job_id, rng.choice(SCHEDULES), rng.randrange(3))
        elif action < 0.64 and record is not None:
            client.delete_job(name=record.name)
        elif action < 0.70 and record is not None:
            if record.job.state == scheduler_v1.Job.State.PAUSED:
                client.resume_job(name=record.name)
            else:
                client.pause_job(name=record.name)
        elif action < 0.74 and record is not None:
            client.run_job(name=record.name)
        elif action < 0.77 and record is not None:
            client.update_job(job=scheduler_v1.Job(name=record.name,
                                                   schedule=rng.choice(SCHEDULES)))
        else:
            due = engine.next_due_time()
            step = timedelta(seconds=rng.choice([0.5, 5, 45, 600]))
            clock.move_to(due if due is not None and rng.random() < 0.5 else now + step)


def test_an_occurrence_looks_at_the_due_job_only_however_many_jobs_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 1,000 yearly jobs and one every-minute job
    clock = VirtualClock(START)
    engine = CloudSchedulerEngine(clock)
    client = scheduler_client(engine)
    for i in range(1000):
        make_job(client, f"yearly-{i}", "0 0 1 1 *", 0)
    make_job(client, "minutely", "* * * * *", 0)
    looked = 0
    real_due_time = JobRecord.due_time

    def counting_due_time(record: JobRecord) -> datetime | None:
        nonlocal looked
        looked += 1
        return real_due_time(record)

    monkeypatch.setattr(JobRecord, "due_time", counting_due_time)
    # When a driver runs 20 occurrences of the every-minute job
    for _ in range(20):
        due = engine.next_due_time()
        assert due is not None
        clock.move_to(due)
        dispatch = engine.take_due()
        assert dispatch is not None
        assert dispatch.record.name.endswith("/minutely")
        engine.finish(dispatch, 200)
    # Then each occurrence looked at a few jobs' due times, not at the 1,000 idle ones
    assert looked <= 20 * 10
