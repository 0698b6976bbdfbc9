"""Subscribe requests: validation, the canonical channel identity, and the replies' fields.

A valid request becomes a :class:`ChannelInfo`, which is both what a connection reports
for each of its chanIds and the key under which the market shares one feed between every
subscriber of the same channel (bitfinex-ws-v2.md §3.1). An invalid one becomes a
:class:`SubscribeError` carrying the code of §3.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CANDLE_TIMEFRAMES",
    "ChannelInfo",
    "SubscribeError",
    "candle_parts",
    "error_fields",
    "is_funding",
    "parse_subscribe",
    "stream_name",
    "subscribed_fields",
    "valid_symbol",
]

_TRADING = re.compile(r"t[A-Z0-9]{3,}(:[A-Z0-9]{2,})?")
_FUNDING = re.compile(r"f[A-Z0-9]{2,}")

# §5.5; 1W is unconfirmed but accepted (§13).
CANDLE_TIMEFRAMES = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "3h": 10800,
    "6h": 21600,
    "12h": 43200,
    "1D": 86400,
    "1W": 7 * 86400,
    "7D": 7 * 86400,
    "14D": 14 * 86400,
    "1M": 30 * 86400,  # a synthetic month: 30 days
}
_FUNDING_CANDLE_SUFFIX = re.compile(r"(:a\d+:p\d+:p\d+|:p\d+)")

_PRECISIONS = ("P0", "P1", "P2", "P3", "P4", "R0")
_FREQUENCIES = ("F0", "F1")
_LENGTHS = {"P": (1, 25, 100, 250), "R": (1, 25, 100)}  # §5.3, §5.4
_CHANNELS = ("ticker", "trades", "book", "candles", "status")


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What one chanId was subscribed to, with the field names of the ``subscribed`` event.

    ``len`` is the book length as the wire writes it (a string such as ``"25"``); fields a
    channel does not have are ``None``. Equal infos share one market feed.
    """

    channel: str
    symbol: str | None = None
    key: str | None = None
    prec: str | None = None
    freq: str | None = None
    len: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribeError:
    """A refused subscribe request: error ``code`` and ``msg`` (§3.3)."""

    code: int
    msg: str


def valid_symbol(symbol: object) -> bool:
    """True for well-formed trading (``tBTCUSD``, ``tAAVE:USD``) or funding (``fUSD``) symbols."""
    if not isinstance(symbol, str):
        return False
    return bool(_TRADING.fullmatch(symbol) or _FUNDING.fullmatch(symbol))


def is_funding(symbol: str) -> bool:
    """True for funding symbols (``f…``)."""
    return symbol.startswith("f")


def candle_parts(key: str) -> tuple[str, str] | None:
    """Split a candles key into (timeframe, symbol), or None when it is malformed.

    >>> candle_parts("trade:1m:tBTCF0:USTF0"), candle_parts("trade:1m:fUSD:a30:p2:p30")
    (('1m', 'tBTCF0:USTF0'), ('1m', 'fUSD'))
    """
    prefix, _, rest = key.partition(":")
    timeframe, _, symbol = rest.partition(":")
    if prefix != "trade" or timeframe not in CANDLE_TIMEFRAMES:
        return None
    if symbol.startswith("f"):
        head, colon, suffix = symbol.partition(":")
        if not colon or not _FUNDING_CANDLE_SUFFIX.fullmatch(colon + suffix):
            return None
        symbol = head
    return (timeframe, symbol) if valid_symbol(symbol) else None


def _status_symbol(key: str) -> str | None:
    """The symbol a status key is about: ``""`` for ``liq:global``, None when malformed."""
    if key == "liq:global":
        return ""
    kind, _, symbol = key.partition(":")
    return symbol if kind == "deriv" and _TRADING.fullmatch(symbol) else None


def _request_symbol(request: dict[str, Any]) -> object:
    """``symbol``, or the legacy ``pair`` (with or without its ``t`` prefix)."""
    if "symbol" in request:
        return request["symbol"]
    pair = request.get("pair")
    if isinstance(pair, str) and not valid_symbol(pair):
        return "t" + pair
    return pair


