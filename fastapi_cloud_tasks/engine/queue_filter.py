"""ListQueuesRequest.filter: which queues a listing returns.

Google's reference: "Any Queue field can be used as a filter and several operators as
supported. For example: <=, <, >=, >, !=, =, :. The filter syntax is the same as described in
Stackdriver's Advanced Logs Filters. Sample filter "state: PAUSED"." We take that language's
core: comparisons `FIELD OP VALUE` on a scalar field of Queue (dotted for a nested one,
snake_case or lowerCamel: `state`, `rate_limits.max_dispatches_per_second`), joined by `AND`,
`OR`, `NOT` and juxtaposition (an implicit AND), with parentheses. As in the Logging query
language, NOT binds tightest, then OR, then AND. A value is a word or a "quoted string"; an
enum compares by name, `:` on text is "contains". Anything else (a message or list field, a
Duration, an unknown field or a malformed filter) is INVALID_ARGUMENT rather than ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf.descriptor import FieldDescriptor

from fastapi_cloud_tasks.engine.fields import _repeated

__all__ = ["queue_filter"]

Predicate = Callable[[Any], bool]  # over a raw Queue protobuf
_KINDS = ("(", ")", "op", "str", "word")  # the groups of _TOKEN, in order
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(<=|>=|!=|<|>|=|:)|"((?:[^"\\]|\\.)*)"|([^\s()<>=!:"]+))')
_NUMBER_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT,
                 FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64,
                 FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64,
                 FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b), "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b), ">=": lambda a, b: bool(a >= b),
}
_QUEUE = tasks_v2.Queue.pb().DESCRIPTOR
_MAX_FILTER = 2000  # characters: a filter is a line a person writes


def queue_filter(text: str) -> Predicate | None:
    """The predicate a ListQueues filter stands for (None for an empty filter: every queue).
    Raises InvalidArgument, naming the filter, for one this emulator cannot evaluate."""
    text = text.strip()
    if not text:
        return None
    return _compile(text)


@lru_cache(maxsize=64)  # a paging client sends the same filter with every page
def _compile(text: str) -> Predicate:
    if len(text) > _MAX_FILTER:
        raise _refused(text[:100] + "...", f"it is longer than {_MAX_FILTER} characters")
    parser = _Parser(text)
    predicate = parser.conjunction()
    if parser.tokens:
        raise _refused(text, f"{parser.tokens[0][1]!r} is not expected there")
    return predicate


class _Parser:
    """Recursive descent over the tokens: conjunction := disjunction ([AND] disjunction)*,
    disjunction := unary (OR unary)*, unary := NOT unary | ( conjunction ) | comparison."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []  # (kind, text): ( ) op str word
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if not text[position:].strip():
                    break
                raise _refused(text, f"it cannot be read from {text[position:][:20]!r}")
            position = match.end()
            kind, value = next((kind, group) for kind, group in zip(
                _KINDS, match.groups(), strict=True) if group is not None)
            if kind == "str":
                value = re.sub(r"\\(.)", r"\1", value)  # \" and \\ stand for themselves
            self.tokens.append((kind, value))
        self.depth = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[0] if self.tokens else None

    def _take(self) -> tuple[str, str]:
        if not self.tokens:
            raise _refused(self.text, "it ends where a comparison is expected")
        return self.tokens.pop(0)

    def conjunction(self) -> Predicate:
        parts = [self.disjunction()]
        while (token := self._peek()) is not None and token[0] != ")":
            if token == ("word", "AND"):
                self._take()
            parts.append(self.disjunction())
        return parts[0] if len(parts) == 1 else (lambda q: all(p(q) for p in parts))

    def disjunction(self) -> Predicate:
        parts = [self.unary()]
        while self._peek() == ("word", "OR"):
            self._take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda q: any(p(q) for p in parts))

    def unary(self) -> Predicate:
        kind, value = self._take()
        if (kind, value) == ("word", "NOT"):
            inner = self.unary()
            return lambda q: not inner(q)
        if kind == "(":
            self.depth += 1
            if self.depth > 20:
                raise _refused(self.text, "its parentheses nest more than 20 deep")
            inner = self.conjunction()
            if not self.tokens or self._take()[0] != ")":
                raise _refused(self.text, "a parenthesis is not closed")
            self.depth -= 1
            return inner
        if kind != "word":
            raise _refused(self.text, f"{value!r} is not expected where a field name is")
        op_kind, op = self._take()
        if op_kind != "op":
            raise _refused(self.text, f"the field {value!r} needs an operator "
                                      "(=, !=, <, <=, >, >=, :) and a value")
        value_kind, operand = self._take()
        if value_kind not in ("word", "str"):
            raise _refused(self.text, f"the operator {op!r} needs a value after it")
        return _comparison(self.text, value, op, operand)


def _comparison(text: str, path: str, op: str, operand: str) -> Predicate:
    fields = _field_path(text, path)
    field = fields[-1]
    names = [f.name for f in fields]
    if field.enum_type is not None:
        number = field.enum_type.values_by_name.get(operand.upper())
        if number is None:
            raise _refused(text, f"{operand!r} is not a {field.enum_type.name}: use one of "
                                 f"{', '.join(v.name for v in field.enum_type.values)}")
        if op not in ("=", "!=", ":"):
            raise _refused(text, f"the enum field {path!r} takes =, != or : only")
        want, equal = number.number, op != "!="
        return lambda q: (_read(q, names) == want) == equal
    if field.type in _NUMBER_TYPES:
        try:
            wanted: Any = float(operand)
        except ValueError:
            raise _refused(text, f"{operand!r} is not a number, as {path!r} needs") from None
        compare = _ORDER["=" if op == ":" else op]
        return lambda q: compare(_read(q, names), wanted)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if operand.lower() not in ("true", "false") or op not in ("=", "!=", ":"):
            raise _refused(text, f"{path!r} is true or false, compared with = or !=")
        truth, equal = operand.lower() == "true", op != "!="
        return lambda q: (bool(_read(q, names)) == truth) == equal
    if field.type == FieldDescriptor.TYPE_STRING:
        if op == ":":
            return lambda q: operand in _read(q, names)
        compare = _ORDER[op]
        return lambda q: compare(_read(q, names), operand)
    raise _refused(text, f"the field {path!r} cannot be compared")


def _field_path(text: str, path: str) -> list[Any]:
    descriptor, fields = _QUEUE, []
    for part in path.split("."):
        if descriptor is None:
            raise _refused(text, f"{path!r} goes below a field that has no fields")
        field = descriptor.fields_by_name.get(part) or next(
            (f for f in descriptor.fields if f.json_name == part), None)
        if field is None:
            raise _refused(text, f"{path!r} names no field of Queue")
        if _repeated(field):
            raise _refused(text, f"{path!r} is a list; filter on one of its values' fields "
                                 "is not supported here")
        fields.append(field)
        descriptor = field.message_type
    if descriptor is not None:
        raise _refused(text, f"{path!r} is a message (such as a Duration or Timestamp), not a "
                             "value; name one of its fields, or filter on another field")
    return fields


def _read(queue: Any, names: list[str]) -> Any:
    value = queue
    for name in names:
        value = getattr(value, name)
    return value


def _refused(text: str, why: str) -> exceptions.InvalidArgument:
    return exceptions.InvalidArgument(
        f"Unsupported ListQueues filter {text!r}: {why}. Write comparisons such as "
        "'state: PAUSED' or 'rate_limits.max_dispatches_per_second > 10', joined by AND, OR "
        "and NOT."
    )
