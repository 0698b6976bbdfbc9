"""Bitfinex arrays -> records: one declarative label table per wire layout.

Every public Bitfinex payload is a positional array (bitfinex-ws-v2.md §5). Each layout
below is a tuple of labels, one per wire position, with ``None`` where Bitfinex documents a
placeholder. A record is built by zipping the labels with the values, in the manner of
bitfinex-api-py's ``bfxapi/types/serializers.py``:

* a placeholder position is skipped, and so is a ``None`` value (Bitfinex's placeholder
  nulls, e.g. in deriv status);
* extra trailing values are ignored, because Bitfinex appends fields without a version
  change (the funding ticker grew from 13 to 16 fields, §1.1, §11 #17); a short array gives
  the keys that are present;
* numbers stay exactly as parsed (int or float); nothing is converted or rounded.

The key names are the user-facing contract of SPEC.md §3 ("Records"). Derived fields are
``side`` for trades (taker side: ``buy``/``sell``) and for book entries (``bid``/``ask``,
inverted for funding books, §5.3).

This is the hot path: each function is one dict comprehension plus at most one derived key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BOOK_FUNDING",
    "BOOK_TRADING",
    "CANDLE",
    "DERIV_STATUS",
    "LIQUIDATION",
    "RAW_BOOK_FUNDING",
    "RAW_BOOK_TRADING",
    "TICKER_FUNDING",
    "TICKER_TRADING",
    "TRADE_FUNDING",
    "TRADE_TRADING",
    "Labels",
    "Record",
    "book_level",
    "candle",
    "deriv_status",
    "liquidation",
    "raw_order",
    "ticker",
    "trade",
]

Record = dict[str, Any]
"""One normalised message: label -> value, published as a msgpack map."""

Labels = tuple[str | None, ...]
"""Labels of one layout in wire order; ``None`` marks a placeholder position."""

# §5.1 ticker, trading: [BID, BID_SIZE, ASK, ASK_SIZE, DAILY_CHANGE, DAILY_CHANGE_RELATIVE,
# LAST_PRICE, VOLUME, HIGH, LOW].
TICKER_TRADING: Labels = (
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

# §5.1 ticker, funding: 16 fields, two placeholders before FRR_AMOUNT_AVAILABLE (older
# servers sent only the first 13).
TICKER_FUNDING: Labels = (
    "frr",
    "bid",
    "bid_period",
    "bid_size",
    "ask",
    "ask_period",
    "ask_size",
    "daily_change",
    "daily_change_relative",
    "last_price",
    "volume",
    "high",
    "low",
    None,
    None,
    "frr_amount_available",
)

# §5.2 trades: trading [ID, MTS, AMOUNT, PRICE]; funding [ID, MTS, AMOUNT, RATE, PERIOD].
TRADE_TRADING: Labels = ("id", "mts", "amount", "price")
TRADE_FUNDING: Labels = ("id", "mts", "amount", "rate", "period")

# §5.3 aggregated books P0-P4: trading [PRICE, COUNT, AMOUNT]; funding [RATE, PERIOD,
# COUNT, AMOUNT].
BOOK_TRADING: Labels = ("price", "count", "amount")
BOOK_FUNDING: Labels = ("rate", "period", "count", "amount")

# §5.4 raw books R0: trading [ORDER_ID, PRICE, AMOUNT]; funding [OFFER_ID, PERIOD, RATE,
# AMOUNT].
RAW_BOOK_TRADING: Labels = ("order_id", "price", "amount")
RAW_BOOK_FUNDING: Labels = ("offer_id", "period", "rate", "amount")

# §5.5 candles: MTS, OPEN, CLOSE, HIGH, LOW, VOLUME -- close before high/low, not OHLC.
CANDLE: Labels = ("mts", "open", "close", "high", "low", "volume")

# §5.6 status deriv:SYMBOL, 23 fields with placeholders at 1, 4, 6, 10, 12, 13, 15, 16,
# 18, 19 and 20.
DERIV_STATUS: Labels = (
    "time_ms",
    None,
    "deriv_price",
    "spot_price",
    None,
    "insurance_fund_balance",
    None,
    "next_funding_evt_timestamp_ms",
    "next_funding_accrued",
    "next_funding_step",
    None,
    "current_funding",
    None,
    None,
    "mark_price",
    None,
    None,
    "open_interest",
    None,
    None,
    None,
    "clamp_min",
    "clamp_max",
)

# §5.6 status liq:global, one entry: ["pos", POS_ID, TIME_MS, _, SYMBOL, AMOUNT, BASE_PRICE,
# _, IS_MATCH, IS_MARKET_SOLD, _, LIQUIDATION_PRICE]; the literal "pos" is dropped.
LIQUIDATION: Labels = (
    None,
    "pos_id",
    "time_ms",
    None,
    "symbol",
    "amount",
    "base_price",
    None,
    "is_match",
    "is_market_sold",
    None,
    "liquidation_price",
)


def _label(labels: Labels, values: Sequence[Any]) -> Record:
    """Zip ``labels`` with ``values``, dropping placeholders, nulls and extra values."""
    # strict=False on purpose: arrays grow (extra values ignored) or come short.
    return {k: v for k, v in zip(labels, values, strict=False) if k is not None and v is not None}


def _builder(labels: Labels) -> Callable[[Sequence[Any]], Record]:
    """The record builder of one layout, generated from its labels (the way ``dataclasses``
    generates ``__init__``): a dict display for a complete array without nulls (nearly
    every message), :func:`_label` for anything else. Same result as :func:`_label`, at a
    third of its cost on the hot path; tests compare the two on every layout."""
    items = ", ".join(f"{name!r}: v[{i}]" for i, name in enumerate(labels) if name is not None)
    source = (
        "def build(v):\n"
        f"    if len(v) == {len(labels)} and None not in v:\n"
        f"        return {{{items}}}\n"
        "    return _label(labels, v)\n"
    )
    namespace: dict[str, Any] = {"_label": _label, "labels": labels}
    exec(source, namespace)  # the source is built from the constant label tables above
    build: Callable[[Sequence[Any]], Record] = namespace["build"]
    return build


_ticker_trading, _ticker_funding = _builder(TICKER_TRADING), _builder(TICKER_FUNDING)
_trade_trading, _trade_funding = _builder(TRADE_TRADING), _builder(TRADE_FUNDING)
_book_trading, _book_funding = _builder(BOOK_TRADING), _builder(BOOK_FUNDING)
_raw_trading, _raw_funding = _builder(RAW_BOOK_TRADING), _builder(RAW_BOOK_FUNDING)
_candle, _deriv_status, _liquidation = (
    _builder(CANDLE),
    _builder(DERIV_STATUS),
    _builder(LIQUIDATION),
)


def ticker(values: Sequence[Any], funding: bool) -> Record:
    """Record of one ticker array (§5.1), trading or funding layout."""
    return _ticker_funding(values) if funding else _ticker_trading(values)


def trade(values: Sequence[Any], funding: bool) -> Record:
    """Record of one trade entry (§5.2).

    Trading trades get ``side``: ``buy`` when AMOUNT > 0 (the taker bought), else ``sell``.
    Funding trades have no side: the sign of AMOUNT (provided vs taken) stays in ``amount``.
    """
    if funding:
        return _trade_funding(values)
    record = _trade_trading(values)
    amount = record.get("amount")
    if amount is not None:
        record["side"] = "buy" if amount > 0 else "sell"
    return record


def book_level(values: Sequence[Any], funding: bool) -> Record:
    """Record of one aggregated book entry, P0-P4 (§5.3), with its ``side``.

    The side follows the sign of AMOUNT, also for COUNT=0 deletes where AMOUNT is the ±1
    side marker: trading AMOUNT > 0 is ``bid``; funding is inverted, AMOUNT < 0 is ``bid``
    (the borrower) and AMOUNT > 0 is ``ask`` (the offer).
    """
    record = _book_funding(values) if funding else _book_trading(values)
    _add_book_side(record, funding)
    return record


def raw_order(values: Sequence[Any], funding: bool) -> Record:
    """Record of one raw book entry, R0 (§5.4), with its ``side`` as for :func:`book_level`.

    A PRICE (funding: RATE) of 0 means the order was removed; the record keeps the 0 and the
    ±1 AMOUNT marker, and ``side`` still tells which side it left.
    """
    record = _raw_funding(values) if funding else _raw_trading(values)
    _add_book_side(record, funding)
    return record


def _add_book_side(record: Record, funding: bool) -> None:
    """Set ``side`` from ``amount`` (§5.3 side rule); an amount of 0 counts as ``ask``."""
    amount = record.get("amount")
    if amount is not None:
        is_bid = amount < 0 if funding else amount > 0
        record["side"] = "bid" if is_bid else "ask"


def candle(values: Sequence[Any]) -> Record:
    """Record of one candle (§5.5); trading and funding candles share the layout."""
    return _candle(values)


def deriv_status(values: Sequence[Any]) -> Record:
    """Record of one ``deriv:SYMBOL`` status array (§5.6), placeholders and nulls dropped."""
    return _deriv_status(values)


def liquidation(values: Sequence[Any]) -> Record:
    """Record of one ``liq:global`` entry (§5.6); ``time_ms`` may be fractional."""
    return _liquidation(values)
