"""Check what reached Redis against what the emulator really sent, entry by entry.

:func:`expected_entries` replays the emulator's log of sent frames with its own, deliberately
simple reading of the protocol (first data = snapshot, ``te`` only, bulk book batches = one
update per entry) and gives, per stream name, the list of ``(kind, data)`` the bridge must
have written. Records are built with :mod:`bridge.records`, whose tables are tested on their
own against literal frames.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import redis

from bridge import records
from bridge.streams import decode_fields

Expected = dict[str, list[tuple[str, Any]]]


def stream_name(event: dict[str, Any]) -> str:
    """The stream name (without prefix) a ``subscribed`` event feeds."""
    channel = event["channel"]
    if channel == "book":
        return f"book:{event['symbol']}:{event['prec']}"
    if channel == "candles":
        _, timeframe, rest = event["key"].split(":", 2)
        if rest.startswith("f"):
            symbol, _, aggregate = rest.partition(":")
            return f"candles:{symbol}:{timeframe}:{aggregate}"
        return f"candles:{rest}:{timeframe}"
    if channel == "status":
        return f"status:{event['key']}"
    return f"{channel}:{event['symbol']}"


def _records(name: str, payload: Any) -> list[dict[str, Any]]:
    """Records of one data payload (a list of entries or one entry) of stream ``name``."""
    channel = name.split(":", 1)[0]
    funding = name.split(":")[1].startswith("f")
    nested = not payload or isinstance(payload[0], list)
    entries = payload if nested else [payload]
    if channel == "ticker":
        return [records.ticker(payload, funding)]
    if channel == "trades":
        return [records.trade(e, funding) for e in entries]
    if channel == "book":
        make = records.raw_order if name.endswith(":R0") else records.book_level
        return [make(e, funding) for e in entries]
    if channel == "candles":
        return [records.candle(e) for e in entries]
    if name.startswith("status:liq"):
        return [records.liquidation(e) for e in entries]
    return [records.deriv_status(payload)]


def expected_entries(frames: list[Any]) -> Expected:
    """Per stream name, the entries the emulator's frames call for, every subscription's in
    order (see :func:`expected_epochs` for them one epoch at a time)."""
    return {
        name: [entry for epoch in subscriptions for entry in epoch]
        for name, subscriptions in expected_epochs(frames).items()
    }


def read_stream(r: redis.Redis, key: str) -> list[dict[str, Any]]:
    """Every entry of ``key``, decoded (``data`` unpacked), oldest first."""
    rows: Any = r.xrange(key)
    return [{"id": entry_id.decode(), **decode_fields(fields)} for entry_id, fields in rows]


def epochs(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split a stream into its epochs: each list starts with a snapshot."""
    out: list[list[dict[str, Any]]] = []
    for entry in entries:
        if entry["kind"] == "snapshot":
            out.append([entry])
        elif entry["kind"] == "update":
            assert out, f"update before any snapshot: {entry}"
            out[-1].append(entry)
    return out


def assert_well_formed(entries: list[dict[str, Any]]) -> None:
    """No update without its snapshot; contiguous seq within each epoch; epochs distinct."""
    live_epoch = None
    expected_seq = 0
    seen_epochs: set[str] = set()
    for entry in entries:
        kind = entry["kind"]
        if kind == "reset":
            live_epoch = None
            continue
        if kind == "snapshot":
            assert live_epoch is None, f"snapshot without a reset before it: {entry}"
            assert entry["seq"] == 0, entry
            assert entry["epoch"] not in seen_epochs, f"epoch reused: {entry}"
            seen_epochs.add(entry["epoch"])
            live_epoch, expected_seq = entry["epoch"], 1
            continue
        assert kind == "update", entry
        assert live_epoch is not None, f"update between a reset and a snapshot: {entry}"
        assert entry["epoch"] == live_epoch, entry
        assert entry["seq"] == expected_seq, f"seq gap: expected {expected_seq}: {entry}"
        expected_seq += 1


def rebuild_book(epoch: list[dict[str, Any]], raw: bool, funding: bool) -> dict[Any, dict]:
    """A book rebuilt from one epoch's records: level key -> record."""

    def key(rec: dict[str, Any]) -> Any:
        if raw:
            return rec["offer_id"] if funding else rec["order_id"]
        return (rec["rate"], rec["period"]) if funding else rec["price"]

    def deleted(rec: dict[str, Any]) -> bool:
        if raw:
            return (rec["rate"] if funding else rec["price"]) == 0
        return rec["count"] == 0

    book: dict[Any, dict] = {}
    for entry in epoch:
        for rec in entry["data"] if entry["kind"] == "snapshot" else [entry["data"]]:
            if deleted(rec):
                book.pop(key(rec), None)
            else:
                book[key(rec)] = rec
    return book


