"""Tests of bridge.streams: the reset/snapshot/update state machine and SPEC §3 entry fields.

Entries are also round-tripped through the bytes Redis hands back (``decode_fields``) so the
plain-text fields and the msgpack ``data`` are checked as a consumer reads them.
"""

from __future__ import annotations

import socket

import hiredis
import msgpack
import redis

from bridge.streams import Entry, EpochSource, Stream, StreamState, decode_fields, xadd_command

KEY = "bfx:book:tBTCUSD:P0"
BID = {"price": 30000.5, "count": 2, "amount": 1.25, "side": "bid"}
ASK = {"price": 30001, "count": 1, "amount": -0.5, "side": "ask"}


def as_redis(entry: Entry) -> dict[bytes, bytes]:
    """The fields as redis-py returns them from XRANGE: bytes names and values."""
    return {
        k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in entry.fields.items()
    }


def test_epoch_source_mints_unique_tokens() -> None:
    """Epoch tokens are <run>.<n>, counting up, never repeated."""
    epochs = EpochSource("a1b2")
    assert [epochs.next() for _ in range(3)] == ["a1b2.1", "a1b2.2", "a1b2.3"]


def test_first_snapshot_after_start_is_preceded_by_exactly_one_reset() -> None:
    """A new stream's first snapshot comes after one reset; its seq is 0, epoch new."""
    stream = Stream(KEY, EpochSource("run"))
    reset, snapshot = stream.snapshot([BID, ASK], ts=1_000, mts=1_700_000_000_123)
    assert reset.stream == KEY and snapshot.stream == KEY
    assert reset.fields["kind"] == "reset"
    assert msgpack.unpackb(reset.fields["data"]) == {"reason": "resubscribed"}
    assert snapshot.fields == {
        "kind": "snapshot",
        "epoch": "run.1",
        "seq": 0,
        "ts": 1_000,
        "mts": 1_700_000_000_123,
        "data": msgpack.packb([BID, ASK]),
    }
    assert stream.state is StreamState.LIVE


def test_reset_is_not_repeated() -> None:
    """A second reset in a row writes nothing; the snapshot after it adds no reset."""
    stream = Stream(KEY, EpochSource("run"))
    first = stream.reset("worker started", ts=5)
    assert first is not None
    assert first.fields["kind"] == "reset" and first.fields["ts"] == 5
    assert msgpack.unpackb(first.fields["data"]) == {"reason": "worker started"}
    assert stream.reset("connection lost", ts=6) is None
    entries = stream.snapshot([], ts=7, mts=None)
    assert [e.fields["kind"] for e in entries] == ["snapshot"]


def test_updates_follow_with_contiguous_seq_then_reset_ends_the_epoch() -> None:
    """Updates are seq 1, 2, …; the reset that ends the epoch takes the next seq."""
    stream = Stream(KEY, EpochSource("run"))
    stream.snapshot([BID], ts=10, mts=None)
    updates = [stream.update(ASK, ts=11 + i, mts=1_700_000_000_000 + i) for i in range(3)]
    assert [u.fields["seq"] for u in updates if u] == [1, 2, 3]
    assert [u.fields["epoch"] for u in updates if u] == ["run.1"] * 3
    assert updates[2] is not None
    assert updates[2].fields == {
        "kind": "update",
        "epoch": "run.1",
        "seq": 3,
        "ts": 13,
        "mts": 1_700_000_000_002,
        "data": msgpack.packb(ASK),
    }
    reset = stream.reset("checksum mismatch", ts=20)
    assert reset is not None
    assert reset.fields["epoch"] == "run.1" and reset.fields["seq"] == 4
    assert stream.state is StreamState.BROKEN


def test_update_refused_when_not_live_and_counted() -> None:
    """An update before any snapshot, or after a reset, is refused and counted."""
    stream = Stream(KEY, EpochSource("run"))
    assert stream.update(BID, ts=1, mts=None) is None
    stream.snapshot([BID], ts=2, mts=None)
    stream.reset("stale", ts=3)
    assert stream.update(BID, ts=4, mts=None) is None
    assert stream.discarded == 2


def test_epoch_changes_with_every_snapshot() -> None:
    """Each snapshot starts a new epoch at seq 0, preceded by a reset of the old one."""
    epochs = EpochSource("run")
    stream = Stream(KEY, epochs)
    stream.snapshot([BID], ts=1, mts=None)
    stream.update(ASK, ts=2, mts=None)
    reset, snapshot = stream.snapshot([ASK], ts=3, mts=None)
    assert (reset.fields["kind"], reset.fields["epoch"], reset.fields["seq"]) == (
        "reset",
        "run.1",
        2,
    )
    assert (snapshot.fields["epoch"], snapshot.fields["seq"]) == ("run.2", 0)
    other = Stream("bfx:ticker:tBTCUSD", epochs)
    assert other.snapshot([], ts=4, mts=None)[-1].fields["epoch"] == "run.3"


