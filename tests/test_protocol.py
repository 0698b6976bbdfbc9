"""Tests of bridge.protocol: the sans-I/O Bitfinex WS v2 core (bitfinex-ws-v2.md §2-§6).

Literal Bitfinex frames go in with explicit ``now=`` values; events and the decoded frames the
core wants to send come out. Nothing sleeps: heartbeat expiry is a ``now`` past the timeout.
:class:`Wire` plays the server's side of one connection (h11 ``ConnectionPair`` style): it
numbers every array frame with SEQ_ALL and appends a TIMESTAMP, as Bitfinex does with the
flags the core asks for.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest

from bridge import protocol as protocol_module
from bridge.errors import LocalProtocolError
from bridge.events import (
    Event,
    Interrupted,
    Maintenance,
    Malformed,
    Reconnect,
    ServerError,
    ServerInfo,
    Snapshot,
    Subscribed,
    SubscribeFailed,
    Unsubscribed,
    Update,
)
from bridge.protocol import FLAGS, TRANSITIONS, Protocol, State
from bridge.subscription import Subscription, parse_channel, parse_status

TICKER = parse_channel("ticker", "tBTCUSD")
FTICKER = parse_channel("ticker", "fUSD")
TRADES = parse_channel("trades", "tBTCUSD")
FTRADES = parse_channel("trades", "fUSD")
BOOK = parse_channel("book", "tBTCUSD")
FBOOK = parse_channel("book", "fBTC")
RAW = parse_channel("book:R0", "tBTCUSD")
FRAW = parse_channel("book:R0", "fUSD")
CANDLES = parse_channel("candles", "tBTCUSD")
FCANDLES = parse_channel("candles", "fUSD")
DERIV = parse_status("deriv:tBTCF0:USTF0")
LIQ = parse_status("liq:global")

MTS0 = 1_700_000_000_000
PONG = '{"event":"pong","ts":1511545528111,"cid":1}'


class Wire:
    """A :class:`Protocol` on a fresh connection, and the server's side of the wire.

    Every array frame sent with :meth:`data` carries the next SEQ_ALL number and the
    TIMESTAMP ``MTS0 + seq`` (§6); :attr:`seq` is the last number sent.
    """

    def __init__(self, *subs: Subscription, now: float = 0.0, **options: Any) -> None:
        self.protocol = Protocol(subs, **options)
        self.protocol.connect(now)
        self.seq = 0
        self.opening = self.sent()

    def sent(self) -> list[dict[str, Any]]:
        """The frames the core queued since the last call, decoded."""
        return [orjson.loads(frame) for frame in self.protocol.data_to_send()]

    def event(self, text: str | dict[str, Any], now: float) -> list[Event]:
        """Feed one event object (literal text or a dict)."""
        frame = text if isinstance(text, str) else orjson.dumps(text).decode()
        return self.protocol.feed(frame, now)

    def ack(self, sub: Subscription, chan_id: int, now: float) -> list[Event]:
        """The server's ``subscribed``, echoing the request's fields and subId (§3.1)."""
        echo = {k: v for k, v in sub.request().items() if k != "event"}
        return self.event({"event": "subscribed", **echo, "chanId": chan_id}, now)

    def data(self, chan_id: int, body: str, now: float) -> list[Event]:
        """Feed ``[chan_id,<body>,SEQ,MTS]``; ``body`` is literal JSON text."""
        self.seq += 1
        return self.protocol.feed(f"[{chan_id},{body},{self.seq},{MTS0 + self.seq}]", now)

    def hb(self, chan_id: int, now: float) -> list[Event]:
        """Feed a heartbeat ``[chan_id,"hb",SEQ,MTS]``."""
        return self.data(chan_id, '"hb"', now)

    def live(self, sub: Subscription, chan_id: int, snapshot: str, now: float) -> list[Event]:
        """Acknowledge ``sub`` and send its snapshot; returns the snapshot's events."""
        assert self.ack(sub, chan_id, now) == [Subscribed(sub, chan_id)]
        return self.data(chan_id, snapshot, now)


