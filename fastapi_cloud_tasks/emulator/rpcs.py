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
from google.protobuf import empty_pb2
from google.protobuf.message import Message

__all__ = ["SCHEDULER", "TASKS", "Rpc", "Service", "bind"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")


@dataclass(frozen=True)
class Rpc:
    name: str  # as in the service definition: "CreateTask"
    method: str  # the engine's method: "create_task"
    request_type: Any  # the proto-plus request class


@dataclass(frozen=True)
class Service:
    name: str  # the gRPC service: "google.cloud.tasks.v2.CloudTasks"
    rpcs: tuple[Rpc, ...]


def _rpcs(module: Any, *names: str) -> tuple[Rpc, ...]:
    """Each RPC with its engine method (snake_case) and its request class from `module`."""
    return tuple(Rpc(name, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(),
                     getattr(module, f"{name}Request")) for name in names)


TASKS = Service("google.cloud.tasks.v2.CloudTasks", _rpcs(
    tasks_v2, "ListQueues", "GetQueue", "CreateQueue", "UpdateQueue", "DeleteQueue",
    "PurgeQueue", "PauseQueue", "ResumeQueue", "ListTasks", "GetTask", "CreateTask",
    "BatchCreateTasks", "DeleteTask", "RunTask",
))
SCHEDULER = Service("google.cloud.scheduler.v1.CloudScheduler", _rpcs(
    scheduler_v1, "ListJobs", "GetJob", "CreateJob", "UpdateJob", "DeleteJob", "PauseJob",
    "ResumeJob", "RunJob",
))


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
