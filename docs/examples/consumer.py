#!/usr/bin/env python3
"""Read one bfx-bridge stream with nothing but redis-py and msgpack (docs/streams.md).

    pip install redis msgpack
    python consumer.py redis://127.0.0.1:6379/0 bfx:book:tBTCUSD:P0
    python consumer.py redis://127.0.0.1:6379/0 bfx:trades:tBTCUSD --count 100

A book stream (``…:book:SYMBOL:P0``…``P4``/``R0``) is kept as a book and its top is printed
after every entry; a trades stream prints each trade; any other stream prints its records.
The consumer starts at the stream's latest ``snapshot`` (so it has a full state at once) and
then follows new entries with ``XREAD BLOCK``. It applies the rules of docs/streams.md:

* ``reset``: drop the state, wait for the next ``snapshot``;
* ``snapshot``: a new epoch, ``seq`` 0, replaces the state;
* ``update``: applies only if it has the current epoch and ``seq`` = previous + 1; anything
  else is a gap, and the state is dropped until the next snapshot.

One line per entry goes to stdout (``book``, ``trade``, ``reset``, ``gap``, ``skip``,
``snapshot``/``update`` lines); notes go to stderr. ``--count N`` exits after N entries.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgpack
import redis

BLOCK_MS = 5000  # XREAD BLOCK timeout; the loop just reads again
PAGE = 1000  # entries per XREVRANGE page when looking for the latest snapshot
BOOK_PRECISIONS = {"P0", "P1", "P2", "P3", "P4", "R0"}


def stream_kind(key: str) -> str:
    """``book``, ``trades`` or ``other``, from the stream key (``PREFIX:book:SYM:PREC``…)."""
    parts = key.split(":")
    if ":book:" in key and parts[-1] in BOOK_PRECISIONS:
        return "book"
    if ":trades:" in key:
        return "trades"
    return "other"


def emit(line: str, file: Any = None) -> None:
    """Print one line at once, also into a pipe or a file (tests read it as it comes)."""
    print(line, file=file, flush=True)


def compact(value: Any) -> str:
    """JSON without spaces, as JavaScript's JSON.stringify writes it."""
    return json.dumps(value, separators=(",", ":"))


def num(value: Any) -> str:
    """A number as printed in every output line; ``-`` for none."""
    return "-" if value is None else repr(value)


class Book:
    """The book of one epoch: every record by its identity, as docs/streams.md describes."""

    def __init__(self) -> None:
        self.records: dict[Any, dict[str, Any]] = {}

    @staticmethod
    def key(rec: dict[str, Any]) -> Any:
        """Identity of a record: order/offer id (R0), (rate, period) (funding P), price (P)."""
        if "order_id" in rec:
            return rec["order_id"]
        if "offer_id" in rec:
            return rec["offer_id"]
        if "rate" in rec:
            return (rec["rate"], rec["period"])
        return rec["price"]

    def apply(self, rec: dict[str, Any]) -> None:
        """Add, replace or delete one record (P books: count 0; R0: price/rate 0 deletes)."""
        raw = "order_id" in rec or "offer_id" in rec
        price = rec["rate"] if "rate" in rec else rec["price"]
        if (price == 0) if raw else (rec["count"] == 0):
            self.records.pop(self.key(rec), None)
        else:
            self.records[self.key(rec)] = rec

    def top(self, side: str) -> tuple[Any, Any, int]:
        """(best price, total size at that price, records on the side); bids: highest."""
        recs = [r for r in self.records.values() if r["side"] == side]
        if not recs:
            return None, None, 0
        prices = [r["rate"] if "rate" in r else r["price"] for r in recs]
        best = max(prices) if side == "bid" else min(prices)
        size = sum(abs(r["amount"]) for r, p in zip(recs, prices, strict=True) if p == best)
        return best, size, len(recs)

    def line(self, epoch: str, seq: int) -> str:
        bid, bid_size, bids = self.top("bid")
        ask, ask_size, asks = self.top("ask")
        return (
            f"book epoch={epoch} seq={seq} bid={num(bid)} bid_size={num(bid_size)} "
            f"ask={num(ask)} ask_size={num(ask_size)} bids={bids} asks={asks}"
        )


