"""Queue.http_target through Google's real CloudTasksClient: what every HTTP task of the queue
is sent with (Google's HttpTarget and UriOverride reference), and the settings refused."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, Dispatch
from fastapi_cloud_tasks.engine.transports import tasks_client

LOCATION = "projects/test-project/locations/asia-south1"
QUEUE = f"{LOCATION}/queues/routed"
URL = "https://worker.example.com/tasks/work?a=1"
SA = "sender@test-project.iam.gserviceaccount.com"
Scheme = tasks_v2.UriOverride.Scheme
Enforce = tasks_v2.UriOverride.UriOverrideEnforceMode


@pytest.fixture
def engine() -> CloudTasksEngine:
    return CloudTasksEngine(VirtualClock(datetime(2026, 4, 1, tzinfo=timezone.utc)))


@pytest.fixture
def client(engine: CloudTasksEngine) -> tasks_v2.CloudTasksClient:
    return tasks_client(engine)


def sent(engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
         target: tasks_v2.HttpTarget | None, **http: Any) -> Dispatch:
    """The first attempt of one task with `http` on a queue with the HTTP target `target`."""
    queue = tasks_v2.Queue(name=QUEUE, http_target=target)
    client.create_queue(parent=LOCATION, queue=queue)
    http.setdefault("url", URL)
    client.create_task(parent=QUEUE, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(**http)))
    dispatch = engine.take_due()
    assert dispatch is not None
    return dispatch


def override(**parts: Any) -> tasks_v2.HttpTarget:
    return tasks_v2.HttpTarget(uri_override=tasks_v2.UriOverride(**parts))


@pytest.mark.parametrize(("parts", "url"), [
    ({"host": "other.example.net"}, "https://other.example.net/tasks/work?a=1"),
    ({"scheme": Scheme.HTTP, "port": 8080}, "http://worker.example.com:8080/tasks/work?a=1"),
    ({"path_override": {"path": "/v2/run"}}, "https://worker.example.com/v2/run?a=1"),
    ({"query_override": {"query_params": "b=2&c=3"}}, "https://worker.example.com/tasks/work?b=2&c=3"),
    ({"query_override": {"query_params": ""}}, "https://worker.example.com/tasks/work"),
    ({"host": "10.0.0.7", "port": 9000, "path_override": {"path": "/x"},
      "uri_override_enforce_mode": Enforce.ALWAYS}, "https://10.0.0.7:9000/x?a=1"),
])
def test_uri_override_replaces_the_parts_it_sets(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient, parts: dict[str, Any], url: str,
) -> None:
    assert sent(engine, client, override(**parts)).url == url


def test_port_zero_clears_the_tasks_port(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    dispatch = sent(engine, client, override(port=0), url="http://worker.example.com:8123/x")
    assert dispatch.url == "http://worker.example.com/x"


def test_if_not_exists_keeps_a_tasks_own_url(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    target = override(host="other.example.net", uri_override_enforce_mode=Enforce.IF_NOT_EXISTS)
    assert sent(engine, client, target).url == URL


def test_http_method_overrides_the_tasks_and_a_get_drops_the_body(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    target = tasks_v2.HttpTarget(http_method=tasks_v2.HttpMethod.GET)
    dispatch = sent(engine, client, target, http_method=tasks_v2.HttpMethod.POST, body=b"{}")
    assert (dispatch.method, dispatch.body) == ("GET", b"")
    assert "Content-Length" not in dispatch.headers


def test_header_overrides_add_and_replace_whatever_the_case(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    target = tasks_v2.HttpTarget(header_overrides=[
        {"header": {"key": "Content-Type", "value": "application/json"}},
        {"header": {"key": "X-Tenant", "value": "blue"}},
        {"header": {"key": "User-Agent", "value": "mine"}},  # Cloud Tasks sets its own
    ])
    dispatch = sent(engine, client, target, headers={"content-type": "text/plain", "X-Keep": "1"})
    assert dispatch.headers["Content-Type"] == "application/json"
    assert "content-type" not in dispatch.headers
    assert (dispatch.headers["X-Tenant"], dispatch.headers["X-Keep"]) == ("blue", "1")
    assert dispatch.headers["User-Agent"] == "Google-Cloud-Tasks"


def test_a_queue_oidc_token_replaces_the_tasks(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    target = tasks_v2.HttpTarget(oidc_token=tasks_v2.OidcToken(
        service_account_email=SA, audience="https://audience.example"))
    dispatch = sent(engine, client, target)  # the task itself has no token
    token = dispatch.headers["Authorization"].removeprefix("Bearer ")
    part = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert (claims["email"], claims["aud"]) == (SA, "https://audience.example")


def test_a_queue_without_http_target_sends_the_task_as_it_is(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    dispatch = sent(engine, client, None, http_method=tasks_v2.HttpMethod.PUT, body=b"x")
    assert (dispatch.url, dispatch.method, dispatch.body) == (URL, "PUT", b"x")


def test_update_queue_without_a_mask_replaces_every_field_http_target_included(
    engine: CloudTasksEngine, client: tasks_v2.CloudTasksClient,
) -> None:
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=3)))

    updated = client.update_queue(queue=tasks_v2.Queue(
        name=QUEUE, http_target=override(host="other.example.net")))

    assert updated.http_target.uri_override.host == "other.example.net"
    assert updated.rate_limits.max_dispatches_per_second == 500  # unset: back to the default
    client.create_task(parent=QUEUE, task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=URL)))
    dispatch = engine.take_due()
    assert dispatch is not None
    assert dispatch.url.startswith("https://other.example.net/")


def test_update_queue_with_a_mask_sets_only_the_http_target(
    client: tasks_v2.CloudTasksClient,
) -> None:
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=QUEUE, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=3)))
    updated = client.update_queue(
        queue=tasks_v2.Queue(name=QUEUE, http_target=override(port=81)),
        update_mask=field_mask_pb2.FieldMask(paths=["http_target"]))
    assert updated.http_target.uri_override.port == 81
    assert updated.rate_limits.max_dispatches_per_second == 3


@pytest.mark.parametrize(("target", "message"), [
    (override(host=""), "UriOverride.host cannot be an empty string"),
    (override(port=70000), "UriOverride.port 70000"),
    (override(host="bad host"), "has characters no host name has"),
    (tasks_v2.HttpTarget(http_method=99), "http_method 99 is not an HttpMethod"),
    (tasks_v2.HttpTarget(header_overrides=[{"header": {"key": "X-Google-Id", "value": "1"}}]),
     "'X-Google-Id' is reserved"),
    (tasks_v2.HttpTarget(header_overrides=[{"header": {"key": "X-A", "value": "a\r\nb"}}]),
     "cannot be sent"),
    (tasks_v2.HttpTarget(oidc_token=tasks_v2.OidcToken(service_account_email=SA)),
     "needs both service_account_email and audience"),
    (tasks_v2.HttpTarget(oauth_token=tasks_v2.OAuthToken(service_account_email=SA)),
     "needs both service_account_email and scope"),
])
def test_a_target_that_cannot_be_applied_is_refused_on_create_and_update(
    client: tasks_v2.CloudTasksClient, target: tasks_v2.HttpTarget, message: str,
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE, http_target=target))
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=QUEUE))
    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.update_queue(queue=tasks_v2.Queue(name=QUEUE, http_target=target),
                            update_mask=field_mask_pb2.FieldMask(paths=["http_target"]))
    assert "http_target" not in client.get_queue(name=QUEUE)