def signed_crc(text: str) -> int:
    """CRC-32 of ``text`` as the signed int Bitfinex sends (§7.1 step 5), computed here."""
    crc = zlib.crc32(text.encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def unsubscribe(chan_id: int) -> dict[str, Any]:
    """The unsubscribe request the core sends for ``chan_id`` (§3.2)."""
    return {"event": "unsubscribe", "chanId": chan_id}


def error_for(sub: Subscription, code: int, msg: str) -> dict[str, Any]:
    """An `error` event echoing the subscribe request's fields and subId (§3.3)."""
    return {**sub.request(), "event": "error", "msg": msg, "code": code}


TICKER_LABELS = (
    "bid",
    "bid_size",
    "ask",
    "ask_size",
    "daily_change",
    "daily_change_relative",
    "last_price",
    "volume",
    "high",
    "low",
)
# Real captured frames (§5.1, §5.2; the second trade's sign flipped to show a sell).
TICKER_SNAPSHOT = (
    "[0.068965,60157.36709703,0.0774,48578.50804052,0.001969,0.0262,0.076989,"
    "101459.39453471,0.0828,0.068961]"
)
TRADES_SNAPSHOT = (
    "[[669899159,1618665870435,166.391496,0.076989],"
    "[669899158,1618665870435,-6961.461304,0.076985]]"
)


# -- connect: conf and subscribe requests ------------------------------------------------------


def test_flags_are_the_documented_sum() -> None:
    """FLAGS is SEQ_ALL + TIMESTAMP + OB_CHECKSUM + BULK_UPDATES with the §3.4 values."""
    assert protocol_module.SEQ_ALL == 65536
    assert protocol_module.TIMESTAMP == 32768
    assert protocol_module.OB_CHECKSUM == 131072
    assert protocol_module.BULK_UPDATES == 536870912
    assert FLAGS == 65536 + 32768 + 131072 + 536870912 == 537100288


def test_connect_sends_one_conf_then_every_subscribe() -> None:
    """connect() queues exactly one conf with the flag sum, then one subscribe per channel."""
    wire = Wire(TICKER, BOOK, FCANDLES, LIQ, now=0.0)
    assert wire.opening == [
        {"event": "conf", "flags": 537100288},
        {"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD", "subId": "ticker:tBTCUSD"},
        {
            "event": "subscribe",
            "channel": "book",
            "symbol": "tBTCUSD",
            "prec": "P0",
            "freq": "F0",
            "len": "25",
            "subId": "book:tBTCUSD:P0",
        },
        {
            "event": "subscribe",
            "channel": "candles",
            "key": "trade:1m:fUSD:a30:p2:p30",
            "subId": "candles:fUSD:1m:a30:p2:p30",
        },
        {
            "event": "subscribe",
            "channel": "status",
            "key": "liq:global",
            "subId": "status:liq:global",
        },
    ]
    assert wire.sent() == []  # the queue was emptied


def test_next_deadline_after_connect_is_the_first_ping() -> None:
    """Right after connect(now=100) the next thing to do is the ping at 100 + ping_interval."""
    wire = Wire(TICKER, now=100.0, ping_interval=10.0)
    assert wire.protocol.next_deadline() == 110.0


# -- subscribed acks -------------------------------------------------------------------------


def test_ack_matched_by_sub_id_out_of_order() -> None:
    """A subscribed event carrying subId maps to that subscription, whatever the order."""
    wire = Wire(TICKER, TRADES, BOOK)
    book_ack = (
        '{"event":"subscribed","channel":"book","chanId":10092,"symbol":"tBTCUSD","prec":"P0",'
        '"freq":"F0","len":"25","subId":"book:tBTCUSD:P0","pair":"BTCUSD"}'
    )
    assert wire.event(book_ack, now=0.2) == [Subscribed(BOOK, 10092)]
    assert wire.ack(TICKER, 5, now=0.3) == [Subscribed(TICKER, 5)]
    assert wire.protocol.subscribed_count() == 2


def test_acks_without_sub_id_matched_by_identity_out_of_order_and_late() -> None:
    """Acks without subId map by channel/symbol/prec/len or key, even 13 s late (§3.1)."""
    wire = Wire(TICKER, TRADES, BOOK, FTRADES, FBOOK, CANDLES, DERIV, LIQ, now=0.0)
    acks = [
        (
            '{"event":"subscribed","channel":"trades","chanId":339521,"symbol":"fUSD",'
            '"currency":"USD"}',
            Subscribed(FTRADES, 339521),
        ),
        (
            '{"event":"subscribed","channel":"candles","chanId":343351,"key":"trade:1m:tBTCUSD"}',
            Subscribed(CANDLES, 343351),
        ),
        (
            '{"event":"subscribed","channel":"status","chanId":91684,"key":"liq:global"}',
            Subscribed(LIQ, 91684),
        ),
        (
            '{"event":"subscribed","channel":"ticker","chanId":232949,"symbol":"tBTCUSD",'
            '"pair":"BTCUSD"}',
            Subscribed(TICKER, 232949),
        ),
        (
            '{"event":"subscribed","channel":"status","chanId":335856,"key":"deriv:tBTCF0:USTF0"}',
            Subscribed(DERIV, 335856),
        ),
        (
            '{"event":"subscribed","channel":"book","chanId":106275,"symbol":"fBTC","prec":"P0",'
            '"freq":"F0","len":"25","currency":"BTC"}',
            Subscribed(FBOOK, 106275),
        ),
        # legacy echo with `pair` only
        (
            '{"event":"subscribed","channel":"trades","chanId":232959,"pair":"BTCUSD"}',
            Subscribed(TRADES, 232959),
        ),
    ]
    for i, (text, expected) in enumerate(acks):
        assert wire.event(text, now=0.1 * (i + 1)) == [expected]
    # The book ack comes 13 s later: no ack timeout, no reconnect.
    wire.event(PONG, now=12.0)
    assert wire.protocol.check_timeouts(13.0) == []
    late = (
        '{"event":"subscribed","channel":"book","chanId":232957,"symbol":"tBTCUSD","prec":"P0",'
        '"freq":"F0","len":"25","pair":"BTCUSD"}'
    )
    assert wire.event(late, now=13.0) == [Subscribed(BOOK, 232957)]
    assert wire.protocol.subscribed_count() == 8


def test_ack_for_nothing_pending_is_malformed() -> None:
    """An ack for an unknown subscription, or a second ack, is Malformed and counted."""
    wire = Wire(TICKER)
    other = (
        '{"event":"subscribed","channel":"ticker","chanId":9,"symbol":"tETHUSD","pair":"ETHUSD"}'
    )
    [event] = wire.event(other, now=1.0)
    assert isinstance(event, Malformed) and event.frame == other
    assert wire.ack(TICKER, 5, now=1.0) == [Subscribed(TICKER, 5)]
    [again] = wire.ack(TICKER, 6, now=1.1)
    assert isinstance(again, Malformed)
    assert wire.protocol.malformed == 2


# -- data: snapshot then updates, every channel and layout -----------------------------------


def test_ticker_trading_snapshot_then_update() -> None:
    """The first ticker array is a one-record Snapshot; later ones are Updates (§5.1)."""
    wire = Wire(TICKER)
    assert wire.live(TICKER, 232949, TICKER_SNAPSHOT, now=1.0) == [
        Snapshot(
            TICKER,
            [
                {
                    "bid": 0.068965,
                    "bid_size": 60157.36709703,
                    "ask": 0.0774,
                    "ask_size": 48578.50804052,
                    "daily_change": 0.001969,
                    "daily_change_relative": 0.0262,
                    "last_price": 0.076989,
                    "volume": 101459.39453471,
                    "high": 0.0828,
                    "low": 0.068961,
                }
            ],
            MTS0 + 1,
        )
    ]
    update = wire.data(232949, "[0.069,1,0.0775,2,0.002,0.03,0.077,101460,0.0828,0.068961]", 2.0)
    assert update == [
        Update(
            TICKER,
            {
                "bid": 0.069,
                "bid_size": 1,
                "ask": 0.0775,
                "ask_size": 2,
                "daily_change": 0.002,
                "daily_change_relative": 0.03,
                "last_price": 0.077,
                "volume": 101460,
                "high": 0.0828,
                "low": 0.068961,
            },
            MTS0 + 2,
        )
    ]


def test_ticker_funding_snapshot_drops_placeholders() -> None:
    """A 16-field funding ticker gives the funding labels; the placeholder nulls are gone."""
    wire = Wire(FTICKER)
    body = (
        "[0.0002,0.00019,30,1500000.5,0.000199,2,400000,0.00001,0.05,0.0002,123456789.1,"
        "0.00025,0.00015,null,null,2500000]"
    )
    [snap] = wire.live(FTICKER, 7, body, now=1.0)
    assert snap == Snapshot(
        FTICKER,
        [
            {
                "frr": 0.0002,
                "bid": 0.00019,
                "bid_period": 30,
                "bid_size": 1500000.5,
                "ask": 0.000199,
                "ask_period": 2,
                "ask_size": 400000,
                "daily_change": 0.00001,
                "daily_change_relative": 0.05,
                "last_price": 0.0002,
                "volume": 123456789.1,
                "high": 0.00025,
                "low": 0.00015,
                "frr_amount_available": 2500000,
            }
        ],
        MTS0 + 1,
    )


def test_trades_snapshot_then_te_published_tu_not() -> None:
    """Trades: the snapshot, then each `te` once; `tu` is not published by default (§5.2)."""
    wire = Wire(TRADES)
    assert wire.live(TRADES, 232959, TRADES_SNAPSHOT, now=1.0) == [
        Snapshot(
            TRADES,
            [
                {
                    "id": 669899159,
                    "mts": 1618665870435,
                    "amount": 166.391496,
                    "price": 0.076989,
                    "side": "buy",
                },
                {
                    "id": 669899158,
                    "mts": 1618665870435,
                    "amount": -6961.461304,
                    "price": 0.076985,
                    "side": "sell",
                },
            ],
            MTS0 + 1,
        )
    ]
    te = '"te",[669899160,1618665871000,-0.5,0.07699]'
    assert wire.data(232959, te, now=2.0) == [
        Update(
            TRADES,
            {
                "id": 669899160,
                "mts": 1618665871000,
                "amount": -0.5,
                "price": 0.07699,
                "side": "sell",
            },
            MTS0 + 2,
        )
    ]
    assert wire.data(232959, '"tu",[669899160,1618665871000,-0.5,0.07699]', now=3.0) == []
    assert wire.data(232959, te, now=3.5) == []  # the same te again: once per epoch


def test_te_repeating_a_snapshot_trade_is_dropped() -> None:
    """A `te` whose id was in the snapshot is not published a second time."""
    wire = Wire(TRADES)
    wire.live(TRADES, 232959, TRADES_SNAPSHOT, now=1.0)
    assert wire.data(232959, '"te",[669899159,1618665870435,166.391496,0.076989]', 2.0) == []


def test_trades_tu_option_publishes_tu_with_event_key() -> None:
    """With trades_tu=True both `te` and `tu` are published, each naming its `event`."""
    wire = Wire(TRADES, trades_tu=True)
    wire.live(TRADES, 232959, "[]", now=1.0)
    te = wire.data(232959, '"te",[1,1618665871000,2,100]', now=2.0)
    tu = wire.data(232959, '"tu",[1,1618665871000,2,100]', now=3.0)
    assert te == [
        Update(
            TRADES,
            {
                "id": 1,
                "mts": 1618665871000,
                "amount": 2,
                "price": 100,
                "side": "buy",
                "event": "te",
            },
            MTS0 + 2,
        )
    ]
    assert tu == [
        Update(
            TRADES,
            {
                "id": 1,
                "mts": 1618665871000,
                "amount": 2,
                "price": 100,
                "side": "buy",
                "event": "tu",
            },
            MTS0 + 3,
        )
    ]


def test_funding_trades_fte_published_ftu_not() -> None:
    """Funding trades: `fte` gives id/mts/amount/rate/period; `ftu` is not published."""
    wire = Wire(FTRADES)
    [snap] = wire.live(FTRADES, 339521, "[[1001,1618665870000,-500,0.0002,2]]", now=1.0)
    assert snap == Snapshot(
        FTRADES,
        [{"id": 1001, "mts": 1618665870000, "amount": -500, "rate": 0.0002, "period": 2}],
        MTS0 + 1,
    )
    assert wire.data(339521, '"fte",[1002,1618665871000,300,0.00021,30]', now=2.0) == [
        Update(
            FTRADES,
            {"id": 1002, "mts": 1618665871000, "amount": 300, "rate": 0.00021, "period": 30},
            MTS0 + 2,
        )
    ]
    assert wire.data(339521, '"ftu",[1002,1618665871000,300,0.00021,30]', now=3.0) == []


def test_funding_trades_tu_option_publishes_ftu() -> None:
    """With trades_tu=True an `ftu` is published with event "ftu"."""
    wire = Wire(FTRADES, trades_tu=True)
    wire.live(FTRADES, 3, "[]", now=1.0)
    assert wire.data(3, '"ftu",[1002,1618665871000,300,0.00021,30]', now=2.0) == [
        Update(
            FTRADES,
            {
                "id": 1002,
                "mts": 1618665871000,
                "amount": 300,
                "rate": 0.00021,
                "period": 30,
                "event": "ftu",
            },
            MTS0 + 2,
        )
    ]


def test_trade_event_before_snapshot_and_unknown_kind_are_malformed() -> None:
    """A `te` before the snapshot, an unknown trade kind, a second snapshot: Malformed."""
    wire = Wire(TRADES)
    wire.ack(TRADES, 4, now=1.0)
    [early] = wire.data(4, '"te",[1,2,3,4]', now=1.1)
    assert isinstance(early, Malformed)
    wire.data(4, "[[1,2,3,4]]", now=1.2)
    [odd] = wire.data(4, '"tx",[2,2,3,4]', now=1.3)
    assert isinstance(odd, Malformed)
    [second] = wire.data(4, "[[3,2,3,4]]", now=1.4)
    assert isinstance(second, Malformed)
    assert wire.protocol.malformed == 3


def test_trade_entry_without_id_is_malformed_and_the_channel_is_resubscribed() -> None:
    """A `te` with an empty entry or a null id is Malformed, never raised; its data is lost,
    so the live channel is interrupted (reset) and resubscribed: nothing is lost silently."""
    for body in ('"te",[]', '"te",[null,1618665871000,1,100]'):
        wire = Wire(TRADES)
        wire.live(TRADES, 4, "[]", now=1.0)
        events = wire.data(4, body, now=2.0)
        assert len(events) == 2 and isinstance(events[0], Malformed), body
        assert isinstance(events[1], Interrupted) and events[1].sub == TRADES, body
        assert wire.protocol.data_to_send() == [b'{"event":"unsubscribe","chanId":4}']


def test_book_p0_trading_snapshot_update_and_bulk_batch() -> None:
    """Book P0: snapshot records with side; an update; a BULK batch gives one Update each."""
    wire = Wire(BOOK)
    [snap] = wire.live(BOOK, 646750, "[[31115,1,1],[31120,2,-1.5]]", now=1.0)
    assert snap == Snapshot(
        BOOK,
        [
            {"price": 31115, "count": 1, "amount": 1, "side": "bid"},
            {"price": 31120, "count": 2, "amount": -1.5, "side": "ask"},
        ],
        MTS0 + 1,
    )
    assert wire.data(646750, "[30927,5,0.0908]", now=2.0) == [
        Update(BOOK, {"price": 30927, "count": 5, "amount": 0.0908, "side": "bid"}, MTS0 + 2)
    ]
    batch = wire.data(646750, "[[279380,1,0.0089],[31115,0,1],[31120,0,-1]]", now=3.0)
    assert batch == [
        Update(BOOK, {"price": 279380, "count": 1, "amount": 0.0089, "side": "bid"}, MTS0 + 3),
        Update(BOOK, {"price": 31115, "count": 0, "amount": 1, "side": "bid"}, MTS0 + 3),
        Update(BOOK, {"price": 31120, "count": 0, "amount": -1, "side": "ask"}, MTS0 + 3),
    ]


def test_book_p0_funding_snapshot_and_bulk_batch() -> None:
    """Funding book: rate/period/count/amount; negative amount is a bid (inverted, §5.3)."""
    wire = Wire(FBOOK)
    body = "[[0.00008101,30,1,-1.18760596],[0.000081,15,1,-10],[0.0001,2,3,500]]"
    [snap] = wire.live(FBOOK, 106275, body, now=1.0)
    assert snap.records == [
        {"rate": 0.00008101, "period": 30, "count": 1, "amount": -1.18760596, "side": "bid"},
        {"rate": 0.000081, "period": 15, "count": 1, "amount": -10, "side": "bid"},
        {"rate": 0.0001, "period": 2, "count": 3, "amount": 500, "side": "ask"},
    ]
    assert wire.data(106275, "[[0.000081,15,0,-1],[0.0001,2,0,1]]", now=2.0) == [
        Update(
            FBOOK,
            {"rate": 0.000081, "period": 15, "count": 0, "amount": -1, "side": "bid"},
            MTS0 + 2,
        ),
        Update(
            FBOOK, {"rate": 0.0001, "period": 2, "count": 0, "amount": 1, "side": "ask"}, MTS0 + 2
        ),
    ]


def test_raw_book_trading_snapshot_and_updates() -> None:
    """R0: order_id/price/amount records; a price-0 removal is an Update too (§5.4)."""
    wire = Wire(RAW)
    [snap] = wire.live(RAW, 648087, "[[2567606289,1876.5,1.4305],[2567594844,1878.1,-0.42]]", 1.0)
    assert snap == Snapshot(
        RAW,
        [
            {"order_id": 2567606289, "price": 1876.5, "amount": 1.4305, "side": "bid"},
            {"order_id": 2567594844, "price": 1878.1, "amount": -0.42, "side": "ask"},
        ],
        MTS0 + 1,
    )
    assert wire.data(648087, "[[55895794256,31107,0.07799627],[2567606289,0,1]]", 2.0) == [
        Update(
            RAW,
            {"order_id": 55895794256, "price": 31107, "amount": 0.07799627, "side": "bid"},
            MTS0 + 2,
        ),
        Update(RAW, {"order_id": 2567606289, "price": 0, "amount": 1, "side": "bid"}, MTS0 + 2),
    ]


def test_raw_book_funding_snapshot_and_update() -> None:
    """Funding R0: offer_id/period/rate/amount, side inverted."""
    wire = Wire(FRAW)
    [snap] = wire.live(FRAW, 8, "[[41239540,30,0.0002,-500],[41239541,2,0.00021,300]]", 1.0)
    assert snap.records == [
        {"offer_id": 41239540, "period": 30, "rate": 0.0002, "amount": -500, "side": "bid"},
        {"offer_id": 41239541, "period": 2, "rate": 0.00021, "amount": 300, "side": "ask"},
    ]
    assert wire.data(8, "[41239541,2,0,1]", now=2.0) == [
        Update(
            FRAW,
            {"offer_id": 41239541, "period": 2, "rate": 0, "amount": 1, "side": "ask"},
            MTS0 + 2,
        )
    ]


def test_candles_snapshot_list_then_single_update() -> None:
    """Candles: the snapshot is a list (MTS, O, C, H, L, V order); an update is one candle."""
    wire = Wire(CANDLES)
    body = (
        "[[1574698260000,7379.785503,7383.8,7388.3,7379.785503,1.68829482],"
        "[1574698200000,7399.9,7379.7,7399.9,7371.8,41.63633658]]"
    )
    [snap] = wire.live(CANDLES, 343351, body, now=1.0)
    assert snap == Snapshot(
        CANDLES,
        [
            {
                "mts": 1574698260000,
                "open": 7379.785503,
                "close": 7383.8,
                "high": 7388.3,
                "low": 7379.785503,
                "volume": 1.68829482,
            },
            {
                "mts": 1574698200000,
                "open": 7399.9,
                "close": 7379.7,
                "high": 7399.9,
                "low": 7371.8,
                "volume": 41.63633658,
            },
        ],
        MTS0 + 1,
    )
    assert wire.data(343351, "[1574698260000,7379.785503,7384,7388.3,7379.785503,2.1]", 2.0) == [
        Update(
            CANDLES,
            {
                "mts": 1574698260000,
                "open": 7379.785503,
                "close": 7384,
                "high": 7388.3,
                "low": 7379.785503,
                "volume": 2.1,
            },
            MTS0 + 2,
        )
    ]


def test_funding_candles_and_empty_snapshot() -> None:
    """Funding candles take the same layout; an empty snapshot is a Snapshot of no records."""
    wire = Wire(FCANDLES)
    assert wire.live(FCANDLES, 12, "[]", now=1.0) == [Snapshot(FCANDLES, [], MTS0 + 1)]
    assert wire.data(12, "[1574698260000,0.0002,0.00021,0.00022,0.00019,12000]", now=2.0) == [
        Update(
            FCANDLES,
            {
                "mts": 1574698260000,
                "open": 0.0002,
                "close": 0.00021,
                "high": 0.00022,
                "low": 0.00019,
                "volume": 12000,
            },
            MTS0 + 2,
        )
    ]


DERIV_BODY = (
    "[1596124822000,null,0.896,0.771995,null,1396531.67460709,null,1596153600000,0.0001056,6,"
    "null,-0.01381344,null,null,0.7664,null,null,246502.09001551,null,null,null,null,0.3]"
)
DERIV_RECORD = {
    "time_ms": 1596124822000,
    "deriv_price": 0.896,
    "spot_price": 0.771995,
    "insurance_fund_balance": 1396531.67460709,
    "next_funding_evt_timestamp_ms": 1596153600000,
    "next_funding_accrued": 0.0001056,
    "next_funding_step": 6,
    "current_funding": -0.01381344,
    "mark_price": 0.7664,
    "open_interest": 246502.09001551,
    "clamp_max": 0.3,
}


def test_deriv_status_snapshot_then_update() -> None:
    """deriv status: one 23-field array per message, placeholders and nulls dropped (§5.6)."""
    wire = Wire(DERIV)
    assert wire.live(DERIV, 335856, DERIV_BODY, now=1.0) == [
        Snapshot(DERIV, [DERIV_RECORD], MTS0 + 1)
    ]
    assert wire.data(335856, DERIV_BODY, now=2.0) == [Update(DERIV, DERIV_RECORD, MTS0 + 2)]


def test_liq_global_snapshot_then_updates() -> None:
    """liq:global: a list of entries; "pos" and placeholders dropped; fractional ms kept."""
    wire = Wire(LIQ)
    entry = (
        '["pos",142397657,1574697680828.2002,null,"tBSVUSD",-2.62932,91.583875238719,null,'
        "1,1,null,112.27]"
    )
    record = {
        "pos_id": 142397657,
        "time_ms": 1574697680828.2002,
        "symbol": "tBSVUSD",
        "amount": -2.62932,
        "base_price": 91.583875238719,
        "is_match": 1,
        "is_market_sold": 1,
        "liquidation_price": 112.27,
    }
    assert wire.live(LIQ, 91684, f"[{entry}]", now=1.0) == [Snapshot(LIQ, [record], MTS0 + 1)]
    assert wire.data(91684, f"[{entry},{entry}]", now=2.0) == [
        Update(LIQ, record, MTS0 + 2),
        Update(LIQ, record, MTS0 + 2),
    ]


def test_seq_and_timestamp_trailers_parsed_from_literal_frames() -> None:
    """[ch, P, SEQ, MTS] and [ch, "te", T, SEQ, MTS]: MTS becomes the event's mts (§6)."""
    protocol = Protocol([BOOK, TRADES])
    protocol.connect(0.0)
    protocol.feed(
        '{"event":"subscribed","channel":"book","chanId":646750,"symbol":"tBTCUSD",'
        '"prec":"P0","freq":"F0","len":"25","pair":"BTCUSD"}',
        0.1,
    )
    protocol.feed(
        '{"event":"subscribed","channel":"trades","chanId":7,"symbol":"tBTCUSD","pair":"BTCUSD"}',
        0.1,
    )
    [snap] = protocol.feed("[646750,[[31115,1,1]],1,1609794291015]", 0.2)
    assert snap == Snapshot(
        BOOK, [{"price": 31115, "count": 1, "amount": 1, "side": "bid"}], 1609794291015
    )
    assert protocol.feed('[646750,"hb",2,1609794291100]', 0.3) == []
    [upd] = protocol.feed("[646750,[30927,5,0.0908],3,1609794565952]", 0.4)
    assert upd == Update(
        BOOK, {"price": 30927, "count": 5, "amount": 0.0908, "side": "bid"}, 1609794565952
    )
    protocol.feed("[7,[],4,1609794565960]", 0.5)
    [te] = protocol.feed('[7,"te",[5,1609794565970,-1,31000],5,1609794565971]', 0.6)
    assert te.mts == 1609794565971 and te.record["id"] == 5
    # SEQ only (the capture's flag set): mts is None.
    [tick] = protocol.feed('[7,"te",[6,1609794565972,1,31001],6]', 0.7)
    assert tick.mts is None


# -- sequence numbers --------------------------------------------------------------------------


def test_sequence_gap_asks_for_reconnect() -> None:
    """SEQ_ALL counts every array (hb, unknown channels too); a jump means Reconnect (§6)."""
    protocol = Protocol([TICKER])
    protocol.connect(0.0)
    protocol.feed('{"event":"subscribed","channel":"ticker","chanId":5,"symbol":"tBTCUSD"}', 0.1)
    assert protocol.feed('[5,"hb",1,1700000000001]', 0.2) == []
    [unknown] = protocol.feed("[999,[1,2,3],2,1700000000002]", 0.3)
    assert isinstance(unknown, Malformed)
    assert protocol.feed('[5,"hb",3,1700000000003]', 0.4) == []
    [gap] = protocol.feed('[5,"hb",5,1700000000005]', 0.5)
    assert isinstance(gap, Reconnect)
    assert "expected 4" in gap.reason and "got 5" in gap.reason


def test_first_sequence_number_must_be_one() -> None:
    """The first array frame on a connection carries seq 1; any other start is a gap."""
    protocol = Protocol([TICKER])
    protocol.connect(0.0)
    protocol.feed('{"event":"subscribed","channel":"ticker","chanId":5,"symbol":"tBTCUSD"}', 0.1)
    [gap] = protocol.feed('[5,"hb",2,1700000000002]', 0.2)
    assert isinstance(gap, Reconnect) and "expected 1" in gap.reason


# -- heartbeats and stale channels -------------------------------------------------------------


def test_channel_silent_past_timeout_is_interrupted_and_unsubscribed() -> None:
    """No data and no hb past channel_timeout: Interrupted and an unsubscribe is sent."""
    wire = Wire(TICKER, TRADES, channel_timeout=30.0, connection_timeout=20.0)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.live(TRADES, 6, "[]", now=1.0)
    # Given: only the trades channel keeps beating.
    wire.hb(6, now=15.0)
    wire.hb(6, now=30.0)
    # When: now is past the ticker's timeout (last seen at 1.0).
    assert wire.protocol.check_timeouts(30.9) == []
    events = wire.protocol.check_timeouts(31.1)
    # Then
    assert len(events) == 1
    assert isinstance(events[0], Interrupted) and events[0].sub == TICKER
    assert events[0].reason.startswith("channel silent")
    assert [m for m in wire.sent() if m["event"] != "ping"] == [unsubscribe(5)]


def test_heartbeats_keep_channels_alive() -> None:
    """A channel that gets hb every 15 s is never interrupted; only pings are sent."""
    wire = Wire(TICKER, TRADES, channel_timeout=30.0)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.live(TRADES, 6, "[]", now=1.0)
    for t in (16.0, 31.0, 46.0, 61.0):
        wire.hb(5, now=t)
        wire.hb(6, now=t)
        assert wire.protocol.check_timeouts(t + 14.9) == []
    assert all(m["event"] == "ping" for m in wire.sent())


def test_next_deadline_tracks_channel_silence() -> None:
    """next_deadline() is the earliest of ping, connection silence and channel silence."""
    wire = Wire(TICKER, channel_timeout=30.0, connection_timeout=20.0, ping_interval=100.0)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.event(PONG, now=15.0)
    assert wire.protocol.next_deadline() == 31.0  # 1.0 + 30 beats 15.0 + 20
    wire.hb(5, now=16.0)
    assert wire.protocol.next_deadline() == 36.0  # now the connection: 16 + 20


def test_unknown_channel_is_malformed_and_counted() -> None:
    """Data for a chanId never subscribed is Malformed; the counter says how many."""
    wire = Wire(TICKER)
    [event] = wire.data(424242, "[1,2,3]", now=1.0)
    assert isinstance(event, Malformed)
    assert "424242" in event.reason
    assert event.frame == f"[424242,[1,2,3],1,{MTS0 + 1}]"
    assert wire.protocol.malformed == 1


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2",
        "[]",
        "[5]",
        '"garbage"',
        "42",
        "null",
        "{}",
        '{"event":"nonsense"}',
        '["5",[1,2,3]]',
        "[true,[1]]",
        b"\xff\xfe[1,2]",
        '{"event":"error","code":"abc","msg":"x"}',
        '{"event":"info","code":"restart"}',
        '{"event":"unsubscribed","status":"OK","chanId":[5]}',
        '{"event":"error","code":10401,"chanId":{"a":1}}',
    ],
)
def test_garbage_is_malformed_never_raised(frame: str | bytes) -> None:
    """Invalid JSON, empty arrays, bare values, unknown events, bad fields: Malformed."""
    wire = Wire(TICKER)
    events = wire.protocol.feed(frame, now=1.0)
    assert len(events) == 1 and isinstance(events[0], Malformed), events
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    assert events[0].frame == text
    assert wire.protocol.malformed == 1


