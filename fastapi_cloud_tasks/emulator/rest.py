"""Cloud Tasks' and Cloud Scheduler's REST surface (HTTP/1.1 and JSON), for Google's clients
with `transport="rest"` and for curl.

The routes are not copied from Google's documentation: each RPC's HTTP rule (method, URI
template such as `/v2/{parent=projects/*/locations/*/queues/*}/tasks`, body field) is read
from the REST transport Google's client itself sends with (`_get_http_options()`), so the
emulator answers exactly the URLs the installed client builds. A request becomes the RPC's
request message as Google's transcoding defines it: the JSON body (the whole request or the
one field the rule names), then the query parameters (dotted field paths, camelCase or
snake_case, and so are the paths of an update mask), then the path variables. Unknown fields
are ignored, as protobuf's binary format ignores them over gRPC. The message then runs
through the very call gRPC uses (`rpcs.bind`); the answer is proto3 JSON (enums as numbers
when `$alt=json;enum-encoding=int` asks, as Google's clients do), an error Google's JSON
error body with the HTTP status of its class.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from google.api_core import exceptions
from google.cloud.scheduler_v1.services.cloud_scheduler.transports.rest import (
    CloudSchedulerRestTransport,
)
from google.cloud.tasks_v2.services.cloud_tasks.transports.rest import CloudTasksRestTransport
from google.protobuf import json_format
from google.protobuf.message import Message

from fastapi_cloud_tasks.emulator.http_server import HttpRequest, HttpResponse, Router, json_error
from fastapi_cloud_tasks.emulator.rpcs import SCHEDULER, TASKS, Rpc, Service, bind

__all__ = ["HttpRule", "add_rest_routes", "http_rules"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")

REST_TRANSPORTS: dict[str, Any] = {
    TASKS.name: CloudTasksRestTransport,
    SCHEDULER.name: CloudSchedulerRestTransport,
}
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")
_FIELD_MASK = "google.protobuf.FieldMask"


@dataclass(frozen=True)
class HttpRule:
    """One HTTP binding of an RPC, compiled for matching."""

    method: str  # "POST"
    template: str  # as Google writes it
    pattern: str  # a regular expression over the percent-encoded path
    variables: tuple[str, ...]  # the request field of each group, in order: "queue.name"
    body: str  # "" (no body), "*" (the whole request) or the request field it fills


def http_rules(service: Service, transport: Any = None) -> dict[str, list[HttpRule]]:
    """Every RPC of `service` with its HTTP rules, read from Google's REST transport (the
    service's own, or `transport` for a mixin such as Locations). An RPC the installed library
    has no rule for is logged and left out (it stays on gRPC)."""
    transport = transport or REST_TRANSPORTS[service.name]
    rules: dict[str, list[HttpRule]] = {}
    for rpc in service.rpcs:
        stub = getattr(transport, f"_{rpc.name}", None)
        options = getattr(stub, "_get_http_options", None)
        if options is None:
            logger.warning("%s.%s has no REST binding in this version of Google's client "
                           "library; it is served over gRPC only", service.name, rpc.name)
            continue
        rules[rpc.name] = [_compile(option) for option in options()]
    return rules


def _compile(option: dict[str, str]) -> HttpRule:
    template = option["uri"]
    parts: list[str] = []
    variables: list[str] = []
    end = 0
    for match in _VARIABLE.finditer(template):
        parts.append(_segments(template[end:match.start()]))
        parts.append(f"({_segments(match.group(2) or '*')})")
        variables.append(match.group(1))
        end = match.end()
    parts.append(_segments(template[end:]))
    return HttpRule(option["method"].upper(), template, "".join(parts), tuple(variables),
                    option.get("body", ""))


def _segments(template: str) -> str:
    """`*` is one path segment, `**` several. A raw `:` only ever starts the custom verb
    (`:pause`): Google's clients percent-encode one inside a value."""
    return "/".join("[^/:]+" if segment == "*" else "[^:]+" if segment == "**"
                    else re.escape(segment) for segment in template.split("/"))


def add_rest_routes(router: Router, service: Service, engine: Any,
                    transport: Any = None) -> None:
    """Serve every RPC of `service` that has an HTTP rule on `router`, calling `engine`
    (`transport`: the REST transport whose rules a mixin service's routes follow)."""
    rpcs = {rpc.name: rpc for rpc in service.rpcs}
    for name, rules in http_rules(service, transport).items():
        call = bind(service, rpcs[name], engine)
        for rule in rules:
            router.add(rule.method, rule.pattern, _endpoint(rpcs[name], rule, call))


