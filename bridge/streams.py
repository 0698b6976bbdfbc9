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

import msgpack

__all__ = ["EVENTS_MAXLEN", "Entry", "EpochSource", "Stream", "StreamState", "decode_fields"]


EVENTS_MAXLEN = 10_000  # the events stream is trimmed shorter than the data streams


class Entry(NamedTuple):
    """One XADD: the stream key, its fields in order, and its trim length if not the default."""

    stream: str
    fields: dict[str, bytes | str | int]
    maxlen: int | None = None


class StreamState(enum.Enum):
    """See the module docstring."""

    UNKNOWN = "unknown"
    LIVE = "live"
    BROKEN = "broken"


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

    Not thread-safe: one connection thread owns each stream.
    """

    __slots__ = ("discarded", "entries", "epoch", "epochs", "key", "last_ts", "packer", "seq",
                 "state")  # fmt: skip

    def __init__(self, key: str, epochs: EpochSource) -> None:
        self.key = key
        self.epochs = epochs
        self.state = StreamState.UNKNOWN
        self.epoch = ""
        self.seq = 0
        self.last_ts = 0
        self.discarded = 0  # updates refused because no epoch was live (a bug if ever > 0)
        self.entries = 0  # entries made by this process
        self.packer = msgpack.Packer()  # reused: one owner thread per stream

    def reset(self, reason: str, ts: int, *, force: bool = False) -> Entry | None:
        """End the current epoch (if any) with a ``reset`` entry; None if already reset,
        unless ``force`` (entries were lost after the last reset was written)."""
        if self.state is StreamState.BROKEN and not force:
            return None
        self.state = StreamState.BROKEN
        self.seq += 1
        self.entries += 1
        data = msgpack.packb({"reason": reason})
        return Entry(self.key, {"kind": "reset", "epoch": self.epoch, "seq": self.seq,
                                "ts": ts, "data": data})  # fmt: skip

    def snapshot(self, records: list[dict[str, Any]], ts: int, mts: float | None) -> list[Entry]:
        """Start a new epoch; a ``reset`` precedes it unless one was just written."""
        out: list[Entry] = []
        reset = self.reset("resubscribed", ts)
        if reset is not None:
            out.append(reset)
        self.state, self.epoch, self.seq, self.last_ts = StreamState.LIVE, self.epochs.next(), 0, ts
        out.append(self._entry("snapshot", records, ts, mts))
        return out

    def update(self, record: dict[str, Any], ts: int, mts: float | None) -> Entry | None:
        """The next update of the live epoch; None (counted) when no epoch is live."""
        if self.state is not StreamState.LIVE:
            self.discarded += 1
            return None
        self.seq += 1
        self.last_ts = ts
        return self._entry("update", record, ts, mts)

    def _entry(self, kind: str, data: Any, ts: int, mts: float | None) -> Entry:
        self.entries += 1
        fields: dict[str, bytes | str | int] = {"kind": kind, "epoch": self.epoch,
                                                "seq": self.seq, "ts": ts}  # fmt: skip
        if mts is not None:
            fields["mts"] = int(mts)
        fields["data"] = self.packer.pack(data)
        return Entry(self.key, fields)


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