def test_mts_absent_when_bitfinex_gives_none_and_integer_otherwise() -> None:
    """No mts field without a Bitfinex time; a fractional mts is written in whole ms."""
    stream = Stream(KEY, EpochSource("run"))
    [_, snapshot] = stream.snapshot([BID], ts=1, mts=None)
    assert "mts" not in snapshot.fields
    update = stream.update(BID, ts=2, mts=1574697680828.2002)
    assert update is not None and update.fields["mts"] == 1574697680828


def test_decode_fields_gives_back_the_records() -> None:
    """decode_fields turns Redis bytes into kind/epoch/seq/ts/mts and unpacked data."""
    stream = Stream(KEY, EpochSource("run"))
    reset, snapshot = stream.snapshot([BID, ASK], ts=1_000, mts=1_700_000_000_000)
    update = stream.update(ASK, ts=1_001, mts=None)
    assert update is not None
    assert decode_fields(as_redis(snapshot)) == {
        "kind": "snapshot",
        "epoch": "run.1",
        "seq": 0,
        "ts": 1_000,
        "mts": 1_700_000_000_000,
        "data": [BID, ASK],
    }
    assert decode_fields(as_redis(update)) == {
        "kind": "update",
        "epoch": "run.1",
        "seq": 1,
        "ts": 1_001,
        "data": ASK,
    }
    decoded_reset = decode_fields(as_redis(reset))
    assert decoded_reset["kind"] == "reset"
    assert decoded_reset["data"] == {"reason": "resubscribed"}


def test_field_order_is_kind_epoch_seq_ts_mts_data() -> None:
    """Fields are written in the documented order (readable with redis-cli)."""
    stream = Stream(KEY, EpochSource("run"))
    [_, snapshot] = stream.snapshot([BID], ts=1, mts=2)
    assert list(snapshot.fields) == ["kind", "epoch", "seq", "ts", "mts", "data"]


def _commands(stream: Stream) -> list[Entry]:
    """A reset, a snapshot with and without mts, updates with and without mts, a reset."""
    entries = [stream.reset("worker started", 1)]
    entries += [e for e in stream.snapshot([BID, ASK], ts=1_764_000_000_123, mts=None) if e]
    entries += [stream.update(BID, 1_764_000_000_124, 1_764_000_000_100.0)]  # type: ignore[list-item]
    entries += [stream.update(ASK, 1_764_000_000_125, None)]  # type: ignore[list-item]
    entries += stream.snapshot([ASK], ts=7, mts=6)
    entries += [stream.update(ASK, 8, 9)]  # type: ignore[list-item]
    return entries


def test_pre_encoded_xadd_is_exactly_what_hiredis_would_pack() -> None:
    """With a trim length, every entry carries its XADD as RESP: byte for byte the command
    hiredis packs from the key, MAXLEN ~ N, * and the entry's fields in order."""
    stream = Stream(KEY, EpochSource("run"), maxlen=12_345)
    entries = _commands(stream)
    assert len(entries) == 7 and all(e.command for e in entries)
    for e in entries:
        args: list[object] = [b"XADD", KEY, b"MAXLEN", b"~", 12_345, b"*"]
        for name, value in e.fields.items():
            args += (name, value)
        assert e.command == hiredis.pack_command(tuple(args)), e.fields
        assert e.command == xadd_command(KEY, 12_345, e.fields)


def test_pre_encoded_xadd_runs_on_redis_as_its_fields(r: redis.Redis, prefix: str) -> None:
    """The encoded commands, sent as they are to a real Redis, store exactly the fields."""
    key = f"{prefix}:book:tBTCUSD:P0"
    entries = _commands(Stream(key, EpochSource("run"), maxlen=1000))
    with socket.create_connection(("127.0.0.1", r.connection_pool.connection_kwargs["port"])) as s:
        s.sendall(b"".join(e.command or b"" for e in entries))
        reader = hiredis.Reader()
        replies: list[object] = []
        while len(replies) < len(entries):
            reply = reader.gets()
            if reply is False:
                reader.feed(s.recv(65536))
            else:
                replies.append(reply)
    rows = r.xrange(key)
    assert replies == [entry_id for entry_id, _ in rows]
    assert [fields for _, fields in rows] == [as_redis(e) for e in entries]


def test_without_a_trim_length_entries_are_left_to_the_writer() -> None:
    """A stream that does not know the trim length leaves the encoding to the writer."""
    assert not any(e.command for e in _commands(Stream(KEY, EpochSource("run"))))