def _book_length(raw: object, prec: str) -> str | None:
    """Normalise ``len`` (number or string) to its wire string, None when not allowed."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    text = str(raw)
    if not text.isdigit() or int(text) not in _LENGTHS[prec[0]]:
        return None
    return str(int(text))


def parse_subscribe(
    request: dict[str, Any], unknown_symbols: frozenset[str]
) -> ChannelInfo | SubscribeError:
    """Validate a ``subscribe`` request; return its channel or the error to send back."""
    channel = request.get("channel")
    if channel not in _CHANNELS:
        return SubscribeError(10302, "channel: unknown")
    assert isinstance(channel, str)
    if channel in ("candles", "status"):
        return _parse_keyed(channel, request.get("key"), unknown_symbols)
    symbol = _request_symbol(request)
    if not valid_symbol(symbol) or symbol in unknown_symbols:
        return SubscribeError(10300, "symbol: invalid")
    assert isinstance(symbol, str)
    if channel != "book":
        return ChannelInfo(channel, symbol)
    prec = request.get("prec", "P0")
    if prec not in _PRECISIONS:
        return SubscribeError(10011, "prec: invalid")
    freq = request.get("freq", "F0")
    if freq not in _FREQUENCIES:
        return SubscribeError(10300, "freq: invalid")
    length = _book_length(request.get("len", "25"), prec)
    if length is None:
        return SubscribeError(10012, "len: invalid")
    return ChannelInfo("book", symbol, prec=prec, freq=freq, len=length)


def _parse_keyed(
    channel: str, key: object, unknown_symbols: frozenset[str]
) -> ChannelInfo | SubscribeError:
    """Validate the ``key`` of a candles or status request."""
    if not isinstance(key, str):
        return SubscribeError(10300, "key: invalid")
    if channel == "candles":
        parts = candle_parts(key)
        symbol = None if parts is None else parts[1]
    else:
        symbol = _status_symbol(key)
    if symbol is None:
        return SubscribeError(10300, "key: invalid")
    if symbol in unknown_symbols:
        return SubscribeError(10300, "symbol: invalid")
    return ChannelInfo(channel, key=key)


def subscribed_fields(info: ChannelInfo, chan_id: int, sub_id: object) -> dict[str, Any]:
    """The ``subscribed`` event in wire field order (§3.1); ``sub_id`` None means absent."""
    event: dict[str, Any] = {"event": "subscribed", "channel": info.channel, "chanId": chan_id}
    if info.key is not None:
        event["key"] = info.key
    else:
        assert info.symbol is not None
        event["symbol"] = info.symbol
        if info.prec is not None:
            event.update(prec=info.prec, freq=info.freq, len=info.len)
    if sub_id is not None:
        event["subId"] = sub_id
    if info.symbol is not None:
        event.update(_pair_or_currency(info.symbol))
    return event


def error_fields(request: dict[str, Any], error: SubscribeError) -> dict[str, Any]:
    """An ``error`` event echoing the request's fields (§3.3), with ``pair``/``currency``."""
    event = {k: v for k, v in request.items() if k != "event"}
    event.update(event="error", msg=error.msg, code=error.code)
    symbol = _request_symbol(request)
    if isinstance(symbol, str) and valid_symbol(symbol):
        for name, value in _pair_or_currency(symbol).items():
            event.setdefault(name, value)
    return event


def stream_name(info: ChannelInfo) -> str:
    """The bridge's stream name for this channel (SPEC §3), without the Redis prefix.

    >>> stream_name(ChannelInfo("book", "tBTCUSD", prec="P0", freq="F0", len="25"))
    'book:tBTCUSD:P0'
    >>> stream_name(ChannelInfo("candles", key="trade:1m:fUSD:a30:p2:p30"))
    'candles:fUSD:1m:a30:p2:p30'
    >>> stream_name(ChannelInfo("status", key="liq:global"))
    'status:liq:global'
    """
    if info.channel == "book":
        return f"book:{info.symbol}:{info.prec}"
    if info.channel == "status":
        return f"status:{info.key}"
    if info.channel == "candles":
        assert info.key is not None
        parts = candle_parts(info.key)
        assert parts is not None
        timeframe, symbol = parts
        extra = info.key.split(":", 2)[2][len(symbol) :]  # funding aggregates, ":a30:p2:p30"
        return f"candles:{symbol}:{timeframe}{extra}"
    return f"{info.channel}:{info.symbol}"


def _pair_or_currency(symbol: str) -> dict[str, str]:
    """``{"pair": "BTCUSD"}`` for ``tBTCUSD``, ``{"currency": "USD"}`` for ``fUSD`` (§9)."""
    return {"currency": symbol[1:]} if is_funding(symbol) else {"pair": symbol[1:]}
