"""Tests of bridge.records: Bitfinex arrays -> records with the SPEC §3 keys.

Frames are the literal texts of bitfinex-ws-v2.md (captured traffic, fixtures and DOC
examples), parsed with orjson as in production, so number types are what the bridge sees.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge import records
from bridge.records import (
    BOOK_FUNDING,
    BOOK_TRADING,
    CANDLE,
    DERIV_STATUS,
    LIQUIDATION,
    RAW_BOOK_FUNDING,
    RAW_BOOK_TRADING,
    TICKER_FUNDING,
    TICKER_TRADING,
    TRADE_FUNDING,
    TRADE_TRADING,
    book_level,
    candle,
    deriv_status,
    liquidation,
    raw_order,
    ticker,
    trade,
)


def payload(frame: str) -> Any:
    """The payload of a channel frame: element 1, or element 2 for typed (`te`, …) frames."""
    message = orjson.loads(frame)
    return message[2] if isinstance(message[1], str) else message[1]


# -- label tables ---------------------------------------------------------------------------


def test_label_tables_match_the_spec() -> None:
    """Every table lists SPEC §3's keys in wire order, placeholders as None."""
    assert TICKER_TRADING == (
        "bid", "bid_size", "ask", "ask_size", "daily_change", "daily_change_relative",
        "last_price", "volume", "high", "low",
    )  # fmt: skip
    assert TICKER_FUNDING == (
        "frr", "bid", "bid_period", "bid_size", "ask", "ask_period", "ask_size", "daily_change",
        "daily_change_relative", "last_price", "volume", "high", "low", None, None,
        "frr_amount_available",
    )  # fmt: skip
    assert TRADE_TRADING == ("id", "mts", "amount", "price")
    assert TRADE_FUNDING == ("id", "mts", "amount", "rate", "period")
    assert BOOK_TRADING == ("price", "count", "amount")
    assert BOOK_FUNDING == ("rate", "period", "count", "amount")
    assert RAW_BOOK_TRADING == ("order_id", "price", "amount")
    assert RAW_BOOK_FUNDING == ("offer_id", "period", "rate", "amount")
    assert CANDLE == ("mts", "open", "close", "high", "low", "volume")
    assert len(DERIV_STATUS) == 23
    assert [i for i, k in enumerate(DERIV_STATUS) if k is None] == [
        1, 4, 6, 10, 12, 13, 15, 16, 18, 19, 20,
    ]  # fmt: skip
    assert len(LIQUIDATION) == 12
    assert [i for i, k in enumerate(LIQUIDATION) if k is None] == [0, 3, 7, 10]


# -- ticker ---------------------------------------------------------------------------------


