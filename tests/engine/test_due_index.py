"""The due-time index: dispatch order exactly as scanning every queue gave it, at a cost that
does not grow with the number of queues."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, Dispatch
from fastapi_cloud_tasks.engine.due_index import DueIndex
from fastapi_cloud_tasks.engine.queue_config import TokenBucket
from fastapi_cloud_tasks.engine.transports import tasks_client

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
