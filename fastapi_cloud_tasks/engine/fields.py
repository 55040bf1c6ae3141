"""Checks and helpers both engines use on Google's request messages (raw protobuf): list
paging, field masks, and the ranges of Timestamp and Duration values.

They run before anything converts a value (proto-plus turns a Duration into a `timedelta`,
which overflows long before a Duration's range ends), so a value out of range is the
caller's INVALID_ARGUMENT, never an error inside the service.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple

from google.api_core import exceptions
from google.protobuf import field_mask_pb2

__all__ = ["check_mask", "check_times", "copy_paths", "page"]

# google/protobuf/timestamp.proto: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z,
# nanos 0..999,999,999. google/protobuf/duration.proto: seconds within +-315,576,000,000
# (10,000 years), nanos within +-999,999,999 and of the seconds' sign.
TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999
_TIMESTAMP, _DURATION, _NESTED, _SKIP = range(4)
_PLANS: dict[Any, _Plan] = {}  # message type -> fields to check


def page(items: list[Any], size: int, token: str, *, scope: str,
         maximum: int) -> tuple[list[Any], str]:
    """One page of `items` and the next page's token ("" after the last).

    Google's List RPCs: "If unspecified, the page size will be the maximum" (9800 queues,
    1000 tasks, 500 jobs); a larger one gets the maximum. A negative size, or a token this
    listing (`scope`: the RPC and its parent) did not hand out, is INVALID_ARGUMENT."""
    if size < 0:
        raise exceptions.InvalidArgument(
            f"page_size must not be negative, got {size}: leave it 0 for pages of {maximum}."
        )
    start = _offset(token, scope) if token else 0
    end = start + min(size or maximum, maximum)
    return items[start:end], (_token(scope, end) if end < len(items) else "")


def _token(scope: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{scope}".encode()).decode().rstrip("=")


def _offset(token: str, scope: str) -> int:
    try:
        offset, _, issued_for = (
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
        )
        if issued_for == scope and offset.isdigit():
            return int(offset)
    except (binascii.Error, ValueError):  # not base64, or not UTF-8
        pass
    raise exceptions.InvalidArgument(
        f"Invalid page_token {token[:100]!r}: pass the next_page_token of the previous page "
        "of the same listing, or none for the first page."
    )


def check_mask(paths: list[str], message: Any, what: str) -> None:
    """Every update_mask path must name a field of `message` (raw protobuf), each segment but
    the last a singular message field: `rate_limits.max_dispatches_per_second`, in
    snake_case, as the gRPC API spells field masks."""
    for path in paths:
        if not field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(message.DESCRIPTOR):
            raise exceptions.InvalidArgument(
                f"Unknown field in update_mask: {path!r}. Name a field of {what} in "
                "snake_case, dotted for a nested one."
            )


def copy_paths(source: Any, target: Any, paths: list[str]) -> None:
    """Copy field-mask `paths` (checked by `check_mask`) from `source` to `target`, raw
    protobuf messages. A path names the value to set: one `source` leaves unset is cleared
    (the service then fills its default), a message or list named whole is replaced."""
    for path in paths:
        source_part, target_part = source, target
        *parents, leaf = path.split(".")
        for part in parents:
            source_part, target_part = getattr(source_part, part), getattr(target_part, part)
        field = source_part.DESCRIPTOR.fields_by_name[leaf]
        if _repeated(field):
            target_part.ClearField(leaf)
            getattr(target_part, leaf).MergeFrom(getattr(source_part, leaf))
        elif field.has_presence:  # messages, oneof members, `optional` scalars
            target_part.ClearField(leaf)
            if source_part.HasField(leaf):
                if field.message_type is None:
                    setattr(target_part, leaf, getattr(source_part, leaf))
                else:
                    getattr(target_part, leaf).CopyFrom(getattr(source_part, leaf))
        else:
            setattr(target_part, leaf, getattr(source_part, leaf))


def check_times(message: Any, where: str) -> None:
    """INVALID_ARGUMENT for any Timestamp or Duration in `message` (raw protobuf, walked
    through nested messages) outside protobuf's ranges; `where` names `message` in the error.

    Only the fields that can hold a time are looked at (a plan per message type, made once),
    and only those set: `filter(HasField, ...)` runs in C, as this is on the path of every
    create."""
    descriptor = message.DESCRIPTOR
    plan = _PLANS.get(descriptor) or _plan(descriptor)
    has = message.HasField
    for name in filter(has, plan.timestamps):
        _check_timestamp(getattr(message, name), where, name)
    for name in filter(has, plan.durations):
        _check_duration(getattr(message, name), where, name)
    for name in filter(has, plan.nested):
        check_times(getattr(message, name), f"{where}.{name}")
    for name, kind in plan.repeated:
        for index, item in enumerate(getattr(message, name)):
            if kind == _TIMESTAMP:
                _check_timestamp(item, where, f"{name}[{index}]")
            elif kind == _DURATION:
                _check_duration(item, where, f"{name}[{index}]")
            else:
                check_times(item, f"{where}.{name}[{index}]")


class _Plan(NamedTuple):
    """The fields of a message type that hold a time, or a message that can."""

    timestamps: tuple[str, ...] = ()
    durations: tuple[str, ...] = ()
    nested: tuple[str, ...] = ()
    repeated: tuple[tuple[str, int], ...] = ()  # (name, kind) of repeated fields


def _plan(descriptor: Any) -> _Plan:
    plan = _PLANS.get(descriptor)
    if plan is None:
        _PLANS[descriptor] = _Plan()  # a recursive type refers to itself: nothing more below
        found: dict[int, list[str]] = {_TIMESTAMP: [], _DURATION: [], _NESTED: []}
        repeated = []
        for field in descriptor.fields:
            kind = _kind(field)
            if kind == _SKIP or (kind == _NESTED and _plan(field.message_type) == _Plan()):
                continue
            if _repeated(field):
                repeated.append((field.name, kind))
            else:
                found[kind].append(field.name)
        plan = _PLANS[descriptor] = _Plan(tuple(found[_TIMESTAMP]), tuple(found[_DURATION]),
                                          tuple(found[_NESTED]), tuple(repeated))
    return plan


def _kind(field: Any) -> int:
    message_type = field.message_type
    if message_type is None or message_type.GetOptions().map_entry:
        return _SKIP
    if message_type.full_name == "google.protobuf.Timestamp":
        return _TIMESTAMP
    if message_type.full_name == "google.protobuf.Duration":
        return _DURATION
    return _NESTED


def _repeated(field: Any) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 5.28; `label` is gone in 7
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _check_timestamp(value: Any, where: str, name: str) -> None:
    low, high = TIMESTAMP_SECONDS
    if not (low <= value.seconds <= high and 0 <= value.nanos <= MAX_NANOS):
        raise exceptions.InvalidArgument(
            f"{where}.{name} (seconds={value.seconds}, nanos={value.nanos}) is not a valid "
            "Timestamp: it must lie between 0001-01-01T00:00:00Z and "
            "9999-12-31T23:59:59.999999999Z, with nanos in 0..999999999."
        )


def _check_duration(value: Any, where: str, name: str) -> None:
    seconds, nanos = value.seconds, value.nanos
    if not (
        -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS
        and -MAX_NANOS <= nanos <= MAX_NANOS and not (seconds > 0 > nanos or seconds < 0 < nanos)
    ):
        raise exceptions.InvalidArgument(
            f"{where}.{name} (seconds={seconds}, nanos={nanos}) is not a valid Duration: "
            f"seconds must be within +-{MAX_DURATION_SECONDS} (10,000 years) and nanos within "
            "+-999999999, of the same sign."
        )