def test_payload_that_is_not_an_array_is_malformed_and_resubscribes_the_channel() -> None:
    """[ch, 5] and entries of the wrong type are Malformed; the book is interrupted (reset)
    and resubscribed, and its next snapshot starts a new epoch; other channels carry on."""
    for body in ("5", '[["a",1,1]]', "[[1,2]]", "[null,1,1]"):
        wire = Wire(BOOK)
        wire.live(BOOK, 3, "[[100,1,1]]", now=1.0)
        events = wire.data(3, body, now=2.0)
        assert len(events) == 2 and isinstance(events[0], Malformed), body
        assert events[1] == Interrupted(BOOK, events[1].reason), body
        assert "unusable frame" in events[1].reason
        assert wire.data(3, "[101,1,2]", now=2.5) == [], "data after the unsubscribe is ignored"


def test_pong_and_conf_ok_produce_nothing_and_conf_refusal_is_reported() -> None:
    """pong and `conf OK` are silent; a refused conf is a ServerError."""
    wire = Wire(TICKER)
    assert wire.event(PONG, now=1.0) == []
    assert wire.event('{"event":"conf","status":"OK","flags":537100288}', now=1.0) == []
    [err] = wire.event('{"event":"conf","status":"FAILED","code":10050}', now=1.0)
    assert isinstance(err, ServerError) and err.code == 10050


