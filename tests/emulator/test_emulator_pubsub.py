"""Pub/Sub target jobs in the emulator: without `PUBSUB_EMULATOR_HOST` each published message
is kept in a bounded list and logged; with it set but `google-cloud-pubsub` missing, one
warning says what to install and messages are kept all the same; with it and the package,
Google's PublisherClient publishes to a small Pub/Sub gRPC server of the test's (skipped where
the [pubsub] extra is not installed). On a virtual clock (see test_emulator_virtual_clock.py),
jobs created through Google's real client over gRPC."""

from __future__ import annotations

import logging
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from emulator_support import LOCATION
from google.cloud import scheduler_v1
from test_emulator_virtual_clock import START, VirtualEmulator

from fastapi_cloud_tasks import emulator_scheduler_client

TOPIC = LOCATION.split("/locations/")[0] + "/topics/cron-topic"
ENV = "PUBSUB_EMULATOR_HOST"


@pytest.fixture
def make_virtual() -> Iterator[list[Any]]:
    made: list[Any] = []  # emulators and clients, closed in turn
    yield made
    for thing in reversed(made):
        thing.transport.close() if hasattr(thing, "transport") else thing.stop()


def start(made: list[Any]) -> tuple[VirtualEmulator, scheduler_v1.CloudSchedulerClient]:
    virtual = VirtualEmulator()
    made.append(virtual)
    client = emulator_scheduler_client(f"127.0.0.1:{virtual.emulator.port}")
    made.append(client)
    return virtual, client


def create_hourly(client: scheduler_v1.CloudSchedulerClient, job_id: str,
                  **settings: Any) -> scheduler_v1.Job:
    return client.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{job_id}", schedule="0 * * * *",
        pubsub_target=scheduler_v1.PubsubTarget(
            topic_name=TOPIC, data=b"Hello", attributes={"kind": "tick"}), **settings))


def test_without_a_pubsub_emulator_messages_are_kept_and_logged(
    make_virtual: list[Any], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    virtual, client = start(make_virtual)
    job = create_hourly(client, "tick")
    caplog.set_level(logging.INFO, logger="fastapi_cloud_tasks.emulator")

    virtual.settle(timedelta(hours=2))

    kept = list(virtual.emulator.dispatcher.pubsub.published)
    assert [(m.job_name, m.topic_name, m.data, m.attributes, m.message_id) for m in kept] == [
        (job.name, TOPIC, b"Hello", {"kind": "tick"}, None)] * 2
    assert [m.schedule_time for m in kept] == [START + timedelta(hours=h) for h in (1, 2)]
    logged = [r.getMessage() for r in caplog.records if "message for" in r.getMessage()]
    assert logged == [f"job {job.name}: message for {TOPIC} kept (5 bytes, attributes "
                      "['kind'])"] * 2
    shown = client.get_job(name=job.name)
    assert shown.status.code == 0
    assert shown.last_attempt_time == START + timedelta(hours=2)


def test_pubsub_emulator_host_without_the_extra_warns_once_and_keeps_messages(
    make_virtual: list[Any], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.pubsub_v1", None)  # as if not installed
    monkeypatch.setenv(ENV, "127.0.0.1:8085")
    virtual, client = start(make_virtual)
    create_hourly(client, "tick")
    caplog.set_level(logging.INFO, logger="fastapi_cloud_tasks.emulator")

    for _ in range(3):
        virtual.settle(timedelta(hours=1))

    warnings = [r.getMessage() for r in caplog.records if ENV in r.getMessage()]
    assert warnings == [
        "PUBSUB_EMULATOR_HOST=127.0.0.1:8085 is set but google-cloud-pubsub is not installed: "
        "Pub/Sub target jobs' messages are kept in the emulator and logged instead. Install "
        "it with: pip install 'fastapi-cloud-tasks[pubsub]'"]
    assert len(virtual.emulator.dispatcher.pubsub.published) == 3


class FakePubsub:
    """A Pub/Sub emulator's Publish RPC and nothing else, on grpcio: what the emulator's
    publisher (Google's own `PublisherClient`) sends is what it records."""

    def __init__(self, topics: tuple[str, ...] = (TOPIC,)) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc
        from google.pubsub_v1.types import PublishRequest, PublishResponse

        self.requests: list[Any] = []

        def publish(request: Any, context: Any) -> Any:
            self.requests.append(request)
            if request.topic not in topics:  # as Pub/Sub answers for a topic nobody created
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            first = len(self.requests) * 100
            return PublishResponse(message_ids=[str(first + i) for i in range(len(
                request.messages))])

        handler = grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", {
            "Publish": grpc.unary_unary_rpc_method_handler(
                publish, request_deserializer=PublishRequest.deserialize,
                response_serializer=PublishResponse.serialize)})
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


def test_with_pubsub_emulator_host_messages_are_published_there(
    make_virtual: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("google.cloud.pubsub_v1",
                        reason="the [pubsub] extra (google-cloud-pubsub) is not installed")
    fake = FakePubsub()
    make_virtual.insert(0, fake)  # stopped last
    monkeypatch.setenv(ENV, f"127.0.0.1:{fake.port}")
    virtual, client = start(make_virtual)
    job = create_hourly(client, "tick")

    virtual.settle(timedelta(hours=1))

    [request] = fake.requests
    [message] = request.messages
    assert (request.topic, message.data, dict(message.attributes)) == (
        TOPIC, b"Hello", {"kind": "tick"})
    [kept] = virtual.emulator.dispatcher.pubsub.published
    assert kept.message_id == "100"
    assert client.get_job(name=job.name).status.code == 0


def test_a_publish_the_pubsub_emulator_refuses_fails_the_run_and_is_retried(
    make_virtual: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("google.cloud.pubsub_v1",
                        reason="the [pubsub] extra (google-cloud-pubsub) is not installed")
    fake = FakePubsub(topics=())  # the topic was never created there
    make_virtual.insert(0, fake)
    monkeypatch.setenv(ENV, f"127.0.0.1:{fake.port}")
    virtual, client = start(make_virtual)
    job = create_hourly(client, "tick", retry_config=scheduler_v1.RetryConfig(
        retry_count=1, min_backoff_duration=timedelta(seconds=10)))

    virtual.settle(timedelta(hours=1))
    failed = client.get_job(name=job.name)
    virtual.settle(timedelta(seconds=10))

    assert (failed.status.code, failed.status.message) == (
        14, "The message could not be published to the Pub/Sub topic.")
    assert len(fake.requests) == 2  # the run and its one retry
    assert list(virtual.emulator.dispatcher.pubsub.published) == []


def test_kept_messages_are_listed_on_the_dashboard_escaped(
    make_virtual: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("jinja2", reason="the dashboard needs the [emulator] extra's Jinja2")
    monkeypatch.delenv(ENV, raising=False)
    virtual, client = start(make_virtual)
    job = create_hourly(client, "tick")
    client.update_job(job=scheduler_v1.Job(name=job.name, pubsub_target=scheduler_v1.PubsubTarget(
        topic_name=TOPIC, data=b"<script>alert(1)</script>", attributes={"kind": "tick"})))

    virtual.settle(timedelta(hours=1))

    url = f"http://127.0.0.1:{virtual.emulator.http_port}/dashboard/state"
    with urllib.request.urlopen(url, timeout=10) as response:
        page = response.read().decode()
    section = page.split('id="messages"', 1)[1]
    for shown in (TOPIC, "kind=tick", "kept here", "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert shown in section
    assert "<script>" not in section
