"""gRPC method handlers that hand each request to an engine, in Google's wire format.

Requests and responses are the protobufs Google's clients send; an engine's
`google.api_core.exceptions` error becomes the gRPC status the real service would return, and
any other error an INTERNAL status (see `rpcs.bind`), so one bad request never stops the
server. The handlers are synchronous: they run on grpcio's thread pool (see `server`), never on
the event loop.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.api_core import exceptions

from fastapi_cloud_tasks.emulator.rpcs import SCHEDULER, TASKS, Rpc, Service, bind

__all__ = ["scheduler_handler", "tasks_handler"]


def _handler(service: Service, engine: Any) -> grpc.GenericRpcHandler:
    def method(rpc: Rpc) -> grpc.RpcMethodHandler:
        call = bind(service, rpc, engine)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return call(request)
            except exceptions.GoogleAPICallError as exc:
                context.abort(exc.grpc_status_code or grpc.StatusCode.UNKNOWN, exc.message)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=rpc.request_type.deserialize,
            response_serializer=lambda message: message.SerializeToString(),
        )

    handlers = {rpc.name: method(rpc) for rpc in service.rpcs}
    return grpc.method_handlers_generic_handler(service.name, handlers)


def tasks_handler(engine: Any) -> grpc.GenericRpcHandler:
    return _handler(TASKS, engine)


def scheduler_handler(engine: Any) -> grpc.GenericRpcHandler:
    return _handler(SCHEDULER, engine)