def test_frames_without_trailers_are_accepted() -> None:
    """Without SEQ_ALL/TIMESTAMP trailers data still flows: no seq check, mts None."""
    protocol = Protocol([BOOK])
    protocol.connect(0.0)
    protocol.feed(
        '{"event":"subscribed","channel":"book","chanId":3,"symbol":"tBTCUSD",'
        '"prec":"P0","freq":"F0","len":"25"}',
        0.1,
    )
    assert protocol.feed("[3,[[100,1,2]]]", 0.2) == [
        Snapshot(BOOK, [{"price": 100, "count": 1, "amount": 2, "side": "bid"}], None)
    ]
    assert protocol.feed('[3,"hb"]', 0.3) == []
    [bad] = protocol.feed("[3,[null,1,1]]", 0.4)
    assert isinstance(bad, Malformed) and "not all numbers" in bad.reason


def test_trade_ids_remembered_are_bounded() -> None:
    """Only the last TRADE_IDS_KEPT trade ids are remembered; the oldest is forgotten."""
    kept = protocol_module.TRADE_IDS_KEPT
    wire = Wire(TRADES)
    wire.live(TRADES, 4, "[[1,1618665870000,1,100]]", now=1.0)
    for trade_id in range(2, kept + 2):
        assert len(wire.data(4, f'"te",[{trade_id},1618665870000,1,100]', now=2.0)) == 1
    # id 2 is still remembered, id 1 (the oldest) was forgotten.
    assert wire.data(4, '"te",[2,1618665870000,1,100]', now=3.0) == []
    [again] = wire.data(4, '"te",[1,1618665870000,1,100]', now=3.0)
    assert again.record["id"] == 1