def _endpoint(rpc: Rpc, rule: HttpRule,
              call: Callable[[Any], Message]) -> Callable[[HttpRequest, re.Match[str]],
                                                           HttpResponse]:
    def handle(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        params = parse_qsl(request.query, keep_blank_values=True)
        numbers = any(key in ("$alt", "alt") and "enum-encoding=int" in value
                      for key, value in params)
        try:
            message = _request_message(rpc, rule, match, request.body, params)
            response = call(rpc.request_type.wrap(message))
        except exceptions.GoogleAPICallError as exc:
            return api_error(exc)
        text = json_format.MessageToJson(response, use_integers_for_enums=numbers)
        return HttpResponse(200, text.encode())

    return handle


def api_error(exc: exceptions.GoogleAPICallError) -> HttpResponse:
    """An engine error as Google's REST API answers it: the HTTP status of its class (409 for
    AlreadyExists, 400 for InvalidArgument...) and the gRPC code's name."""
    code = exc.grpc_status_code.name if exc.grpc_status_code is not None else "UNKNOWN"
    return json_error(exc.code or 500, code, exc.message)


def _request_message(rpc: Rpc, rule: HttpRule, match: re.Match[str], body: bytes,
                     params: list[tuple[str, str]]) -> Message:
    message: Message = rpc.request_type.pb()()
    if rule.body and body.strip():
        target = message if rule.body == "*" else _submessage(message, rule.body)
        _parse(_json_object(body), target)
    _parse(_query_document(message, params), message)
    for field, value in zip(rule.variables, match.groups(), strict=True):
        *parents, leaf = field.split(".")
        target = message
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, unquote(value))
    return message


def _submessage(message: Message, path: str) -> Message:
    for part in path.split("."):
        message = getattr(message, part)
    return message


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:  # bad UTF-8 too
        raise exceptions.InvalidArgument(f"Invalid JSON payload received. {exc}.") from exc
    except RecursionError:  # arrays or objects nested deeper than Python's stack allows
        raise exceptions.InvalidArgument(
            "Invalid JSON payload received. It is nested too deeply: no request message of "
            "this API is more than a few levels deep."
        ) from None
    if document == "":
        # The empty message as Node's REST transport writes it: google-gax's transcode() sends
        # JSON.stringify('') for a body field with nothing left in it (an UpdateQueue whose
        # queue has only the name the path carries, to reset the masked fields).
        return {}
    if not isinstance(document, dict):
        raise exceptions.InvalidArgument(
            "Invalid JSON payload received. The body must be a JSON object, got "
            f"{type(document).__name__}."
        )
    return document


def _parse(document: dict[str, Any], message: Message) -> None:
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise exceptions.InvalidArgument(f"Invalid JSON payload received. {exc}") from exc


def _query_document(message: Message, params: list[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters (`pageSize=3`, `updateMask=a,b`, `job.name=...`) as the JSON object
    they stand for; system parameters (`$alt`) and unknown names are left out."""
    document: dict[str, Any] = {}
    for key, value in params:
        if key.startswith("$"):
            continue
        node, descriptor = document, message.DESCRIPTOR
        *parents, leaf = key.split(".")
        for part in parents:
            field = _field(descriptor, part)
            if field is None or field.message_type is None:
                break
            child = node.setdefault(field.name, {})
            if not isinstance(child, dict):
                raise exceptions.InvalidArgument(f"Query parameter {key!r} is given twice.")
            node, descriptor = child, field.message_type
        else:
            field = _field(descriptor, leaf)
            if field is None:
                continue
            if _repeated(field):
                node.setdefault(field.name, []).append(_query_value(key, field, value))
            elif field.name in node:
                raise exceptions.InvalidArgument(f"Query parameter {key!r} is given twice.")
            else:
                node[field.name] = _query_value(key, field, value)
    return document


def _camel_case_mask(value: str) -> str:
    """A field mask with its paths in lowerCamel, as json_format takes them: Google accepts
    snake_case paths too (`rate_limits.max_dispatches_per_second`, what Node's REST transport
    sends) and json_format refuses those ("must not contain '_'s")."""
    return ",".join(".".join(_lower_camel(name) for name in path.split("."))
                    for path in value.split(","))


def _lower_camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _field(descriptor: Any, name: str) -> Any:
    field = descriptor.fields_by_name.get(name)
    return field or next((f for f in descriptor.fields if f.json_name == name), None)


def _repeated(field: Any) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 5.28; `label` is gone in 7
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _query_value(key: str, field: Any, value: str) -> Any:
    """A query string as its JSON value: json_format takes numbers, enums, bytes and
    well-known types (FieldMask, Timestamp, Duration) as strings already, not booleans."""
    if field.message_type is not None and field.message_type.full_name == _FIELD_MASK:
        return _camel_case_mask(value)
    if field.type != field.TYPE_BOOL:
        return value
    if value not in ("true", "false"):
        raise exceptions.InvalidArgument(
            f"Invalid value {value!r} for query parameter {key!r}: expected true or false."
        )
    return value == "true"
