"""Message compression as gRPC defines it (grpc/doc/compression.md, PROTOCOL-HTTP2.md):
`grpc-encoding` names the request's algorithm, each message's first byte says whether that
message is compressed, and `grpc-accept-encoding` lists what a side can read. gzip and deflate
(zlib's format, as grpc's C core, grpc-go and grpc-js send it) are read and written with the
standard library; a message inflating past the limit is refused before it takes the memory.
"""

from __future__ import annotations

import zlib

__all__ = ["ACCEPT_ENCODING", "CODECS", "MessageTooLarge", "compress", "decompress"]

# zlib's window bits: 31 is the gzip container (RFC 1952), 15 the zlib one (RFC 1950).
CODECS = {b"gzip": 31, b"deflate": 15}
# No spaces, as grpc's own servers write it: grpc-js splits the list on "," alone, so
# " gzip" would not name gzip and it would stop compressing for the whole channel.
ACCEPT_ENCODING = b"identity,deflate,gzip"
COMPRESS_FROM = 256  # answers smaller than this go as they are (the flag says so)


class MessageTooLarge(Exception):
    """Raised when a message inflates past the limit given to `decompress`."""


def decompress(encoding: bytes, data: bytes, limit: int) -> bytes:
    """`data` inflated by `encoding` (one of CODECS); MessageTooLarge past `limit` bytes,
    zlib.error if it is not whole, valid compressed data."""
    inflater = zlib.decompressobj(CODECS[encoding])
    message = inflater.decompress(data, limit + 1)  # stops once past the limit: no bomb
    if len(message) > limit:
        raise MessageTooLarge(f"over {limit} bytes once decompressed")
    if not inflater.eof or inflater.unused_data:
        raise zlib.error("the compressed data is truncated or followed by other bytes")
    return message


def compress(encoding: bytes, message: bytes) -> bytes | None:
    """`message` compressed by `encoding`, or None where that would not make it smaller (gRPC's
    C core sends such a message uncompressed too)."""
    if len(message) < COMPRESS_FROM:
        return None
    packer = zlib.compressobj(6, zlib.DEFLATED, CODECS[encoding])
    packed = packer.compress(message) + packer.flush()
    return packed if len(packed) < len(message) else None