def test_answered_and_subscribed_counts() -> None:
    """subscribed_count counts acked channels; answered_count also counts refused ones."""
    wire = Wire(TICKER, TRADES, BOOK)
    wire.ack(TICKER, 5, now=1.0)
    wire.event(error_for(TRADES, 10300, "symbol: invalid"), now=1.0)
    assert wire.protocol.subscribed_count() == 1
    assert wire.protocol.answered_count() == 2


def test_events_print_short_operator_lines() -> None:
    """Events have a short str naming the stream, the code and the advice."""
    failed = SubscribeFailed(TICKER, 10305, "subscribe: limit", 10.0)
    assert str(failed) == (
        "subscribe ticker:tBTCUSD refused: 10305 subscribe: limit (too many channels on one "
        "connection, lower bitfinex.channel_limit; retrying in 10s)"
    )
    assert str(Subscribed(BOOK, 7)) == "subscribed book:tBTCUSD:P0 as 7"
    assert str(Unsubscribed(BOOK)) == "unsubscribed book:tBTCUSD:P0"
    assert str(Interrupted(BOOK, "stale")) == "book:tBTCUSD:P0 interrupted: stale"
    assert str(Reconnect("gap")) == "reconnecting: gap"
    assert str(Maintenance(True)) == "maintenance started (20060)"
    assert str(Maintenance(False)) == "maintenance ended (20061)"
    assert str(ServerError(10000, "Unknown event")) == "server error 10000: Unknown event"
    assert str(ServerInfo(2, 1, "abc")) == "info v2 platform=1 server=abc"
    assert str(Malformed("bad", "x" * 500)) == "malformed frame (bad): " + "x" * 200


# -- unsubscribe and late data -----------------------------------------------------------------


def test_late_data_after_unsubscribe_is_ignored() -> None:
    """Data between unsubscribe and its ack, and after it, is dropped without Malformed."""
    wire = Wire(TICKER)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    assert wire.protocol.resubscribe(TICKER, "operator asked", now=2.0) == [
        Interrupted(TICKER, "operator asked")
    ]
    assert wire.sent() == [unsubscribe(5)]
    assert wire.data(5, TICKER_SNAPSHOT, now=2.1) == []  # before the ack
    assert wire.event('{"event":"unsubscribed","status":"OK","chanId":5}', now=2.2) == [
        Unsubscribed(TICKER)
    ]
    assert wire.sent() == [TICKER.request()]
    assert wire.data(5, TICKER_SNAPSHOT, now=2.3) == []  # after the ack
    assert wire.hb(5, now=2.4) == []
    assert wire.protocol.malformed == 0


