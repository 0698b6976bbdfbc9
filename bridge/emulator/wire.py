"""Text of the emulator's frames, written by hand so every number is JavaScript-formatted.

Bitfinex's servers are JavaScript, so each number on the wire reads like
``Number.prototype.toString`` (bitfinex-ws-v2.md §7.2). The book checksum is a CRC over
those exact texts, which is why the emulator never lets a JSON library format a number: it
encodes every value with :func:`encode`, and :func:`checksum` hashes texts made by the very
same :func:`~bridge.jsnum.js_number`.

Data frames are assembled in two steps. Feeds produce a *body*, the text between the
channel id and the optional trailing fields (``[1,2,3]``, ``"te",[…]``, ``"hb"``,
``"cs",-123``); the connection then wraps it with :func:`frame`, appending the sequence
number and timestamp its ``conf`` flags ask for (§6).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import orjson

from bridge.jsnum import js_number

__all__ = [
    "BULK_UPDATES",
    "OB_CHECKSUM",
    "SEQ_ALL",
    "TIMESTAMP",
    "Scalar",
    "Wire",
    "checksum",
    "encode",
    "frame",
]

# conf flags, bitfinex-ws-v2.md §3.4.
TIMESTAMP = 32768
SEQ_ALL = 65536
OB_CHECKSUM = 131072
BULK_UPDATES = 536870912

Scalar: TypeAlias = bool | int | float | str | None
Wire: TypeAlias = Scalar | Sequence["Wire"] | Mapping[str, "Wire"]


def encode(value: Wire) -> str:
    """Return ``value`` as compact JSON text with JavaScript-formatted numbers.

    >>> encode([7e-07, 60400.0, None, "te", {"a": 1}])
    '[7e-7,60400,null,"te",{"a":1}]'
    """
    if type(value) is float:
        text = repr(value)
        # Fast path, same text: where repr writes plain decimals (1e-4 <= |x| < 1e16) its
        # shortest digits are JavaScript's too, and js_number derives its digits from repr.
        return text if "e" not in text and not text.endswith(".0") else js_number(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, Mapping):
        items = (orjson.dumps(k).decode() + ":" + encode(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return "[" + ",".join(encode(v) for v in value) + "]"


def frame(chan_id: int, body: str, seq: int | None = None, mts: int | None = None) -> str:
    """Wrap a message body as ``[chanId, body, SEQ?, MTS?]`` (§6 trailing order)."""
    text = "[" + str(chan_id) + "," + body
    if seq is not None:
        text += "," + str(seq)
    if mts is not None:
        text += "," + str(mts)
    return text + "]"


def checksum(pairs: Iterable[tuple[Scalar, Scalar]]) -> int:
    """CRC-32 of ``a:b:a:b…`` over already interleaved pairs, as a signed int32 (§7.1).

    Each value is written with :func:`encode`, i.e. exactly as it appears on the wire.

    >>> checksum([(6000, 1), (6100, -3), (5900, 2), (6200, -4)])
    1756193398
    """
    text = ":".join(encode(a) + ":" + encode(b) for a, b in pairs)
    crc = zlib.crc32(text.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc
