"""The emulator against a real WebSocket client: protocol conformance (bitfinex-ws-v2.md §12).

Every test runs a real server on 127.0.0.1 (port 0) and talks to it with websocket-client.
Books are rebuilt here independently of the emulator's code, from the raw number texts of
the frames, and every checksum is recomputed from them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websocket

from bridge.emulator import Emulator, SentFrame, configure_parser

SEQ_ALL, TIMESTAMP, OB_CHECKSUM, BULK_UPDATES = 65536, 32768, 131072, 536870912


# -- helpers ---------------------------------------------------------------------------


def raw(text: str) -> Any:
    """Parse a frame keeping every number as the exact text that was on the wire."""
    return json.loads(text, parse_float=str, parse_int=str)


class Client:
    """A websocket-client connection that remembers every frame it read."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=5, skip_utf8_validation=True)
        self.texts: list[str] = []

    def send(self, **fields: Any) -> None:
        self.ws.send(json.dumps(fields))

    def recv(self, timeout: float = 5.0) -> str:
        self.ws.settimeout(timeout)
        text = self.ws.recv()
        assert isinstance(text, str)
        self.texts.append(text)
        return text

    def read_until(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> list[str]:
        """Read frames until one satisfies ``predicate``; return all of them, that one last."""
        deadline = time.monotonic() + timeout
        frames: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching frame within {timeout} s; last: {frames[-3:]}"
            try:
                frames.append(self.recv(remaining))
            except websocket.WebSocketTimeoutException:
                continue
            if predicate(frames[-1]):
                return frames

    def read_for(self, seconds: float) -> list[str]:
        """Read every frame arriving within ``seconds``."""
        deadline = time.monotonic() + seconds
        frames: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frames.append(self.recv(remaining))
            except websocket.WebSocketTimeoutException:
                break
        return frames

    def event(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next event object called ``name`` (skipping data arrays)."""
        frames = self.read_until(
            lambda t: t.startswith("{") and json.loads(t)["event"] == name, timeout
        )
        event: dict[str, Any] = json.loads(frames[-1])
        return event

    def conf(self, flags: int) -> None:
        self.send(event="conf", flags=flags)
        assert self.event("conf") == {"event": "conf", "status": "OK", "flags": flags}

    def subscribe(self, **fields: Any) -> tuple[int, Any]:
        """Subscribe; return the chanId and the raw snapshot payload that follows at once."""
        self.send(event="subscribe", **fields)
        subscribed = self.event("subscribed")
        chan_id = subscribed["chanId"]
        snapshot = raw(self.recv())
        assert snapshot[0] == str(chan_id)
        return chan_id, snapshot[1]

    def sync(self) -> list[str]:
        """Read until the server answers a fresh ping: everything it sent before is read."""
        cid = int(time.monotonic() * 1e6)
        self.send(event="ping", cid=cid)
        return self.read_until(lambda t: t.startswith('{"event":"pong"') and f'"cid":{cid}' in t)

    def close(self) -> None:
        self.ws.close(timeout=1)


def data_frames(texts: list[str], chan_id: int) -> list[list[Any]]:
    """The raw-parsed data arrays of ``chan_id``."""
    return [f for f in map(raw, texts) if isinstance(f, list) and f[0] == str(chan_id)]


class ClientBook:
    """A book rebuilt from wire entries by the rules of §5.3/§5.4, with the §7 checksum."""

    def __init__(self, funding: bool, raw_book: bool) -> None:
        self.funding, self.raw = funding, raw_book
        self.bids: dict[Any, list[str]] = {}
        self.asks: dict[Any, list[str]] = {}

    def _is_bid(self, amount: str) -> bool:
        return (Decimal(amount) > 0) != self.funding  # funding: negative amounts are bids

    def _price(self, e: list[str]) -> Decimal:
        if self.raw:
            return Decimal(e[2] if self.funding else e[1])
        return Decimal(e[0])

    def apply(self, e: list[str]) -> None:
        if self.raw:
            key: Any = int(e[0])
            deleting = self._price(e) == 0
        else:
            key = (Decimal(e[0]), int(e[1])) if self.funding else Decimal(e[0])
            deleting = e[-2] == "0"
        side = self.bids if self._is_bid(e[-1]) else self.asks
        if deleting:
            assert e[-1] in ("1", "-1"), f"delete without a ±1 side marker: {e}"
            side.pop(key, None)
        else:
            (self.asks if side is self.bids else self.bids).pop(key, None)
            side[key] = e

    def sorted_side(self, bid: bool) -> list[list[str]]:
        def sort_key(e: list[str]) -> tuple[Decimal, int]:
            price = -self._price(e) if bid else self._price(e)
            return price, int(e[0] if self.raw else (e[1] if self.funding else 0))

        return sorted((self.bids if bid else self.asks).values(), key=sort_key)

    def wire(self) -> list[list[str]]:
        return self.sorted_side(True) + self.sorted_side(False)

    def checksum(self) -> int:
        bids, asks = self.sorted_side(True)[:25], self.sorted_side(False)[:25]
        values: list[str] = []
        for i in range(25):
            for side in (bids, asks):
                if i < len(side):
                    e = side[i]
                    values += [e[0], e[-1]]  # P: price/rate; R0: order/offer id
        crc = zlib.crc32(":".join(values).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc

    def assert_sane(self, length: int) -> None:
        assert len(self.bids) <= length and len(self.asks) <= length
        if self.bids and self.asks:
            best_bid, best_ask = self.sorted_side(True)[0], self.sorted_side(False)[0]
            assert self._price(best_bid) < self._price(best_ask), "crossed book"


def rebuild(texts: list[str], chan_id: int, book: ClientBook) -> ClientBook:
    """Apply the snapshot and every update of ``chan_id`` found in ``texts`` to ``book``."""
    frames = data_frames(texts, chan_id)
    for entry in frames[0][1]:
        book.apply(entry)
    for frame in frames[1:]:
        if frame[1] not in ("hb", "cs"):
            for entry in frame[1] if isinstance(frame[1][0], list) else [frame[1]]:
                book.apply(entry)
    return book


def numbers(payload: list[list[str]]) -> list[list[int | float]]:
    """Raw-text entries as Python numbers, to compare with :meth:`Emulator.book`."""
    return [[json.loads(x) for x in e] for e in payload]


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators on a free port; stop them all after the test."""
    started: list[Emulator] = []

    def make(**options: Any) -> Emulator:
        options.setdefault("seed", 7)
        options.setdefault("connect_limit", None)
        emulator = Emulator("127.0.0.1", 0, **options)
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator with fast heartbeats (0.2 s) and one unknown symbol, tNOPEUSD."""
    return make_emulator(heartbeat_interval=0.2, unknown_symbols=frozenset({"tNOPEUSD"}))


@pytest.fixture
def client(emu: Emulator) -> Iterator[Client]:
    """A connected client, closed after the test."""
    c = Client(emu.url)
    yield c
    c.close()


# -- connection, conf and sequence numbers ---------------------------------------------


def test_info_is_first_even_when_requests_arrive_before_it(emu: Emulator) -> None:
    """The info event comes first; a subscribe sent before reading it is still honoured."""
    c = Client(emu.url)
    c.send(event="subscribe", channel="ticker", symbol="tBTCUSD")
    info = json.loads(c.recv())
    assert info["event"] == "info" and info["version"] == 2
    assert info["platform"] == {"status": 1}
    assert uuid.UUID(info["serverId"]).version == 4
    assert list(info) == ["event", "version", "serverId", "platform"]
    assert c.event("subscribed")["symbol"] == "tBTCUSD"
    assert emu.url == f"ws://127.0.0.1:{emu.port}/ws/2"
    c.close()


def test_one_contiguous_sequence_over_all_channels_with_timestamps(
    emu: Emulator, client: Client
) -> None:
    """SEQ_ALL numbers every array (data, hb, cs) 1, 2, 3… per connection; MTS comes last."""
    client.conf(SEQ_ALL | TIMESTAMP | OB_CHECKSUM)
    book, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    ticker, _ = client.subscribe(channel="ticker", symbol="tETHUSD")
    trades, _ = client.subscribe(channel="trades", symbol="tBTCUSD")
    client.read_until(lambda t: t.startswith(f'[{trades},"hb"'))
    arrays = [raw(t) for t in client.texts if t.startswith("[")]
    assert [int(a[-2]) for a in arrays] == list(range(1, len(arrays) + 1))
    now_ms = time.time() * 1000
    assert all(abs(int(a[-1]) - now_ms) < 10_000 for a in arrays)
    kinds = {(int(a[0]), a[1] if isinstance(a[1], str) else "data") for a in arrays}
    assert {(book, "cs"), (book, "hb"), (ticker, "hb"), (trades, "te")} <= kinds
    assert all(len(a) == 4 for a in arrays if a[1] == "hb")  # [ch,"hb",SEQ,MTS]
    assert all(len(a) == 5 for a in arrays if a[1] == "cs")  # [ch,"cs",CRC,SEQ,MTS]
    assert all(len(a) == 5 for a in arrays if a[1] == "te")  # [ch,"te",T,SEQ,MTS]

    # When a conf with other flags arrives, it replaces the flag set: no more trailers.
    client.conf(OB_CHECKSUM)
    later = client.read_until(lambda t: t.startswith(f'[{book},"hb"'))
    assert f'[{book},"hb"]' == later[-1]
    assert all(len(raw(t)) == 3 for t in later if t.startswith(f'[{book},"cs"'))

    # The log holds exactly what this client read, in the same order.
    conn_id = emu.connections()[0].conn_id
    log = [f.text for f in emu.sent_frames() if f.conn_id == conn_id]
    assert log[: len(client.texts)] == client.texts
    received = [f.text for f in emu.received_frames()]
    assert received[0] == json.dumps({"event": "conf", "flags": SEQ_ALL | TIMESTAMP | OB_CHECKSUM})
    assert all(isinstance(f, SentFrame) and f.direction == "recv" for f in emu.received_frames())


# -- subscribe, unsubscribe and errors -------------------------------------------------


def test_subscribed_events_have_the_wire_field_order(emu: Emulator, client: Client) -> None:
    """subscribed events list their fields as Bitfinex does; chanIds are unique everywhere."""
    requests: list[tuple[dict[str, Any], str]] = [
        ({"channel": "ticker", "symbol": "tBTCUSD"},
         '"channel":"ticker","chanId":%d,"symbol":"tBTCUSD","pair":"BTCUSD"'),
        ({"channel": "trades", "symbol": "fUSD"},
         '"channel":"trades","chanId":%d,"symbol":"fUSD","currency":"USD"'),
        ({"channel": "book", "symbol": "tETHUSD", "subId": 123},
         '"channel":"book","chanId":%d,"symbol":"tETHUSD","prec":"P0","freq":"F0","len":"25",'
         '"subId":123,"pair":"ETHUSD"'),
        ({"channel": "book", "symbol": "fBTC", "prec": "P1", "freq": "F1", "len": 100},
         '"channel":"book","chanId":%d,"symbol":"fBTC","prec":"P1","freq":"F1","len":"100",'
         '"currency":"BTC"'),
        ({"channel": "book", "pair": "tTESTBTC:TESTUSD", "prec": "R0", "len": "100"},
         '"channel":"book","chanId":%d,"symbol":"tTESTBTC:TESTUSD","prec":"R0","freq":"F0",'
         '"len":"100","pair":"TESTBTC:TESTUSD"'),
        ({"channel": "ticker", "pair": "LTCUSD", "subId": "a-b"},
         '"channel":"ticker","chanId":%d,"symbol":"tLTCUSD","subId":"a-b","pair":"LTCUSD"'),
        ({"channel": "candles", "key": "trade:1m:tBTCUSD"},
         '"channel":"candles","chanId":%d,"key":"trade:1m:tBTCUSD"'),
        ({"channel": "candles", "key": "trade:1h:fUSD:a30:p2:p30"},
         '"channel":"candles","chanId":%d,"key":"trade:1h:fUSD:a30:p2:p30"'),
        ({"channel": "candles", "key": "trade:1D:fUSD:p30"},
         '"channel":"candles","chanId":%d,"key":"trade:1D:fUSD:p30"'),
        ({"channel": "status", "key": "deriv:tBTCF0:USTF0"},
         '"channel":"status","chanId":%d,"key":"deriv:tBTCF0:USTF0"'),
        ({"channel": "status", "key": "liq:global"},
         '"channel":"status","chanId":%d,"key":"liq:global"'),
    ]  # fmt: skip
    chan_ids = []
    for request, expected in requests:
        client.send(event="subscribe", **request)
        text = client.read_until(lambda t: '"subscribed"' in t)[-1]
        chan_id = json.loads(text)["chanId"]
        assert text == '{"event":"subscribed",' + expected % chan_id + "}"
        chan_ids.append(chan_id)
    other = Client(emu.url)
    other.send(event="subscribe", channel="ticker", symbol="tBTCUSD")
    chan_ids.append(other.event("subscribed")["chanId"])
    other.close()
    assert len(set(chan_ids)) == len(chan_ids) and min(chan_ids) > 1000
    infos = emu.connections()[0].channels()
    assert infos[chan_ids[3]].prec == "P1" and infos[chan_ids[3]].len == "100"
    assert infos[chan_ids[6]].key == "trade:1m:tBTCUSD"


@pytest.mark.parametrize(
    ("request_fields", "code", "msg"),
    [
        ({"channel": "ticker", "symbol": "btcusd"}, 10300, "symbol: invalid"),
        ({"channel": "trades", "symbol": "tNOPEUSD"}, 10300, "symbol: invalid"),
        ({"channel": "candles", "key": "trade:2m:tBTCUSD"}, 10300, "key: invalid"),
        ({"channel": "status", "key": "deriv:BTC"}, 10300, "key: invalid"),
        ({"channel": "orders", "symbol": "tBTCUSD"}, 10302, "channel: unknown"),
        ({"channel": "book", "symbol": "tBTCUSD", "prec": "P7"}, 10011, "prec: invalid"),
        ({"channel": "book", "symbol": "tBTCUSD", "len": 30}, 10012, "len: invalid"),
        (
            {"channel": "book", "symbol": "tBTCUSD", "prec": "R0", "len": "250"},
            10012,
            "len: invalid",
        ),
    ],
)
def test_subscribe_errors_echo_the_request(
    client: Client, request_fields: dict[str, Any], code: int, msg: str
) -> None:
    """A refused subscribe gets its code and the request's fields echoed back."""
    client.send(event="subscribe", subId=9, **request_fields)
    error = client.event("error")
    assert error["code"] == code and error["msg"] == msg
    assert error["subId"] == 9
    assert {k: error[k] for k in request_fields} == request_fields


def test_duplicate_unsubscribe_and_unknown_event_errors(emu: Emulator, client: Client) -> None:
    """10301 dup, 10400/10401 unsubscribe errors, 10000 for unknown events and bad JSON."""
    chan_id, _ = client.subscribe(channel="ticker", symbol="tLTCUSD")
    client.send(event="subscribe", channel="ticker", symbol="tLTCUSD")
    dup = client.event("error")
    assert dup == {
        "event": "error",
        "channel": "ticker",
        "symbol": "tLTCUSD",
        "msg": "subscribe: dup",
        "code": 10301,
        "pair": "LTCUSD",
    }
    client.send(event="unsubscribe", chanId="nope")
    assert client.event("error")["code"] == 10400
    client.send(event="unsubscribe", chanId=chan_id + 999)
    assert client.event("error") == {
        "event": "error",
        "chanId": chan_id + 999,
        "msg": "unsubscribe: not subscribed",
        "code": 10401,
    }
    client.send(event="bogus")
    assert client.event("error")["code"] == 10000
    client.ws.send("{not json")
    assert client.event("error")["code"] == 10000

    client.send(event="unsubscribe", chanId=chan_id)
    assert client.event("unsubscribed") == {
        "event": "unsubscribed",
        "status": "OK",
        "chanId": chan_id,
    }
    after = client.read_for(0.5)
    assert not data_frames(after, chan_id)
    assert emu.connections()[0].channels() == {}


def test_channel_limit_refuses_the_26th_subscription(client: Client) -> None:
    """25 channels fit on one connection; the 26th gets 10305 subscribe: limit."""
    for i in range(25):
        client.subscribe(channel="ticker", symbol=f"tS{i:02d}USD")
    client.send(event="subscribe", channel="ticker", symbol="tS25USD")
    error = client.event("error")
    assert (error["code"], error["msg"], error["symbol"]) == (10305, "subscribe: limit", "tS25USD")


def test_ping_pong_and_silence_all(emu: Emulator, client: Client) -> None:
    """ping gets pong with the cid and server time; a silenced connection answers nothing."""
    client.send(event="ping", cid=1234)
    pong = client.event("pong")
    assert pong["cid"] == 1234 and abs(pong["ts"] - time.time() * 1000) < 10_000
    emu.connections()[0].silence_all(True)
    client.send(event="ping", cid=5)
    assert client.read_for(0.5) == []
    emu.connections()[0].silence_all(False)
    client.send(event="ping", cid=6)
    assert client.event("pong")["cid"] == 6


def test_send_info_reaches_every_connection(emu: Emulator, client: Client) -> None:
    """send_info broadcasts {"event":"info","code":…} to all connections."""
    other = Client(emu.url)
    assert emu.wait_for(lambda: len(emu.connections()) == 2, 5)
    emu.send_info(20051)
    for c in (client, other):
        info = c.read_until(lambda t: '"code"' in t)[-1]
        assert json.loads(info)["code"] == 20051 and json.loads(info)["event"] == "info"
    other.close()


# -- channel layouts -------------------------------------------------------------------


def test_ticker_candles_and_status_layouts(client: Client) -> None:
    """Ticker 10/16 fields, candles newest first with same-or-newer MTS, status 23/12 fields."""
    t_ticker, t_snap = client.subscribe(channel="ticker", symbol="tBTCUSD")
    f_ticker, f_snap = client.subscribe(channel="ticker", symbol="fUSD")
    assert len(t_snap) == 10 and None not in t_snap
    assert len(f_snap) == 16 and f_snap[13] is None and f_snap[14] is None
    assert Decimal(t_snap[0]) < Decimal(t_snap[2])  # bid < ask

    candles, c_snap = client.subscribe(channel="candles", key="trade:1m:tETHUSD")
    mts = [int(c[0]) for c in c_snap]
    assert mts == sorted(mts, reverse=True) and all(m % 60_000 == 0 for m in mts)
    assert all(a - b == 60_000 for a, b in itertools.pairwise(mts))
    for c in c_snap:
        o, close, high, low = map(Decimal, c[1:5])
        assert high >= max(o, close) and low <= min(o, close)

    deriv, d_snap = client.subscribe(channel="status", key="deriv:tBTCF0:USTF0")
    assert len(d_snap) == 23
    placeholders = [1, 4, 6, 10, 12, 13, 15, 16, 18, 19, 20]
    assert [i for i, v in enumerate(d_snap) if v is None] == placeholders
    liq, l_snap = client.subscribe(channel="status", key="liq:global")
    assert l_snap and all(len(e) == 12 and e[0] == "pos" for e in l_snap)

    texts = client.read_until(lambda t: t.startswith(f'[{liq},"hb"'))
    updates = [u for u in data_frames(texts, candles) if u[1] != "hb"]
    assert updates and all(int(u[1][0]) >= mts[0] and len(u[1]) == 6 for u in updates)
    assert all(len(u[1]) == 23 for u in data_frames(texts, deriv) if u[1] != "hb")
    assert all(len(u[1]) == 10 for u in data_frames(texts, t_ticker) if u[1] != "hb")
    assert all(len(u[1]) == 16 for u in data_frames(texts, f_ticker) if u[1] != "hb")
    liq_entries = [e for u in data_frames(texts, liq) if u[1] != "hb" for e in u[1]]
    assert liq_entries and all(e[0] == "pos" and e[4].startswith("t") for e in liq_entries)


def test_trades_send_te_then_tu_with_the_same_trade(client: Client) -> None:
    """Snapshot: 30 newest first; each te is followed by a tu with the same id and values."""
    chan_id, snapshot = client.subscribe(channel="trades", symbol="tBTCUSD")
    mark = len(client.texts)  # frames of chan_id read while subscribing fUSD count too
    f_chan, f_snapshot = client.subscribe(channel="trades", symbol="fUSD")
    ids = [int(t[0]) for t in snapshot]
    assert len(snapshot) == 30 and ids == sorted(ids, reverse=True) and len(set(ids)) == 30
    assert all(len(t) == 4 for t in snapshot) and all(len(t) == 5 for t in f_snapshot)
    client.read_for(1.0)
    texts = client.texts[mark:]
    events = [(u[1], u[2]) for u in data_frames(texts, chan_id) if u[1] in ("te", "tu")]
    executed = [t for kind, t in events if kind == "te"]
    assert executed and [int(t[0]) for t in executed] == sorted(int(t[0]) for t in executed)
    assert int(executed[0][0]) > ids[0]
    seen: dict[str, list[str]] = {}
    for kind, trade in events:
        if kind == "te":
            assert trade[0] not in seen
            seen[trade[0]] = trade
        else:
            assert seen[trade[0]] == trade  # tu after its te, same payload
    assert any(kind == "tu" for kind, _ in events)
    f_events = [u for u in data_frames(_after_snapshot(client, f_chan), f_chan) if u[1] != "hb"]
    assert f_events and {u[1] for u in f_events} <= {"fte", "ftu"}
    assert all(len(u[2]) == 5 for u in f_events)


# -- books -----------------------------------------------------------------------------

BOOKS = [
    {"symbol": "tBTCUSD", "prec": "P0", "len": "25"},
    {"symbol": "tXRPBTC", "prec": "P0", "len": "25"},
    {"symbol": "tETHUSD", "prec": "P2", "len": "100"},
    {"symbol": "tBTCUSD", "prec": "R0", "len": "25"},
    {"symbol": "fUSD", "prec": "P0", "len": "25"},
    {"symbol": "fUSD", "prec": "R0", "len": "100"},
]


def _subscribe_books(client: Client) -> dict[int, tuple[ClientBook, int, list[Any]]]:
    books = {}
    for spec in BOOKS:
        chan_id, snapshot = client.subscribe(channel="book", **spec)
        book = ClientBook(spec["symbol"].startswith("f"), spec["prec"] == "R0")
        for entry in snapshot:
            book.apply(entry)
        books[chan_id] = (book, int(spec["len"]), snapshot)
    return books


def _after_snapshot(client: Client, chan_id: int) -> list[str]:
    """Every frame the client read after ``chan_id``'s snapshot, including those read while
    later subscriptions waited for their own acks."""
    start = next(
        i for i, t in enumerate(client.texts) if t.startswith(f"[{chan_id},[")
    )  # the snapshot is the first data frame of the channel
    return client.texts[start + 1 :]


def test_book_snapshots_are_ordered_windowed_and_never_crossed(client: Client) -> None:
    """Snapshots list bids best first then asks; updates keep len per side and never cross."""
    books = _subscribe_books(client)
    for book, length, snapshot in books.values():
        assert snapshot == book.wire(), "snapshot not in bids-best-first, asks-best-first order"
        assert 0 < len(book.bids) <= length and 0 < len(book.asks) <= length
        book.assert_sane(length)
    client.read_for(1.0)
    for chan_id, (book, length, _) in books.items():
        texts = _after_snapshot(client, chan_id)
        updates = [u[1] for u in data_frames(texts, chan_id) if u[1] not in ("hb", "cs")]
        assert len(updates) >= 5
        for entry in updates:
            book.apply(entry)
            book.assert_sane(length)


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_every_checksum_matches_the_raw_wire_texts(
    make_emulator: Callable[..., Emulator], bulk: bool
) -> None:
    """Each cs equals a CRC recomputed from received number texts, e-notation included."""
    emu = make_emulator(updates_per_tick=(2, 3))
    client = Client(emu.url)
    client.conf(OB_CHECKSUM | (BULK_UPDATES if bulk else 0))
    books = _subscribe_books(client)
    client.read_for(1.5)
    for chan_id, (book, _, _) in books.items():
        verified = 0
        for frame in data_frames(_after_snapshot(client, chan_id), chan_id):
            if frame[1] == "cs":
                assert int(frame[2]) == book.checksum()
                verified += 1
            elif frame[1] != "hb":
                is_batch = isinstance(frame[1][0], list)
                assert is_batch == bulk  # 2-3 updates per tick: batched iff BULK_UPDATES
                for entry in frame[1] if is_batch else [frame[1]]:
                    book.apply(entry)
        assert verified >= 5
    xrp = next(c for c, info in emu.connections()[0].channels().items() if info.symbol == "tXRPBTC")
    xrp_texts = [t for t in client.texts if t.startswith(f"[{xrp},")]
    xrp_tokens = [tok for t in xrp_texts for tok in re.findall(r"[\d.]+e-\d+", t)]
    assert xrp_tokens, "tXRPBTC should put prices below 1e-6 on the wire in e-notation"
    assert all(re.fullmatch(r"[1-9](\.\d*[1-9])?e-\d+", tok) for tok in xrp_tokens)
    client.close()


def test_emulator_book_equals_the_client_rebuild_after_pause(emu: Emulator, client: Client) -> None:
    """After pause(), emu.book() equals the book the client rebuilt from snapshot + updates."""
    client.conf(BULK_UPDATES)
    p0, _ = client.subscribe(channel="book", symbol="tBTCUSD", prec="P1", len=100)
    r0, _ = client.subscribe(channel="book", symbol="fUSD", prec="R0")
    books = {p0: ClientBook(False, False), r0: ClientBook(True, True)}
    client.read_for(0.5)
    emu.pause()
    client.sync()  # the pong comes after every update sent before pause() returned
    for chan_id, book in books.items():
        rebuild(client.texts, chan_id, book)
    assert numbers(books[p0].wire()) == emu.book("tBTCUSD", "P1", 100)
    assert numbers(books[r0].wire()) == emu.book("fUSD", "R0", 25)


def test_books_are_shared_between_connections(emu: Emulator) -> None:
    """Two connections on the same book see the same updates and end with the same book."""
    a, b = Client(emu.url), Client(emu.url)
    a_chan, _ = a.subscribe(channel="book", symbol="tETHUSD")
    a.read_for(0.3)
    b_chan, _ = b.subscribe(channel="book", symbol="tETHUSD")
    b.read_for(0.3)
    emu.pause()
    a.sync()
    b.sync()
    book_a = rebuild(a.texts, a_chan, ClientBook(False, False))
    book_b = rebuild(b.texts, b_chan, ClientBook(False, False))
    assert book_a.wire() == book_b.wire()
    assert numbers(book_a.wire()) == emu.book("tETHUSD")
    a.close()
    b.close()


# -- heartbeats and silence ------------------------------------------------------------


def test_heartbeats_every_interval_and_silence(emu: Emulator, client: Client) -> None:
    """Each channel gets [chanId,"hb"] every heartbeat_interval; a silenced one gets nothing."""
    emu.pause()
    first, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")
    second, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    texts = client.read_for(1.0)
    for chan_id in (first, second):
        assert 3 <= texts.count(f'[{chan_id},"hb"]') <= 6  # every 0.2 s for 1 s
    assert set(texts) == {f'[{first},"hb"]', f'[{second},"hb"]'}  # paused: only heartbeats
    emu.connections()[0].silence(first, True)
    later = client.read_for(0.7)
    assert f'[{second},"hb"]' in later and f'[{first},"hb"]' not in later


# -- handshakes and drops --------------------------------------------------------------


def test_reject_handshakes_and_connect_limit_give_http_status(
    make_emulator: Callable[..., Emulator],
) -> None:
    """reject_handshakes and the connect rate limit refuse the handshake with HTTP 429/503."""
    emu = make_emulator(connect_limit=(2, 60.0))
    emu.reject_handshakes(503, 1)
    emu.reject_handshakes(429, 1)
    for status in (503, 429):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            Client(emu.url)
        assert refused.value.status_code == status
    clients = [Client(emu.url), Client(emu.url)]
    with pytest.raises(websocket.WebSocketBadStatusException) as limited:
        Client(emu.url)
    assert limited.value.status_code == 429
    for c in clients:
        c.close()


def test_abort_resets_without_a_close_frame(emu: Emulator, client: Client) -> None:
    """abort() drops the TCP connection: the client gets an error, never a close frame."""
    client.subscribe(channel="book", symbol="tBTCUSD")
    emu.connections()[0].abort()
    client.ws.settimeout(5)
    with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
        while True:
            opcode, _ = client.ws.recv_data(control_frame=True)
            assert opcode != websocket.ABNF.OPCODE_CLOSE, "abort() sent a close frame"
    assert emu.wait_for(lambda: emu.connections() == [], 5)


def test_close_sends_the_code_and_stop_is_idempotent(emu: Emulator, client: Client) -> None:
    """close(code) sends a close frame with that code; stop() can be called twice."""
    client.subscribe(channel="ticker", symbol="tBTCUSD")
    conn = emu.connections()[0]
    conn.send_raw('[0,"n","raw"]')
    client.read_until(lambda t: t == '[0,"n","raw"]')
    conn.close(4000)
    client.ws.settimeout(5)
    while True:
        opcode, data = client.ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(data[:2], "big") == 4000
    emu.stop()
    emu.stop()


# -- command line ----------------------------------------------------------------------


def test_configure_parser_defaults() -> None:
    """The emulator sub-command's options and their defaults."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.heartbeat, args.tick) == ("127.0.0.1", 8765, 15.0, 0.1)
    assert (args.channel_limit, args.connect_limit, args.seed, args.log) == (25, 20, None, None)


def test_run_serves_until_sigterm_and_logs_frames(tmp_path: Path) -> None:
    """run() serves, appends sent frames to --log as JSON lines, and exits 0 on SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "frames.jsonl"
    code = (
        "import argparse, sys; from bridge.emulator import configure_parser, run; "
        "p = argparse.ArgumentParser(); configure_parser(p); "
        "sys.exit(run(p.parse_args(sys.argv[1:])))"
    )
    argv = [sys.executable, "-c", code, "--port", str(port), "--log", str(log), "--seed", "1"]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        assert f"ws://127.0.0.1:{port}/ws/2" in proc.stderr.readline()
        c = Client(f"ws://127.0.0.1:{port}/ws/2")
        info = c.recv()
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    line = json.loads(log.read_text().splitlines()[0])
    assert line["text"] == info and line["conn"] == 1 and line["t"] > 1e9