def test_resubscribe_ignores_channels_without_a_chan_id() -> None:
    """resubscribe() of a pending channel does nothing and sends nothing."""
    wire = Wire(TICKER)
    assert wire.protocol.resubscribe(TICKER, "why", now=1.0) == []
    assert wire.sent() == []


def test_unsubscribed_for_no_channel_we_left_is_malformed() -> None:
    """An `unsubscribed` for a live channel we never left is Malformed."""
    wire = Wire(TICKER)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    [event] = wire.event('{"event":"unsubscribed","status":"OK","chanId":5}', now=2.0)
    assert isinstance(event, Malformed)


# -- checksums ---------------------------------------------------------------------------------

BOOK_SNAPSHOT = (
    "[[0.0000011,2,150.5],[7e-7,1,10000],[2e-8,3,640000],"
    "[0.00000111,1,-4847.13],[0.0000012,2,-500],[0.00000125,1,-12000]]"
)
# §7.1: bid0, ask0, bid1, ask1, … as PRICE:AMOUNT with the texts as sent.
BOOK_PREIMAGE = (
    "0.0000011:150.5:0.00000111:-4847.13:7e-7:10000:0.0000012:-500:2e-8:640000:0.00000125:-12000"
)
BOOK_PREIMAGE_AFTER_DELETE = (
    "0.0000011:150.5:0.00000111:-4847.13:7e-7:10000:0.0000012:-500:0.00000125:-12000"
)


def test_checksum_of_raw_texts_matches() -> None:
    """A cs equal to CRC32 of the raw-text preimage (zlib, signed) passes silently."""
    wire = Wire(BOOK)
    wire.live(BOOK, 3, BOOK_SNAPSHOT, now=1.0)
    assert wire.data(3, f'"cs",{signed_crc(BOOK_PREIMAGE)}', now=1.1) == []
    # [ch,[2e-8,0,1]] deletes the 2e-8 bid (the captured frame of §5.3).
    assert wire.data(3, "[2e-8,0,1]", now=1.2) == [
        Update(BOOK, {"price": 2e-8, "count": 0, "amount": 1, "side": "bid"}, MTS0 + 3)
    ]
    assert wire.data(3, f'"cs",{signed_crc(BOOK_PREIMAGE_AFTER_DELETE)}', now=1.3) == []
    assert wire.protocol.checksum_errors == 0
    assert wire.sent() == []


def test_checksum_hashes_e_notation_as_sent() -> None:
    """`2e-8` is hashed as `2e-8`: a cs computed over fixed notation is a mismatch."""
    wire = Wire(BOOK)
    wire.live(BOOK, 3, BOOK_SNAPSHOT, now=1.0)
    fixed = BOOK_PREIMAGE.replace("7e-7", "0.0000007").replace("2e-8", "0.00000002")
    [event] = wire.data(3, f'"cs",{signed_crc(fixed)}', now=1.1)
    assert isinstance(event, Interrupted) and event.reason.startswith("checksum mismatch")


def test_checksum_accepts_unsigned_form_of_the_same_crc() -> None:
    """The CRC compared modulo 2**32: the unsigned value of the same CRC also matches."""
    wire = Wire(BOOK)
    wire.live(BOOK, 3, BOOK_SNAPSHOT, now=1.0)
    assert wire.data(3, f'"cs",{zlib.crc32(BOOK_PREIMAGE.encode())}', now=1.1) == []


def test_checksum_mismatch_resets_resubscribes_and_restarts_with_a_snapshot() -> None:
    """Mismatch: Interrupted + unsubscribe; on `unsubscribed` a new subscribe; then a Snapshot."""
    wire = Wire(BOOK)
    wire.live(BOOK, 3, BOOK_SNAPSHOT, now=1.0)
    # When: the server's cs differs from the local book.
    [event] = wire.data(3, f'"cs",{signed_crc(BOOK_PREIMAGE) ^ 1}', now=2.0)
    # Then: the stream is interrupted and the channel left.
    assert isinstance(event, Interrupted) and event.sub == BOOK
    assert event.reason.startswith("checksum mismatch")
    assert wire.protocol.checksum_errors == 1
    assert wire.sent() == [unsubscribe(3)]
    assert wire.data(3, "[0.0000011,3,1]", now=2.1) == []  # in flight, ignored
    assert wire.event('{"event":"unsubscribed","status":"OK","chanId":3}', now=2.2) == [
        Unsubscribed(BOOK)
    ]
    assert wire.sent() == [BOOK.request()]
    # And: the new subscription starts again from a snapshot, with a fresh book.
    assert wire.ack(BOOK, 30, now=2.5) == [Subscribed(BOOK, 30)]
    [snap] = wire.data(30, "[[100,1,2],[101,1,-3]]", now=2.6)
    assert snap == Snapshot(
        BOOK,
        [
            {"price": 100, "count": 1, "amount": 2, "side": "bid"},
            {"price": 101, "count": 1, "amount": -3, "side": "ask"},
        ],
        MTS0 + wire.seq,
    )
    assert wire.data(30, f'"cs",{signed_crc("100:2:101:-3")}', now=2.7) == []
    assert wire.protocol.checksum_errors == 1


def test_checksum_on_a_raw_book_uses_order_ids() -> None:
    """R0 checksum pairs are ORDER_ID:AMOUNT, bids by price desc (§7.1)."""
    wire = Wire(RAW)
    wire.live(RAW, 9, "[[11,100,1],[12,101,2],[13,102,-3]]", now=1.0)
    assert wire.data(9, f'"cs",{signed_crc("12:2:13:-3:11:1")}', now=1.1) == []


def test_checksum_not_verified_when_disabled() -> None:
    """With verify_checksums=False a wrong cs is ignored."""
    wire = Wire(BOOK, verify_checksums=False)
    wire.live(BOOK, 3, BOOK_SNAPSHOT, now=1.0)
    assert wire.data(3, '"cs",12345', now=1.1) == []
    assert wire.sent() == []


def test_checksum_for_a_non_book_channel_is_malformed() -> None:
    """A cs on a ticker channel is Malformed."""
    wire = Wire(TICKER)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    [event] = wire.data(5, '"cs",12345', now=1.1)
    assert isinstance(event, Malformed)


# -- info events and maintenance ---------------------------------------------------------------


def test_info_on_connect_is_reported() -> None:
    """The connect-time info event becomes ServerInfo(version, platform status, serverId)."""
    wire = Wire(TICKER)
    text = (
        '{"event":"info","version":2,"serverId":"083bd8d4-aca7-4690-a573-eabfc8103de8",'
        '"platform":{"status":1}}'
    )
    assert wire.event(text, now=0.1) == [ServerInfo(2, 1, "083bd8d4-aca7-4690-a573-eabfc8103de8")]


def test_version_other_than_2_asks_for_reconnect() -> None:
    """info with version 3 → ServerInfo then Reconnect."""
    wire = Wire(TICKER)
    events = wire.event('{"event":"info","version":3,"serverId":"x","platform":{"status":1}}', 0.1)
    assert events[0] == ServerInfo(3, 1, "x")
    assert isinstance(events[1], Reconnect) and "3" in events[1].reason
    assert len(events) == 2


def test_platform_status_0_on_connect_means_maintenance() -> None:
    """info with platform.status 0 reports Maintenance(True)."""
    wire = Wire(TICKER)
    events = wire.event('{"event":"info","version":2,"serverId":"x","platform":{"status":0}}', 0.1)
    assert events == [ServerInfo(2, 0, "x"), Maintenance(True)]
    assert wire.protocol.maintenance is True


