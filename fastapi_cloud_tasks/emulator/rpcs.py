"""The RPCs the emulator serves, and how one runs on its engine: shared by gRPC and REST.

Both surfaces take the request message, call the engine's method of the same name in
snake_case and send back its answer as protobuf. Keeping the table and that call here is what
makes the two transports answer alike: the same engine errors, the same INTERNAL for a bug.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import Message

__all__ = ["LOCATIONS", "SCHEDULER", "TASKS", "RawRequest", "Rpc", "Service", "bind"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")


@dataclass(frozen=True)
class Rpc:
    name: str  # as in the service definition: "CreateTask"
    method: str  # the engine's method: "create_task"
    request_type: Any  # the proto-plus request class, or a RawRequest


@dataclass(frozen=True)
class Service:
    name: str  # the gRPC service: "google.cloud.tasks.v2.CloudTasks"
    rpcs: tuple[Rpc, ...]


class RawRequest:
    """A raw protobuf request class (IAM's, Locations') with the proto-plus class methods
    the transports call on a request type: `pb()`, `wrap()`, `deserialize()`."""

    def __init__(self, message_class: Any) -> None:
        self._class = message_class
        self.__name__ = message_class.__name__

    def pb(self) -> Any:
        return self._class

    def wrap(self, message: Message) -> Message:
        return message

    def deserialize(self, data: bytes) -> Message:
        message: Message = self._class.FromString(data)
        return message


def _rpcs(module: Any, *names: str, raw: bool = False) -> tuple[Rpc, ...]:
    """Each RPC with its engine method (snake_case) and its request class from `module`."""
    return tuple(Rpc(name, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(),
                     RawRequest(getattr(module, f"{name}Request")) if raw
                     else getattr(module, f"{name}Request")) for name in names)


TASKS = Service("google.cloud.tasks.v2.CloudTasks", _rpcs(
    tasks_v2, "ListQueues", "GetQueue", "CreateQueue", "UpdateQueue", "DeleteQueue",
    "PurgeQueue", "PauseQueue", "ResumeQueue", "ListTasks", "GetTask", "CreateTask",
    "BatchCreateTasks", "DeleteTask", "RunTask",
) + _rpcs(iam_policy_pb2, "GetIamPolicy", "SetIamPolicy", "TestIamPermissions", raw=True))
SCHEDULER = Service("google.cloud.scheduler.v1.CloudScheduler", _rpcs(
    scheduler_v1, "ListJobs", "GetJob", "CreateJob", "UpdateJob", "DeleteJob", "PauseJob",
    "ResumeJob", "RunJob",
))
# The mixin both clients expose (`list_locations`, `get_location`): its own gRPC service, and
# REST routes under each API's prefix (/v2/... for Cloud Tasks, /v1/... for Cloud Scheduler).
LOCATIONS = Service("google.cloud.location.Locations",
                    _rpcs(locations_pb2, "ListLocations", "GetLocation", raw=True))


def bind(service: Service, rpc: Rpc, engine: Any) -> Callable[[Any], Message]:
    """`rpc` on `engine`: takes the proto-plus request, returns the answer as protobuf (Empty
    for None). The engine's `google.api_core.exceptions` errors pass through unchanged; any
    other exception is logged and becomes `InternalServerError`, so one bad request never
    stops the server."""
    method = getattr(engine, rpc.method)

    def call(request: Any) -> Message:
        try:
            response = method(request)
        except exceptions.GoogleAPICallError:
            raise
        except Exception as exc:
            logger.exception("%s.%s failed", service.name, rpc.name)
            raise exceptions.InternalServerError(f"{rpc.name} failed in the emulator") from exc
        if response is None:
            return empty_pb2.Empty()
        # proto-plus messages unwrap to protobuf; operations are protobuf already.
        if isinstance(response, Message):
            return response
        return type(response).pb(response)

    return call