def expected_epochs(frames: list[Any]) -> dict[str, list[list[tuple[str, Any]]]]:
    """Per stream name, one list of ``(kind, data)`` per subscription that got a snapshot,
    in the order the emulator sent them (each subscription is one epoch on the bridge)."""
    names: dict[tuple[int, int], str] = {}
    out: dict[str, list[list[tuple[str, Any]]]] = defaultdict(list)
    current: dict[tuple[int, int], list[tuple[str, Any]]] = {}
    seen_trades: dict[tuple[int, int], set[int]] = defaultdict(set)
    for frame in frames:
        if frame.direction != "sent":
            continue
        try:
            msg = orjson.loads(frame.text)
        except orjson.JSONDecodeError:
            continue  # an injected malformed frame: no data
        if isinstance(msg, dict):
            if msg.get("event") == "subscribed":
                names[(frame.conn_id, msg["chanId"])] = stream_name(msg)
            elif msg.get("event") == "unsubscribed":
                names.pop((frame.conn_id, msg["chanId"]), None)
            continue
        if not isinstance(msg, list) or len(msg) < 2:
            continue
        chan = (frame.conn_id, msg[0])
        name = names.get(chan)
        if name is None or msg[1] in ("hb", "cs", "tu", "ftu"):
            continue
        if msg[1] in ("te", "fte"):
            record = records.trade(msg[2], name.split(":")[1].startswith("f"))
            if chan in current and record["id"] not in seen_trades[chan]:
                seen_trades[chan].add(record["id"])
                current[chan].append(("update", record))
            continue
        recs = _records(name, msg[1])
        if chan not in current:
            current[chan] = [("snapshot", recs)]
            out[name].append(current[chan])
            if name.startswith("trades:"):
                seen_trades[chan].update(r["id"] for r in recs)
        else:
            current[chan].extend(("update", rec) for rec in recs)
    return dict(out)


def match_epochs(
    stored: list[list[dict[str, Any]]], sent: list[list[tuple[str, Any]]]
) -> list[int]:
    """For each epoch in Redis, the index of the subscription (in ``sent``) it came from.

    Epochs are matched in order by their snapshot; a subscription whose snapshot never
    reached the bridge (lost in flight with its connection) has no epoch and is skipped.
    Fails if an epoch matches no subscription.
    """
    out: list[int] = []
    start = 0
    for epoch in stored:
        snapshot = ("snapshot", epoch[0]["data"])
        for index in range(start, len(sent)):
            if sent[index][0] == snapshot:
                out.append(index)
                start = index + 1
                break
        else:
            raise AssertionError(f"epoch {epoch[0]['epoch']} matches no subscription sent")
    return out


def assert_stream_faithful(
    entries: list[dict[str, Any]], sent: list[list[tuple[str, Any]]], name: str
) -> None:
    """The stream is well formed, each epoch is a prefix of what its subscription sent (only a
    reset may cut an epoch short), the last epoch is complete, and no trade repeats in one."""
    assert_well_formed(entries)
    stored = epochs(entries)
    assert stored, f"{name}: no epoch at all"
    for epoch, index in zip(stored, match_epochs(stored, sent), strict=True):
        got = [(e["kind"], e["data"]) for e in epoch]
        assert got == sent[index][: len(got)], f"{name}: epoch {epoch[0]['epoch']} differs"
        if name.startswith("trades:"):
            ids = [t["id"] for t in epoch[0]["data"]] + [e["data"]["id"] for e in epoch[1:]]
            assert len(ids) == len(set(ids)), f"{name}: a trade published twice in one epoch"
    last = stored[-1]
    assert len(last) == len(sent[match_epochs(stored, sent)[-1]]), f"{name}: last epoch short"


def caught_up(r: redis.Redis, key: str, sent: list[list[tuple[str, Any]]]) -> bool:
    """True when the stream's last epoch holds everything its subscription sent."""
    stored = epochs(read_stream(r, key))
    if not stored or not sent:
        return False
    try:
        index = match_epochs(stored, sent)[-1]
    except AssertionError:
        return False
    return index == len(sent) - 1 and len(stored[-1]) >= len(sent[index])