def test_info_20051_asks_for_reconnect() -> None:
    """info 20051 (server restarting) → Reconnect."""
    wire = Wire(TICKER)
    [event] = wire.event('{"event":"info","code":20051,"msg":"Stop/Restart Websocket Server"}', 1)
    assert isinstance(event, Reconnect) and "20051" in event.reason


def test_unknown_info_code_is_a_server_error() -> None:
    """An info code the core does not know is reported as ServerError(code, msg)."""
    wire = Wire(TICKER)
    assert wire.event('{"event":"info","code":20099,"msg":"hello"}', 1.0) == [
        ServerError(20099, "hello")
    ]


def test_maintenance_suspends_stale_detection_then_20061_resubscribes_everything() -> None:
    """20060 → Maintenance(True), silence is fine; 20061 → every live channel resubscribed."""
    wire = Wire(TICKER, TRADES, BOOK, channel_timeout=30.0, connection_timeout=20.0)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.ack(TRADES, 6, now=1.0)  # acked, no snapshot yet
    # BOOK stays pending.
    assert wire.event('{"event":"info","code":20060,"msg":"Entering maintenance"}', 2.0) == [
        Maintenance(True)
    ]
    # Given: the channels stay silent for 50 s, only pongs arrive.
    for t in (15.0, 30.0, 45.0, 52.0):
        wire.event(PONG, now=t)
        assert wire.protocol.check_timeouts(t) == []
    assert [m for m in wire.sent() if m["event"] != "ping"] == []
    assert wire.protocol.next_deadline() > 52.0
    # When: maintenance ends.
    events = wire.event('{"event":"info","code":20061,"msg":"Maintenance ended"}', now=53.0)
    # Then: the live channel is interrupted; every subscribed channel is left and resubscribed.
    assert events == [Maintenance(False), Interrupted(TICKER, "maintenance ended (20061)")]
    assert wire.protocol.maintenance is False
    assert wire.sent() == [unsubscribe(5), unsubscribe(6)]
    assert wire.event('{"event":"unsubscribed","status":"OK","chanId":5}', 53.1) == [
        Unsubscribed(TICKER)
    ]
    assert wire.event('{"event":"unsubscribed","status":"OK","chanId":6}', 53.2) == [
        Unsubscribed(TRADES)
    ]
    assert wire.sent() == [TICKER.request(), TRADES.request()]


# -- subscribe errors --------------------------------------------------------------------------


def test_subscribe_error_10300_retries_with_growing_spacing() -> None:
    """10300: SubscribeFailed, other channels carry on, retried only once `now` passes retry_at."""
    wire = Wire(TICKER, TRADES)
    err = error_for(TICKER, 10300, "symbol: invalid")
    assert wire.event(err, now=1.0) == [SubscribeFailed(TICKER, 10300, "symbol: invalid", 5.0)]
    # The other channel carries on.
    wire.live(TRADES, 6, "[]", now=1.0)
    assert wire.protocol.next_deadline() == 6.0
    assert wire.protocol.check_timeouts(5.9) == []
    assert wire.sent() == []
    assert wire.protocol.check_timeouts(6.0) == []
    assert wire.sent() == [TICKER.request()]
    # Second refusal: 10 s.
    assert wire.event(err, now=6.5) == [SubscribeFailed(TICKER, 10300, "symbol: invalid", 10.0)]
    wire.hb(6, now=10.0)
    wire.protocol.check_timeouts(16.4)
    assert [m for m in wire.sent() if m["event"] == "subscribe"] == []
    wire.protocol.check_timeouts(16.5)
    assert [m for m in wire.sent() if m["event"] == "subscribe"] == [TICKER.request()]
    # Third refusal: 20 s.
    assert wire.event(err, now=17.0) == [SubscribeFailed(TICKER, 10300, "symbol: invalid", 20.0)]


def test_subscribe_retry_spacing_is_capped() -> None:
    """Retry spacing doubles from 5 s and stops growing at 300 s."""
    wire = Wire(TICKER)
    err = error_for(TICKER, 10300, "symbol: invalid")
    now, spacing = 1.0, []
    for _ in range(8):
        [failed] = wire.event(err, now=now)
        assert isinstance(failed, SubscribeFailed)
        spacing.append(failed.retry_in)
        now += failed.retry_in
        wire.event(PONG, now=now)
        wire.protocol.check_timeouts(now)
        assert [m for m in wire.sent() if m["event"] == "subscribe"] == [TICKER.request()]
    assert spacing == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_subscribe_error_10305_matched_without_sub_id() -> None:
    """10305 (channel limit) echoing the request fields maps to the subscription."""
    wire = Wire(TICKER, BOOK)
    text = (
        '{"event":"error","channel":"book","symbol":"tBTCUSD","prec":"P0","freq":"F0",'
        '"len":"25","msg":"subscribe: limit","code":10305,"pair":"BTCUSD"}'
    )
    assert wire.event(text, now=1.0) == [SubscribeFailed(BOOK, 10305, "subscribe: limit", 5.0)]
    assert wire.ack(TICKER, 5, now=1.1) == [Subscribed(TICKER, 5)]


def test_error_for_no_pending_subscription_is_a_server_error() -> None:
    """An error that matches none of our pending subscribes is a ServerError."""
    wire = Wire(TICKER)
    assert wire.event('{"event":"error","msg":"Unknown event","code":10000}', 1.0) == [
        ServerError(10000, "Unknown event")
    ]


def test_10401_for_a_channel_we_did_not_leave_is_a_server_error() -> None:
    """10401 naming a live channel we never unsubscribed is reported, the channel stays."""
    wire = Wire(TICKER)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    text = '{"event":"error","msg":"unsubscribe: invalid","code":10401,"chanId":5}'
    assert wire.event(text, now=2.0) == [ServerError(10401, "unsubscribe: invalid")]
    assert wire.sent() == []
    assert len(wire.data(5, TICKER_SNAPSHOT, now=2.1)) == 1


def test_10401_during_unsubscribe_subscribes_again() -> None:
    """10401 (not subscribed) answering our unsubscribe: treated as left, subscribe again."""
    wire = Wire(TICKER)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.protocol.resubscribe(TICKER, "stale", now=2.0)
    assert wire.sent() == [unsubscribe(5)]
    text = '{"event":"error","msg":"unsubscribe: invalid","code":10401,"chanId":5}'
    assert wire.event(text, now=2.1) == [Unsubscribed(TICKER)]
    assert wire.sent() == [TICKER.request()]
    assert wire.ack(TICKER, 50, now=2.2) == [Subscribed(TICKER, 50)]


# -- connection-level timeouts and pings -------------------------------------------------------


def test_connection_silence_asks_for_reconnect() -> None:
    """Nothing received for longer than connection_timeout → Reconnect."""
    wire = Wire(TICKER, connection_timeout=20.0)
    wire.event(PONG, now=5.0)
    assert wire.protocol.check_timeouts(25.0) == []  # exactly 20 s: not yet
    [event] = wire.protocol.check_timeouts(25.1)
    assert isinstance(event, Reconnect) and event.reason.startswith("nothing received")


def test_ping_sent_every_ping_interval() -> None:
    """check_timeouts sends {"event":"ping","cid":n} each ping_interval, cid counting up."""
    wire = Wire(TICKER, ping_interval=10.0, connection_timeout=20.0)
    wire.protocol.check_timeouts(9.9)
    assert wire.sent() == []
    wire.protocol.check_timeouts(10.0)
    assert wire.sent() == [{"event": "ping", "cid": 1}]
    wire.event(PONG, now=12.0)
    wire.protocol.check_timeouts(15.0)
    assert wire.sent() == []
    assert wire.protocol.next_deadline() == 20.0
    wire.protocol.check_timeouts(20.0)
    assert wire.sent() == [{"event": "ping", "cid": 2}]


