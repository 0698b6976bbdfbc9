"""Stream bookkeeping: epochs, sequence numbers and the entry fields of SPEC §3.

Every subscription writes one Redis stream. Its entries carry ``kind`` (snapshot, update or
reset), ``epoch`` (changes with every new subscription), ``seq`` (0 for the snapshot, +1 per
entry of the epoch), ``ts`` (receive time, ms), ``mts`` (Bitfinex's time, ms, when given) and
``data`` (msgpack). A :class:`Stream` is a three-state machine:

* UNKNOWN: the worker just started; whatever an earlier process wrote is not vouched for.
* LIVE: an epoch is in progress; updates are written with the next ``seq``.
* BROKEN: a ``reset`` was written; only a snapshot (a new epoch) follows.

Every way into a new epoch passes through a ``reset`` entry, so a consumer never sees an
update it cannot place, and every gap is announced.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import hiredis
import msgpack

__all__ = [
    "EVENTS_MAXLEN",
    "Entry",
    "EpochSource",
    "Stream",
    "StreamState",
    "decode_fields",
    "xadd_command",
]


EVENTS_MAXLEN = 10_000  # the events stream is trimmed shorter than the data streams


class Entry(NamedTuple):
    """One XADD: the stream key, its fields in order, its trim length if not the writer's
    default, and, when the stream knew its trim length, the whole command already encoded
    (RESP, as :func:`xadd_command` would encode it; the writer only joins them)."""

    stream: str
    fields: dict[str, bytes | str | int]
    maxlen: int | None = None
    command: bytes | None = None


_new_entry = tuple.__new__  # Entry(...) without NamedTuple's Python-level __new__ (hot path)


def xadd_command(stream: str | bytes, maxlen: int, fields: dict[str, bytes | str | int]) -> bytes:
    """``XADD stream MAXLEN ~ maxlen * field value …`` encoded as RESP by hiredis (what
    the writer sends for an entry that does not carry its command)."""
    args: list[Any] = [
        b"XADD",
        stream,
        b"MAXLEN",
        b"~",
        maxlen,
        b"*",
    ]  # Any: hiredis types the tuple as one item
    for name, value in fields.items():
        args += (name, value)
    command: bytes = hiredis.pack_command(tuple(args))
    return command


class StreamState(enum.Enum):
    """See the module docstring."""

    UNKNOWN = "unknown"
    LIVE = "live"
    BROKEN = "broken"


# An update's XADD after the head (which ends with the bulk "seq"): seq, ts, [mts,] data.
_UPDATE = b"*16\r\n%b$%d\r\n%b\r\n$2\r\nts\r\n$%d\r\n%b\r\n$4\r\ndata\r\n$%d\r\n%b\r\n"
_UPDATE_MTS = (
    b"*18\r\n%b$%d\r\n%b\r\n$2\r\nts\r\n$%d\r\n%b\r\n$3\r\nmts\r\n$%d\r\n%b\r\n"
    b"$4\r\ndata\r\n$%d\r\n%b\r\n"
)


class EpochSource:
    """Mints epoch tokens: ``<run>.<n>``, unique per worker run (``run`` is random)."""

    def __init__(self, run: str) -> None:
        self.run = run
        self._n = 0

    def next(self) -> str:
        """A token never returned before by any run."""
        self._n += 1
        return f"{self.run}.{self._n}"


class Stream:
    """The entries of one stream: ``reset``, ``snapshot`` and ``update``.

    Not thread-safe: one thread at a time uses a stream (the worker's read loop; a
    connection's thread only for the reset when its session ends, after the loop let go).
    """

    __slots__ = ("_update_head", "discarded", "entries", "epoch", "epochs", "key", "last_ts",
                 "maxlen", "packer", "seq", "state")  # fmt: skip

    def __init__(self, key: str, epochs: EpochSource, maxlen: int | None = None) -> None:
        self.key = key
        self.epochs = epochs
        self.maxlen = maxlen  # when known, entries carry their encoded XADD
        self._update_head = b""  # an update's XADD up to its seq value, for this epoch
        self.state = StreamState.UNKNOWN
        self.epoch = ""
        self.seq = 0
        self.last_ts = 0
        self.discarded = 0  # updates refused because no epoch was live (a bug if ever > 0)
        self.entries = 0  # entries made by this process
        # reused (one owner thread per stream); it grows for big snapshots, so a small start
        # keeps 1 000 streams from reserving 256 KiB (the default) each
        self.packer = msgpack.Packer(buf_size=16384)

    def reset(self, reason: str, ts: int, *, force: bool = False) -> Entry | None:
        """End the current epoch (if any) with a ``reset`` entry; None if already reset,
        unless ``force`` (entries were lost after the last reset was written)."""
        if self.state is StreamState.BROKEN and not force:
            return None
        self.state = StreamState.BROKEN
        self.seq += 1
        self.entries += 1
        data = msgpack.packb({"reason": reason})
        return self._encoded({"kind": "reset", "epoch": self.epoch, "seq": self.seq,
                              "ts": ts, "data": data})  # fmt: skip

    def snapshot(self, records: list[dict[str, Any]], ts: int, mts: float | None) -> list[Entry]:
        """Start a new epoch; a ``reset`` precedes it unless one was just written."""
        out: list[Entry] = []
        reset = self.reset("resubscribed", ts)
        if reset is not None:
            out.append(reset)
        self.state, self.epoch, self.seq, self.last_ts = StreamState.LIVE, self.epochs.next(), 0, ts
        if self.maxlen:
            head = xadd_command(self.key, self.maxlen, {"kind": "update", "epoch": self.epoch})
            self._update_head = b"%b$3\r\nseq\r\n" % head[head.index(b"\r\n") + 2 :]
        self.entries += 1
        fields: dict[str, bytes | str | int] = {"kind": "snapshot", "epoch": self.epoch,
                                                "seq": 0, "ts": ts}  # fmt: skip
        if mts is not None:
            fields["mts"] = int(mts)
        fields["data"] = self.packer.pack(records)
        out.append(self._encoded(fields))
        return out

    def update(self, record: dict[str, Any], ts: int, mts: float | None) -> Entry | None:
        """The next update of the live epoch; None (counted) when no epoch is live."""
        if self.state is not StreamState.LIVE:
            self.discarded += 1
            return None
        self.seq = seq = self.seq + 1
        self.last_ts = ts
        self.entries += 1
        data = self.packer.pack(record)
        fields: dict[str, bytes | str | int]
        if mts is None:
            fields = {"kind": "update", "epoch": self.epoch, "seq": seq, "ts": ts, "data": data}
        else:
            mts = int(mts)
            fields = {"kind": "update", "epoch": self.epoch, "seq": seq, "ts": ts, "mts": mts,
                      "data": data}  # fmt: skip
        if not self.maxlen:
            return Entry(self.key, fields)
        # The hot path: the XADD encoded with one format (a third of building its argument
        # list for hiredis.pack_command); tests check it against xadd_command.
        s, t = b"%d" % seq, b"%d" % ts
        if mts is None:
            command = _UPDATE % (self._update_head, len(s), s, len(t), t, len(data), data)
        else:
            m = b"%d" % mts
            command = _UPDATE_MTS % (
                self._update_head,
                len(s),
                s,
                len(t),
                t,
                len(m),
                m,
                len(data),
                data,
            )
        return _new_entry(Entry, (self.key, fields, None, command))

    def _encoded(self, fields: dict[str, bytes | str | int]) -> Entry:
        """An entry of ``fields``, with its XADD encoded when the trim length is known."""
        if not self.maxlen:
            return Entry(self.key, fields)
        return Entry(self.key, fields, None, xadd_command(self.key, self.maxlen, fields))


def decode_fields(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """Decode one entry as read from Redis (bytes) into plain values; ``data`` unpacked."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        key = name.decode()
        if key == "data":
            out[key] = msgpack.unpackb(value)
        elif key in ("seq", "ts", "mts"):
            out[key] = int(value)
        else:
            out[key] = value.decode()
    return out