def test_trading_ticker_real_capture() -> None:
    """The captured tBFTUSD ticker maps to the ten trading keys, values untouched."""
    values = payload(
        "[232949,[0.068965,60157.36709703,0.0774,48578.50804052,0.001969,0.0262,0.076989,"
        "101459.39453471,0.0828,0.068961],1]"
    )
    assert ticker(values, funding=False) == {
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


def test_funding_ticker_16_fields_skips_placeholders() -> None:
    """A 16-field funding ticker drops positions 13-14 and keeps frr_amount_available."""
    # The NODE fixture below, grown to today's 16 fields (high/low and the tail are made up).
    values = payload(
        "[22,[0.00078458,0.00075,30,3045.59478528,0.0007825,2,2335880.06705868,-0.0000674,"
        "-0.0793,0.0007825,19326761.40360705,0.00079,0.00074,null,null,1024.5]]"
    )
    assert ticker(values, funding=True) == {
        "frr": 0.00078458,
        "bid": 0.00075,
        "bid_period": 30,
        "bid_size": 3045.59478528,
        "ask": 0.0007825,
        "ask_period": 2,
        "ask_size": 2335880.06705868,
        "daily_change": -0.0000674,
        "daily_change_relative": -0.0793,
        "last_price": 0.0007825,
        "volume": 19326761.40360705,
        "high": 0.00079,
        "low": 0.00074,
        "frr_amount_available": 1024.5,
    }


def test_funding_ticker_old_13_fields() -> None:
    """The old 13-field funding ticker (NODE fixture) gives the 13 keys it has, no more."""
    values = payload(
        "[22,[0.00078458,0.00075,30,3045.59478528,0.0007825,2,2335880.06705868,-0.0000674,"
        "-0.0793,0.0007825,19326761.40360705,0,0]]"
    )
    record = ticker(values, funding=True)
    assert list(record) == [k for k in TICKER_FUNDING[:13] if k is not None]
    assert (record["bid_period"], record["high"], record["low"]) == (30, 0, 0)
    assert "frr_amount_available" not in record


def test_extra_trailing_values_are_ignored() -> None:
    """Values beyond a layout's end (a grown array) are ignored, never an error."""
    # The bitfinex-api-go ticker test values, plus three values a future server might add.
    grown: list[Any] = orjson.loads(
        "[14957,68.17328796,14958,55.29588132,-659,-0.0422,14971,53723.08813995,16494,14454,"
        '1.5,"new",null]'
    )
    record = ticker(grown, funding=False)
    assert record == dict(zip(TICKER_TRADING, grown[:10], strict=True))
    assert candle([1574698260000, 1, 2, 3, 4, 5, 6, 7]) == dict(
        mts=1574698260000, open=1, close=2, high=3, low=4, volume=5
    )


# -- trades ---------------------------------------------------------------------------------


def test_trades_snapshot_real_capture() -> None:
    """The captured trades snapshot (newest first) gives buy trades with their ids."""
    entries = payload(
        "[232959,[[669899159,1618665870435,166.391496,0.076989],"
        "[669899158,1618665870435,6961.461304,0.076985]],8]"
    )
    assert [trade(e, funding=False) for e in entries] == [
        {"id": 669899159, "mts": 1618665870435, "amount": 166.391496, "price": 0.076989,
         "side": "buy"},
        {"id": 669899158, "mts": 1618665870435, "amount": 6961.461304, "price": 0.076985,
         "side": "buy"},
    ]  # fmt: skip


def test_trade_sell_side_and_te_frame() -> None:
    """A negative amount is a sell; a `te` frame's entry has the same layout."""
    # DOC-shaped values (the DOC tBTCUSD trade example, id and sign changed).
    values = payload('[17470,"te",[401597395,1574694478808,-0.005,7245.3]]')
    assert trade(values, funding=False) == {
        "id": 401597395,
        "mts": 1574694478808,
        "amount": -0.005,
        "price": 7245.3,
        "side": "sell",
    }


def test_funding_trade_has_rate_period_and_no_side() -> None:
    """A funding trade gives id, mts, amount, rate, period and no side."""
    # DOC-shaped values for the fUSD trades channel (chanId 339521 of §3.1).
    values = payload('[339521,"fte",[133323543,1574694605000,-59.84,0.00023647,2]]')
    assert trade(values, funding=True) == {
        "id": 133323543,
        "mts": 1574694605000,
        "amount": -59.84,
        "rate": 0.00023647,
        "period": 2,
    }


def test_short_trade_gives_present_keys_and_no_side() -> None:
    """A short array gives only the keys present; without an amount there is no side."""
    assert trade([669899159, 1618665870435], funding=False) == {
        "id": 669899159,
        "mts": 1618665870435,
    }
    assert trade([669899159, 1618665870435, None, 0.07], funding=False) == {
        "id": 669899159,
        "mts": 1618665870435,
        "price": 0.07,
    }


# -- books ----------------------------------------------------------------------------------


def test_book_update_real_capture() -> None:
    """`[225206,[279380,1,0.0089],19]` is a bid level; ints stay ints, floats floats."""
    record = book_level(payload("[225206,[279380,1,0.0089],19]"), funding=False)
    assert record == {"price": 279380, "count": 1, "amount": 0.0089, "side": "bid"}
    assert type(record["price"]) is int and type(record["amount"]) is float


def test_book_delete_markers_trading() -> None:
    """Trading deletes: marker -1 is an ask, 1 a bid (captured frames, incl. `2e-8`)."""
    assert book_level(payload("[225206,[283460,0,-1],23]"), funding=False) == {
        "price": 283460,
        "count": 0,
        "amount": -1,
        "side": "ask",
    }
    assert book_level(payload("[204928,[2e-8,0,1],50]"), funding=False) == {
        "price": 2e-8,
        "count": 0,
        "amount": 1,
        "side": "bid",
    }


def test_funding_book_level_real() -> None:
    """Real fBTC entry `[0.000081,15,1,-10]`: rate, period, count, amount; negative = bid."""
    assert book_level([0.000081, 15, 1, -10], funding=True) == {
        "rate": 0.000081,
        "period": 15,
        "count": 1,
        "amount": -10,
        "side": "bid",
    }
    assert book_level([0.0005, 30, 2, 8.5], funding=True)["side"] == "ask"


def test_book_delete_markers_funding_are_inverted() -> None:
    """Funding deletes: marker 1 is an ask (offer), -1 a bid."""
    assert book_level([0.000081, 15, 0, 1], funding=True)["side"] == "ask"
    assert book_level([0.000081, 15, 0, -1], funding=True)["side"] == "bid"


def test_book_level_without_amount_has_no_side() -> None:
    """A short book entry gives its keys and no side."""
    assert book_level([279380, 1], funding=False) == {"price": 279380, "count": 1}


def test_raw_order_ids_beyond_32_bits() -> None:
    """R0 `[55895794256,31107,0.07799627]` keeps its 64-bit int id."""
    record = raw_order(payload("[648087,[55895794256,31107,0.07799627],4,1609794565952]"), False)
    assert record == {
        "order_id": 55895794256,
        "price": 31107,
        "amount": 0.07799627,
        "side": "bid",
    }
    assert type(record["order_id"]) is int and record["order_id"] > 2**32


def test_raw_order_delete_and_sides() -> None:
    """An R0 removal keeps price 0 and gets its side from the ±1 marker."""
    assert raw_order([34753002978, 0, -1], funding=False) == {
        "order_id": 34753002978,
        "price": 0,
        "amount": -1,
        "side": "ask",
    }
    assert raw_order([34753002978, 0, 1], funding=False)["side"] == "bid"


def test_raw_funding_offer() -> None:
    """Funding R0 [OFFER_ID, PERIOD, RATE, AMOUNT]; sides inverted, delete markers too."""
    assert raw_order([55888179267, 30, 0.0002, -100.5], funding=True) == {
        "offer_id": 55888179267,
        "period": 30,
        "rate": 0.0002,
        "amount": -100.5,
        "side": "bid",
    }
    assert raw_order([55888179267, 30, 0, 1], funding=True)["side"] == "ask"


# -- candles and status ---------------------------------------------------------------------


def test_candle_doc_example_close_before_high() -> None:
    """The DOC candle maps MTS, OPEN, CLOSE, HIGH, LOW, VOLUME in wire order (not OHLC)."""
    entries = payload("[343351,[[1574698260000,7379.785503,7383.8,7388.3,7379.785503,1.68829482]]]")
    assert candle(entries[0]) == {
        "mts": 1574698260000,
        "open": 7379.785503,
        "close": 7383.8,
        "high": 7388.3,
        "low": 7379.785503,
        "volume": 1.68829482,
    }


def test_deriv_status_doc_example_drops_placeholders_and_nulls() -> None:
    """The DOC deriv status gives the twelve named fields; placeholder nulls are dropped."""
    values = payload(
        "[335856,[1596124822000,null,0.896,0.771995,null,1396531.67460709,null,1596153600000,"
        "0.0001056,6,null,-0.01381344,null,null,0.7664,null,null,246502.09001551,null,null,"
        "null,null,0.3]]"
    )
    assert deriv_status(values) == {
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
    }  # clamp_min is null in the example, so absent


def test_liquidation_doc_example_fractional_ms() -> None:
    """The DOC liq entry drops "pos" and placeholders; time_ms stays fractional."""
    entries = payload(
        '[91684,[["pos",142397657,1574697680828.2002,null,"tBSVUSD",-2.62932,91.583875238719,'
        "null,1,1,null,112.27]]]"
    )
    assert liquidation(entries[0]) == {
        "pos_id": 142397657,
        "time_ms": 1574697680828.2002,
        "symbol": "tBSVUSD",
        "amount": -2.62932,
        "base_price": 91.583875238719,
        "is_match": 1,
        "is_market_sold": 1,
        "liquidation_price": 112.27,
    }


def test_pure_module_imports_no_io() -> None:
    """bridge.records imports neither websocket, redis, socket, threading nor time."""
    tree = ast.parse(Path(records.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    roots = {name.split(".")[0] for name in names}
    assert not roots & {"websocket", "redis", "socket", "threading", "time"}


LAYOUTS = ["TICKER_TRADING", "TICKER_FUNDING", "TRADE_TRADING", "TRADE_FUNDING", "BOOK_TRADING",
           "BOOK_FUNDING", "RAW_BOOK_TRADING", "RAW_BOOK_FUNDING", "CANDLE", "DERIV_STATUS",
           "LIQUIDATION"]  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_generated_builder_equals_the_label_zip(layout: str) -> None:
    """Each layout's generated builder gives what zipping its labels gives, key order
    included, for complete arrays, arrays with nulls, short ones and longer ones."""
    labels = getattr(records, layout)
    build = records._builder(labels)
    rng = random.Random(layout)
    n = len(labels)
    for _ in range(300):
        size = rng.choice([n, n, n, n - 1, n + 2, 0, 1])
        values: list[Any] = [rng.choice([rng.randint(-9, 10**12), rng.random() * 1e5, "t",
                                         None if rng.random() < 0.15 else 1.5])
                             for _ in range(max(size, 0))]  # fmt: skip
        expected = records._label(labels, values)
        got = build(values)
        assert got == expected and list(got) == list(expected), (layout, values)