def test_ack_timeout_asks_for_reconnect() -> None:
    """A subscribe unanswered for 60 s (SUBSCRIBE_ACK_TIMEOUT) → Reconnect."""
    wire = Wire(TICKER)
    for t in (15.0, 30.0, 45.0, 60.0):
        wire.event(PONG, now=t)
        assert wire.protocol.check_timeouts(t) == []
    wire.event(PONG, now=60.1)
    [event] = wire.protocol.check_timeouts(60.1)
    assert isinstance(event, Reconnect)


def test_stale_interruption_not_lost_when_an_ack_times_out_in_the_same_check() -> None:
    """One check_timeouts finding a stale live channel and a late ack reports both."""
    wire = Wire(TICKER, BOOK, channel_timeout=30.0)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.hb(5, now=30.5)
    for t in (15.0, 45.0, 60.5):
        wire.event(PONG, now=t)
    # Both deadlines have passed by 60.6: TICKER silent since 30.5, BOOK pending since 0.
    events = wire.protocol.check_timeouts(60.6)
    assert any(isinstance(e, Reconnect) for e in events)
    assert [e.sub for e in events if isinstance(e, Interrupted)] == [TICKER]


# -- connection lost and reconnect -------------------------------------------------------------


def test_connection_lost_interrupts_live_channels_only_and_connect_works_again() -> None:
    """connection_lost(): Interrupted for live channels only; connect() starts over cleanly."""
    wire = Wire(TICKER, TRADES, BOOK, CANDLES)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)  # live
    wire.ack(TRADES, 6, now=1.0)  # subscribed, no snapshot yet
    wire.event(error_for(CANDLES, 10300, "symbol: invalid"), now=1.0)  # failed
    # BOOK stays pending; a frame is queued but never sent.
    wire.protocol.check_timeouts(10.0)
    # When: the socket is gone.
    events = wire.protocol.connection_lost("socket closed")
    # Then: only the live stream is interrupted, nothing is left to send.
    assert events == [Interrupted(TICKER, "socket closed")]
    assert wire.protocol.data_to_send() == []
    assert wire.protocol.subscribed_count() == 0
    # When: the socket reopens.
    wire.protocol.connect(100.0)
    # Then: conf and every subscribe again; sequence numbers start over at 1.
    assert wire.sent() == [
        {"event": "conf", "flags": FLAGS},
        TICKER.request(),
        TRADES.request(),
        BOOK.request(),
        CANDLES.request(),
    ]
    wire.seq = 0
    assert wire.live(TICKER, 77, TICKER_SNAPSHOT, now=100.5) == [
        Snapshot(
            TICKER, [dict(zip(TICKER_LABELS, orjson.loads(TICKER_SNAPSHOT), strict=True))], MTS0 + 1
        )
    ]
    [stale] = wire.data(5, TICKER_SNAPSHOT, now=100.6)  # the old chanId means nothing now
    assert isinstance(stale, Malformed)


def test_connection_lost_twice_and_maintenance_reset_on_connect() -> None:
    """A second connection_lost() reports nothing; connect() clears the maintenance flag."""
    wire = Wire(TICKER)
    wire.live(TICKER, 5, TICKER_SNAPSHOT, now=1.0)
    wire.event('{"event":"info","code":20060,"msg":"m"}', now=2.0)
    assert wire.protocol.connection_lost("a") == [Interrupted(TICKER, "a")]
    assert wire.protocol.connection_lost("b") == []
    wire.protocol.connect(10.0)
    assert wire.protocol.maintenance is False


# -- the state table ---------------------------------------------------------------------------


def test_transition_table_edges() -> None:
    """TRANSITIONS holds the documented edges: IDLE only to PENDING, every state to IDLE."""
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.IDLE] == {State.PENDING}
    assert TRANSITIONS[State.PENDING] == {State.SUBSCRIBED, State.FAILED, State.IDLE}
    assert TRANSITIONS[State.SUBSCRIBED] == {State.LIVE, State.UNSUBSCRIBING, State.IDLE}
    assert TRANSITIONS[State.LIVE] == {State.UNSUBSCRIBING, State.IDLE}
    assert TRANSITIONS[State.UNSUBSCRIBING] == {State.PENDING, State.FAILED, State.IDLE}
    assert TRANSITIONS[State.FAILED] == {State.PENDING, State.IDLE}


@pytest.mark.parametrize(
    ("old", "new"),
    [(old, new) for old in State for new in State if new not in TRANSITIONS[old]],
    ids=lambda s: s.value,
)
def test_illegal_transition_raises_local_protocol_error(old: State, new: State) -> None:
    """Every move missing from TRANSITIONS raises LocalProtocolError (a bug of ours)."""
    protocol = Protocol([TICKER])
    channel = protocol.channels[TICKER]
    channel.state = old
    with pytest.raises(LocalProtocolError):
        protocol._transition(channel, new)
    assert channel.state is old


def test_connect_twice_without_connection_lost_is_a_local_error() -> None:
    """connect() on a connection that is already subscribing raises LocalProtocolError."""
    protocol = Protocol([TICKER])
    protocol.connect(0.0)
    with pytest.raises(LocalProtocolError):
        protocol.connect(1.0)


@pytest.mark.parametrize(
    ("code", "msg", "advice"),
    [
        (10300, "symbol: invalid", "check the symbol exists on Bitfinex"),
        (10301, "subscribe: dup", "Bitfinex thinks it is subscribed already"),
        (10302, "channel: unknown", "check the channel name"),
        (10305, "subscribe: limit", "lower bitfinex.channel_limit"),
        (10011, "prec: invalid", "check the book precision"),
        (10012, "len: invalid", "check the book length"),
    ],
)
def test_every_subscription_error_is_reported_with_what_to_do(
    code: int, msg: str, advice: str
) -> None:
    """Each subscribe error code gives SubscribeFailed (retry in 5 s) saying what to do, and
    the other channel of the connection carries on."""
    wire = Wire(TICKER, TRADES)
    failed, *rest = wire.event(error_for(TICKER, code, msg), now=1.0)
    assert failed == SubscribeFailed(TICKER, code, msg, 5.0)
    # 10301: the server holds a channel we lost track of, so the connection starts clean
    assert rest == ([Reconnect("ticker:tBTCUSD: server says already subscribed (10301)")]
                    if code == 10301 else [])  # fmt: skip
    assert advice in str(failed) and "retrying in 5s" in str(failed)
    assert wire.ack(TRADES, 6, now=1.1) == [Subscribed(TRADES, 6)]


def test_a_channel_resubscribed_again_and_again_is_spaced_out() -> None:
    """A book whose checksum keeps failing: the first 3 resubscribes in a minute are
    immediate, the 4th waits 5 s, the 5th 10 s (no hammering of Bitfinex)."""
    wire = Wire(BOOK)
    now = 1.0
    for attempt in range(5):
        wire.live(BOOK, 10 + attempt, "[[100,1,1]]", now=now)
        wire.protocol.data_to_send()
        events = wire.data(10 + attempt, '"cs",12345', now=now + 0.1)
        assert any(isinstance(e, Interrupted) for e in events)
        wire.event(f'{{"event":"unsubscribed","status":"OK","chanId":{10 + attempt}}}',
                   now=now + 0.2)  # fmt: skip
        sent = [m["event"] for m in wire.sent()]
        if attempt < 3:
            assert "subscribe" in sent, attempt
        else:
            assert "subscribe" not in sent, attempt
            delay = 5.0 * 2 ** (attempt - 3)
            assert wire.protocol.check_timeouts(now + 0.2 + delay - 0.05) == []
            assert "subscribe" not in [m["event"] for m in wire.sent()]
            wire.protocol.check_timeouts(now + 0.2 + delay)
            assert [m["event"] for m in wire.sent()] == ["subscribe"], attempt
        now += 1.0 + (5.0 * 2 ** (attempt - 3) if attempt >= 3 else 0.0)
