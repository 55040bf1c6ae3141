"""The Locations and IAM methods Google's clients expose beside the API's own RPCs, and gcloud
calls: `list_locations` / `get_location` (google.cloud.location.Locations, on both clients)
and `get_iam_policy` / `set_iam_policy` / `test_iam_permissions` (CloudTasks' own RPCs on
queues; CloudSchedulerClient has no IAM methods). Requests and answers are raw protobuf, as
the clients send them.

Locations (pick and document: Google lists the regions the API runs in, the emulator runs in
every one): a project's locations are those holding one of its queues or jobs, and GetLocation
answers any well-formed location name. IAM (google/iam/v1): a policy is kept per resource,
for as long as that resource lives; the etag changes with each SetIamPolicy, and one given
that is not the current etag is ABORTED ("the request fails with a 409 error code and ABORTED
status"); without one the policy is overwritten. No permission is ever checked, so
TestIamPermissions grants whatever is asked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from google.api_core import exceptions
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from fastapi_cloud_tasks.engine.fields import check_mask, copy_paths, page

__all__ = ["IamPolicies", "Locations", "get_location", "list_locations"]

_PROJECT = re.compile(r"^projects/[^/]+$")
_LOCATION = re.compile(r"^(projects/[^/]+)/locations/([^/]+)$")
_PERMISSION = re.compile(r"^[a-z][a-zA-Z0-9]*(\.[a-zA-Z0-9]+){2}$")  # cloudtasks.queues.get
_DEFAULT_MASK = ["bindings", "etag"]  # SetIamPolicyRequest.update_mask's default
MAX_LOCATIONS_PAGE = 1000


def list_locations(request: Any, resource_names: Iterable[str]) -> Any:
    """ListLocations of `projects/P`: the locations of P that hold one of `resource_names`."""
    if not _PROJECT.match(request.name):
        raise exceptions.InvalidArgument(
            f"Invalid name {request.name!r}: ListLocations takes projects/PROJECT_ID.")
    if request.filter.strip():
        raise exceptions.InvalidArgument(
            f"Unsupported ListLocations filter {request.filter!r}: this emulator lists every "
            "location in use; leave filter empty.")
    found = {match.group(0) for name in resource_names
             if (match := re.match(r"projects/[^/]+/locations/[^/]+", name))
             and match.group(0).startswith(request.name + "/locations/")}
    locations = [_location(name) for name in sorted(found)]
    items, token = page(locations, request.page_size, request.page_token,
                        scope=f"ListLocations {request.name}", maximum=MAX_LOCATIONS_PAGE)
    return locations_pb2.ListLocationsResponse(locations=items, next_page_token=token)


def get_location(request: Any) -> Any:
    if not _LOCATION.match(request.name):
        raise exceptions.InvalidArgument(
            f"Invalid name {request.name!r}: GetLocation takes "
            "projects/PROJECT_ID/locations/LOCATION_ID.")
    return _location(request.name)


def _location(name: str) -> Any:
    return locations_pb2.Location(name=name, location_id=name.rsplit("/", 1)[1],
                                  display_name=name.rsplit("/", 1)[1])


class Locations:
    """ListLocations / GetLocation over the resources of several engines (the emulator's
    one gRPC port serves both APIs' clients)."""

    def __init__(self, *engines: Any) -> None:
        self._engines = engines

    def list_locations(self, request: Any) -> Any:
        return list_locations(request, [name for engine in self._engines
                                        for name in engine.resource_names()])

    def get_location(self, request: Any) -> Any:
        return get_location(request)


class IamPolicies:
    """IAM policies kept per resource. `resource_of(name)` returns the live resource object
    of `name` (None if there is none): a policy belongs to that object, so a resource deleted
    and created again starts with an empty policy, as a new resource does."""

    def __init__(self, resource_of: Callable[[str], object | None], missing: str) -> None:
        self._resource_of = resource_of
        self._missing = missing
        self._policies: dict[str, tuple[object, Any]] = {}

    def _current(self, name: str) -> Any:
        resource = self._resource_of(name)
        if resource is None:
            raise exceptions.NotFound(self._missing)
        kept = self._policies.get(name)
        if kept is None or kept[0] is not resource:
            return policy_pb2.Policy(etag=_etag(b""))
        return kept[1]

    def get_iam_policy(self, request: Any) -> Any:
        requested = request.options.requested_policy_version
        if requested not in (0, 1, 3):
            raise exceptions.InvalidArgument(
                f"GetPolicyOptions.requested_policy_version {requested} is invalid: use 0, 1 "
                "or 3.")
        answer = policy_pb2.Policy()
        answer.CopyFrom(self._current(request.resource))
        return answer

    def set_iam_policy(self, request: Any) -> Any:
        current = self._current(request.resource)
        given = request.policy
        if given.etag and given.etag != current.etag:
            raise exceptions.Aborted(
                "There were concurrent policy changes: the etag given is not the policy's "
                "current one. Get the policy again and retry.")
        if given.version not in (0, 1, 3):
            raise exceptions.InvalidArgument(
                f"Policy.version {given.version} is invalid: use 0, 1 or 3.")
        paths = list(request.update_mask.paths) or _DEFAULT_MASK
        check_mask(paths, given, "Policy")
        stored = policy_pb2.Policy()
        stored.CopyFrom(current)
        copy_paths(given, stored, [path for path in paths if path != "etag"])
        stored.etag = _etag(current.etag + stored.SerializeToString(deterministic=True))
        resource = self._resource_of(request.resource)
        self._policies[request.resource] = (resource, stored)
        answer = policy_pb2.Policy()
        answer.CopyFrom(stored)
        return answer

    def test_iam_permissions(self, request: Any) -> Any:
        self._current(request.resource)
        for permission in request.permissions:
            if not _PERMISSION.match(permission):
                raise exceptions.InvalidArgument(
                    f"Permission {permission!r} is invalid: name one permission such as "
                    "'cloudtasks.queues.get' (wildcards are not allowed).")
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=request.permissions)


def _etag(seed: bytes) -> bytes:
    return hashlib.sha256(seed).digest()[:8]
