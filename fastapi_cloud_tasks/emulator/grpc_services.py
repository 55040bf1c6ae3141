"""gRPC method handlers that hand each request to an engine, in Google's wire format.

Requests and responses are the protobufs Google's clients send; an engine's
`google.api_core.exceptions` error becomes the gRPC status the real service would return, and
any other error an INTERNAL status, so one bad request never stops the server. The handlers
are synchronous: they run on grpcio's thread pool (see `server`), never on the event loop.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.protobuf import empty_pb2

__all__ = ["scheduler_handler", "tasks_handler"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")

TASKS_RPCS: dict[str, tuple[str, Any]] = {
    "ListQueues": ("list_queues", tasks_v2.ListQueuesRequest),
    "GetQueue": ("get_queue", tasks_v2.GetQueueRequest),
    "CreateQueue": ("create_queue", tasks_v2.CreateQueueRequest),
    "UpdateQueue": ("update_queue", tasks_v2.UpdateQueueRequest),
    "DeleteQueue": ("delete_queue", tasks_v2.DeleteQueueRequest),
    "PurgeQueue": ("purge_queue", tasks_v2.PurgeQueueRequest),
    "PauseQueue": ("pause_queue", tasks_v2.PauseQueueRequest),
    "ResumeQueue": ("resume_queue", tasks_v2.ResumeQueueRequest),
    "ListTasks": ("list_tasks", tasks_v2.ListTasksRequest),
    "GetTask": ("get_task", tasks_v2.GetTaskRequest),
    "CreateTask": ("create_task", tasks_v2.CreateTaskRequest),
    "BatchCreateTasks": ("batch_create_tasks", tasks_v2.BatchCreateTasksRequest),
    "DeleteTask": ("delete_task", tasks_v2.DeleteTaskRequest),
    "RunTask": ("run_task", tasks_v2.RunTaskRequest),
}
SCHEDULER_RPCS: dict[str, tuple[str, Any]] = {
    "ListJobs": ("list_jobs", scheduler_v1.ListJobsRequest),
    "GetJob": ("get_job", scheduler_v1.GetJobRequest),
    "CreateJob": ("create_job", scheduler_v1.CreateJobRequest),
    "UpdateJob": ("update_job", scheduler_v1.UpdateJobRequest),
    "DeleteJob": ("delete_job", scheduler_v1.DeleteJobRequest),
    "PauseJob": ("pause_job", scheduler_v1.PauseJobRequest),
    "ResumeJob": ("resume_job", scheduler_v1.ResumeJobRequest),
    "RunJob": ("run_job", scheduler_v1.RunJobRequest),
}


def _handler(service: str, rpcs: dict[str, tuple[str, Any]], engine: Any) -> grpc.GenericRpcHandler:
    def method(rpc: str, attribute: str, request_type: Any) -> grpc.RpcMethodHandler:
        call = getattr(engine, attribute)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                response = call(request)
            except exceptions.GoogleAPICallError as exc:
                code = exc.grpc_status_code or grpc.StatusCode.UNKNOWN
                context.abort(code, exc.message)
            except Exception:
                logger.exception("%s.%s failed", service, rpc)
                context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed in the emulator")
            if response is None:
                return empty_pb2.Empty()
            # proto-plus messages unwrap to protobuf; operations are protobuf already.
            if hasattr(response, "SerializeToString"):
                return response
            return type(response).pb(response)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=lambda data: request_type.deserialize(data),
            response_serializer=lambda message: message.SerializeToString(),
        )

    handlers = {rpc: method(rpc, attr, kind) for rpc, (attr, kind) in rpcs.items()}
    return grpc.method_handlers_generic_handler(service, handlers)


def tasks_handler(engine: Any) -> grpc.GenericRpcHandler:
    return _handler("google.cloud.tasks.v2.CloudTasks", TASKS_RPCS, engine)


def scheduler_handler(engine: Any) -> grpc.GenericRpcHandler:
    return _handler("google.cloud.scheduler.v1.CloudScheduler", SCHEDULER_RPCS, engine)
