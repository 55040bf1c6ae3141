"""HTTP/2 request header blocks: HPACK decoding within bounds, and the field rules of RFC 9113
§8.2-8.3 that make a request malformed.

The bounds answer an amplification seen from outside: one 4 KB table entry referenced 255 times
a block decodes to ~1 MiB from 300 bytes sent. So the decoded list of a block is bounded while
it is decoded (hpack's `max_header_list_size` stops the decoder as the bound is crossed, before
the list is whole), repeated fields are joined once (not by repeated concatenation), and the
cache of decoded blocks is bounded in bytes, not entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import hpack

__all__ = ["DECODE_LIMIT", "HEADER_LIST_LIMIT", "BlockDecoder", "Fields", "UndecodableBlock"]

HEADER_LIST_LIMIT = 64 * 1024  # advertised; a request over it is refused, the connection kept
# A block whose list decodes past this ends the connection (RFC 9113 §10.5.1: the block cannot
# be half-decoded and the connection kept, the table would drift from the client's).
DECODE_LIMIT = 4 * HEADER_LIST_LIMIT
CACHE_BLOCK_BYTES = 4096  # only blocks this small are remembered ...
CACHE_ENTRY_BYTES = 16 * 1024  # ... if their list is this small ...
CACHE_BYTES = 256 * 1024  # ... up to this much per connection, block and list counted

_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path"))
_REQUIRED = (b":method", b":scheme", b":path")
# RFC 9113 §8.2.2: connection-specific fields make a request malformed (te but "trailers").
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"))
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")  # a token, lowercase (RFC 9113 §8.2.1)
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


class UndecodableBlock(Exception):
    """A block that cannot be decoded within bounds: the connection must end.
    `too_large` tells a block over DECODE_LIMIT from one HPACK cannot read."""

    def __init__(self, reason: str, too_large: bool) -> None:
        super().__init__(reason)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class Fields:
    headers: dict[bytes, bytes]  # a repeated field is one value, joined by ", "
    size: int  # as SETTINGS_MAX_HEADER_LIST_SIZE counts it
    malformed: str | None  # why the request is malformed (RFC 9113 §8.1.1), else None


class BlockDecoder:
    """One connection's HPACK decoder. A client repeats the same few blocks (gRPC's clients
    index every header), and decoding is most of a call's cost, so a block that left the
    table as it was is remembered, valid until some block changes the table."""

    def __init__(self) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=DECODE_LIMIT)
        self._cache: dict[bytes, tuple[int, Fields]] = {}
        self._cache_bytes = 0
        self._version = 0

    def decode(self, block: bytes, trailers: bool = False) -> Fields:
        """The fields of `block`, checked as a request's head (or its trailers). Every block
        is decoded, even one refused after: the table depends on it."""
        cached = None if trailers else self._cache.get(block)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        table = self._decoder.header_table
        before = (len(table.dynamic_entries), table.maxsize, table.dynamic_entries[0]
                  if table.dynamic_entries else None)
        try:
            fields = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as exc:
            raise UndecodableBlock(f"a header block decoding to over {DECODE_LIMIT} bytes",
                                   too_large=True) from exc
        except hpack.HPACKError as exc:
            raise UndecodableBlock(f"a header block: {exc}", too_large=False) from exc
        pairs: list[tuple[bytes, bytes]] = fields  # type: ignore[assignment]  # raw=True
        found = Fields(_joined(pairs), sum(len(n) + len(v) + 32 for n, v in pairs),
                       _trailers_problem(pairs) if trailers else _request_problem(pairs))
        after = (len(table.dynamic_entries), table.maxsize, table.dynamic_entries[0]
                 if table.dynamic_entries else None)
        # A block that inserts always moves the newest entry (entries are never equal objects
        # twice); one that only resizes changes maxsize or evicts.
        if after != before or (after[2] is not None and after[2] is not before[2]):
            self._version += 1
        elif not trailers and len(block) <= CACHE_BLOCK_BYTES and found.size <= CACHE_ENTRY_BYTES:
            cost = len(block) + found.size
            if self._cache_bytes + cost > CACHE_BYTES:
                self._cache.clear()
                self._cache_bytes = 0
            self._cache[block] = (self._version, found)
            self._cache_bytes += cost
        return found


def _joined(pairs: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """One value per name (RFC 9110 §5.3), each repeated field joined once: linear in size."""
    headers: dict[bytes, bytes] = {}
    repeated: dict[bytes, list[bytes]] | None = None
    for name, value in pairs:
        if name in headers:
            if repeated is None:
                repeated = {}
            repeated.setdefault(name, [headers[name]]).append(value)
        else:
            headers[name] = value
    if repeated:
        for name, values in repeated.items():
            headers[name] = b", ".join(values)
    return headers


def _request_problem(pairs: list[tuple[bytes, bytes]]) -> str | None:
    """What makes these request fields malformed (RFC 9113 §8.2, §8.3.1), or None."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    for name, value in pairs:
        if name[:1] == b":":
            if regular:
                return f"the pseudo-header {name!r} follows a regular field"
            if name not in _REQUEST_PSEUDO:
                return f"{name!r} is not a request pseudo-header"
            if name in pseudo:
                return f"the pseudo-header {name!r} appears twice"
            pseudo[name] = value
        else:
            regular = True
            problem = _field_problem(name, value)
            if problem:
                return problem
        if _BAD_VALUE.search(value):
            return f"the value of {name!r} has NUL, CR, LF or surrounding white space"
    for name in _REQUIRED:
        if not pseudo.get(name):
            return f"the pseudo-header {name!r} is missing or empty"
    return None


def _trailers_problem(pairs: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in pairs:
        if name[:1] == b":":
            return f"the pseudo-header {name!r} in trailers"
        problem = _field_problem(name, value)
        if problem:
            return problem
    return None


def _field_problem(name: bytes, value: bytes) -> str | None:
    if not _NAME.fullmatch(name):
        return f"the field name {name!r} is not a lowercase token"
    if name in _CONNECTION_SPECIFIC:
        return f"the connection-specific field {name!r}"
    if name == b"te" and value != b"trailers":
        return f"te: {value!r} (only 'trailers' is allowed)"
    if name == b"content-length" and not value.isdigit():
        return f"content-length: {value!r} is not one decimal number"
    return None
