"""Queue.http_target: the queue-level settings Cloud Tasks applies to every HTTP task of the
queue when it sends it, and the checks on them when the queue is created or updated.

Google's reference (tasks_v2 `HttpTarget`, `UriOverride`): "When specified at the Queue level,
all tasks with HttpRequest are overridden according to the target."
- `uri_override` replaces parts of the task's URL: `scheme` (HTTP or HTTPS), `host`, `port`
  ("Setting the port to 0 (Zero) clears the URI port"), `path_override` and `query_override`
  ("Setting the ... value to an empty string clears" it). Its `uri_override_enforce_mode` is
  ALWAYS by default; IF_NOT_EXISTS applies it only "where task-level configuration does not
  exist", and a task made by CreateTask always has its own URL, so its URL is kept.
- `http_method` "overrides HttpRequest for the task. Note that if the value is set to GET the
  body of the task will be ignored": a method that takes no body sends none.
- `header_overrides` "Queue-level headers to override headers of all the tasks": each is set,
  replacing the task's header of that name (names compare case-insensitively).
- `oauth_token` / `oidc_token`: the token attached instead of the task's; "both the service
  account email and the scope [the audience] MUST be specified".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks.engine.http_target import unsendable
from fastapi_cloud_tasks.engine.task_messages import (
    BODY_METHODS,
    METHOD_NAMES,
    RESERVED_HEADER_PREFIXES,
)

__all__ = ["QueueRequest", "apply_queue_target", "check_queue_target", "override_url"]
_Scheme = tasks_v2.UriOverride.Scheme
_SCHEMES = {int(_Scheme.HTTP): "http", int(_Scheme.HTTPS): "https"}
_IF_NOT_EXISTS = int(tasks_v2.UriOverride.UriOverrideEnforceMode.IF_NOT_EXISTS)
_PROBE_URL = "https://task.example/"  # stands for a task's URL when a queue is checked

# What a delivery is built from once the queue's target is applied: the method (enum number),
# URL, the task's headers, body, and the message holding the token to attach.
QueueRequest = tuple[int, str, Mapping[str, str], bytes, Any]


def apply_queue_target(target: Any, http: Any) -> QueueRequest:
    """The task's raw HttpRequest `http` as the queue's raw HttpTarget `target` changes it."""
    method = target.http_method or http.http_method
    url = http.url
    if target.HasField("uri_override") and not (
        target.uri_override.uri_override_enforce_mode == _IF_NOT_EXISTS and url
    ):
        url = override_url(target.uri_override, url)
    headers: Mapping[str, str] = http.headers
    if target.header_overrides:
        merged = dict(headers)
        for override in target.header_overrides:
            key = override.header.key
            for name in [n for n in merged if n.lower() == key.lower()]:
                del merged[name]
            merged[key] = override.header.value
        headers = merged
    body = bytes(http.body) if method in BODY_METHODS else b""
    auth = target if target.HasField("oidc_token") or target.HasField("oauth_token") else http
    return method, url, headers, body, auth


def override_url(uri: Any, url: str) -> str:
    """`url` with the parts `uri` (a raw UriOverride) sets replaced; the fragment dropped."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(uri.scheme, parts.scheme) if uri.HasField("scheme") else parts.scheme
    host = uri.host if uri.HasField("host") else (parts.hostname or "")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    port: int | None
    try:
        port = parts.port
    except ValueError:
        port = None
    if uri.HasField("port"):
        port = uri.port or None
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port else "")
    path = uri.path_override.path if uri.HasField("path_override") else parts.path
    query = uri.query_override.query_params if uri.HasField("query_override") else parts.query
    return str(urlunsplit((scheme, netloc, path, query, "")))


def check_queue_target(queue: Any) -> None:
    """INVALID_ARGUMENT for a raw Queue whose http_target Cloud Tasks refuses or that could
    not be sent: checked when the queue is created or updated, not at each task's attempt."""
    if not queue.HasField("http_target"):
        return
    target = queue.http_target
    if target.http_method and target.http_method not in METHOD_NAMES:
        raise exceptions.InvalidArgument(
            f"Queue.http_target.http_method {target.http_method} is not an HttpMethod: use one "
            f"of {', '.join(METHOD_NAMES.values())}."
        )
    uri = target.uri_override
    if uri.HasField("host") and not uri.host:
        raise exceptions.InvalidArgument(
            "UriOverride.host cannot be an empty string: leave it unset to keep each task's "
            "host."
        )
    if uri.HasField("port") and not 0 <= uri.port <= 65535:
        raise exceptions.InvalidArgument(
            f"UriOverride.port {uri.port} is not a port: give 1..65535, or 0 to clear it."
        )
    if uri.HasField("scheme") and uri.scheme and uri.scheme not in _SCHEMES:
        raise exceptions.InvalidArgument(
            f"UriOverride.scheme {uri.scheme} is not a Scheme: use HTTP or HTTPS."
        )
    if target.HasField("oidc_token") and not (
        target.oidc_token.service_account_email and target.oidc_token.audience
    ):
        raise exceptions.InvalidArgument(
            "Queue.http_target.oidc_token needs both service_account_email and audience."
        )
    if target.HasField("oauth_token") and not (
        target.oauth_token.service_account_email and target.oauth_token.scope
    ):
        raise exceptions.InvalidArgument(
            "Queue.http_target.oauth_token needs both service_account_email and scope."
        )
    headers = {}
    for override in target.header_overrides:
        key = override.header.key
        if key.lower().startswith(RESERVED_HEADER_PREFIXES):
            raise exceptions.InvalidArgument(f"Header {key!r} is reserved.")
        headers[key] = override.header.value
    probe = override_url(uri, _PROBE_URL) if target.HasField("uri_override") else _PROBE_URL
    problem = unsendable(probe, headers, "Queue.http_target.uri_override")
    if problem is not None:
        raise exceptions.InvalidArgument(problem)