def trade_line(epoch: str, seq: int, t: dict[str, Any]) -> str:
    """One trade: trading trades have side and price, funding trades rate and period."""
    out = f"trade epoch={epoch} seq={seq} id={t['id']} mts={t['mts']}"
    if "event" in t:  # only with trades_tu = true: "te" or "tu"
        out += f" event={t['event']}"
    if "side" in t:
        out += f" side={t['side']}"
    out += f" amount={num(t['amount'])}"
    if "price" in t:
        out += f" price={num(t['price'])}"
    else:
        out += f" rate={num(t['rate'])} period={t['period']}"
    return out


class Consumer:
    """The epoch/seq rules of docs/streams.md around one stream kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.epoch: str | None = None  # None: no state, waiting for a snapshot
        self.seq = 0
        self.book = Book()

    def handle(self, fields: dict[bytes, bytes]) -> None:
        kind = fields[b"kind"].decode()
        epoch = fields[b"epoch"].decode()
        seq = int(fields[b"seq"])
        data = msgpack.unpackb(fields[b"data"])
        if kind == "reset":
            self.epoch = None
            emit(f"reset epoch={epoch or '-'} seq={seq} reason={json.dumps(data['reason'])}")
        elif kind == "snapshot":
            self.epoch, self.seq = epoch, seq
            self.book = Book()
            self.on_snapshot(epoch, seq, data)
        elif self.epoch is None:
            emit(f"skip {kind} epoch={epoch} seq={seq} (waiting for a snapshot)")
        elif epoch != self.epoch or seq != self.seq + 1:
            emit(
                f"gap epoch={epoch} seq={seq} expected_epoch={self.epoch} "
                f"expected_seq={self.seq + 1} (state dropped, waiting for the next snapshot)"
            )
            self.epoch = None
        else:
            self.seq = seq
            self.on_update(epoch, seq, data)

    def on_snapshot(self, epoch: str, seq: int, records: list[dict[str, Any]]) -> None:
        if self.kind == "book":
            for rec in records:
                self.book.apply(rec)
            emit(self.book.line(epoch, seq))
        elif self.kind == "trades":
            for trade in reversed(records):  # Bitfinex sends them newest first
                emit(trade_line(epoch, seq, trade))
        else:
            emit(f"snapshot epoch={epoch} seq={seq} data={compact(records)}")

    def on_update(self, epoch: str, seq: int, record: dict[str, Any]) -> None:
        if self.kind == "book":
            self.book.apply(record)
            emit(self.book.line(epoch, seq))
        elif self.kind == "trades":
            emit(trade_line(epoch, seq, record))
        else:
            emit(f"update epoch={epoch} seq={seq} data={compact(record)}")


def latest_snapshot(r: redis.Redis, key: str) -> tuple[str, Any]:
    """Find where to start: (id of the latest snapshot, its fields), or (newest id, None)."""
    newest = "0-0"
    end = "+"
    while True:
        rows: Any = r.xrevrange(key, max=end, min="-", count=PAGE)
        if not rows:
            return newest, None
        if newest == "0-0":
            newest = rows[0][0].decode()
        for entry_id, fields in rows:
            if fields[b"kind"] == b"snapshot":
                return entry_id.decode(), fields
        end = "(" + rows[-1][0].decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="Redis URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("stream", help="stream key, e.g. bfx:book:tBTCUSD:P0")
    parser.add_argument("--count", type=int, default=0, help="exit after N entries (0: never)")
    args = parser.parse_args(argv)

    r = redis.Redis.from_url(args.url)
    consumer = Consumer(stream_kind(args.stream))
    seen = 0
    last_id, fields = latest_snapshot(r, args.stream)
    if fields is not None:
        consumer.handle(fields)
        seen += 1
    else:
        emit(f"# no snapshot in {args.stream} yet: waiting for one", file=sys.stderr)
    while not args.count or seen < args.count:
        reply: Any = r.xread({args.stream: last_id}, block=BLOCK_MS, count=500)
        for _key, entries in reply or []:
            for entry_id, entry in entries:
                last_id = entry_id.decode()
                consumer.handle(entry)
                seen += 1
                if args.count and seen >= args.count:
                    break
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
