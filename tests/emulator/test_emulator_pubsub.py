"""Pub/Sub target jobs in the emulator: without `PUBSUB_EMULATOR_HOST` each published message
is kept in a bounded list and logged; with it set but `google-cloud-pubsub` missing, one
warning says what to install and messages are kept all the same. On a virtual clock (see
test_emulator_virtual_clock.py), created through Google's real client over gRPC."""

from __future__ import annotations

import importlib.util
import logging
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


def create_hourly(client: scheduler_v1.CloudSchedulerClient, job_id: str) -> scheduler_v1.Job:
    return client.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/{job_id}", schedule="0 * * * *",
        pubsub_target=scheduler_v1.PubsubTarget(
            topic_name=TOPIC, data=b"Hello", attributes={"kind": "tick"})))


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


@pytest.mark.skipif(importlib.util.find_spec("google.cloud.pubsub_v1") is not None,
                    reason="google-cloud-pubsub is installed: this checks the missing extra")
def test_pubsub_emulator_host_without_the_extra_warns_once_and_keeps_messages(
    make_virtual: list[Any], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
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
