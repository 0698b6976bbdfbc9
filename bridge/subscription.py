"""What one Bitfinex channel subscription is, and the Redis stream it writes.

A :class:`Subscription` is parsed from the config's channel syntax (SPEC §2): plain names use
Bitfinex's defaults, options are colon-separated (``book:P2:F1:100``, ``candles:5m``,
``candles:1m:a30:p2:p30``). It knows its subscribe request, the fields that identify its
``subscribed`` acknowledgement, and its stream name (SPEC §3 "Stream keys").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BOOK_LENGTHS",
    "BOOK_PRECISIONS",
    "CANDLE_TIMEFRAMES",
    "CHANNELS",
    "Subscription",
    "SubscriptionSyntaxError",
    "is_valid_symbol",
    "parse_channel",
    "parse_status",
]

CHANNELS = ("ticker", "trades", "book", "candles")
BOOK_PRECISIONS = ("P0", "P1", "P2", "P3", "P4", "R0")
BOOK_FREQUENCIES = ("F0", "F1")
BOOK_LENGTHS = {"P": (1, 25, 100, 250), "R": (1, 25, 100)}
# bitfinex-ws-v2.md §5.5; 1W is accepted beside 7D (§13).
CANDLE_TIMEFRAMES = (
    "1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1D", "7D", "1W", "14D", "1M",
)  # fmt: skip
FUNDING_CANDLE_DEFAULT = "a30:p2:p30"

_TRADING = re.compile(r"t(?:[A-Z0-9]{6}|[A-Z0-9]{2,}:[A-Z0-9]{2,})")
_FUNDING = re.compile(r"f[A-Z0-9]{2,}")
_AGGREGATE = re.compile(r"(?:a\d+:)?p\d+:p\d+|p\d+")


class SubscriptionSyntaxError(ValueError):
    """A channel, symbol or status key that cannot be subscribed; the message says why."""


def is_valid_symbol(symbol: str) -> bool:
    """True for ``tBTCUSD``, ``tTESTBTC:TESTUSD``, ``tBTCF0:USTF0``, ``fUSD`` (§9)."""
    return bool(_TRADING.fullmatch(symbol) or _FUNDING.fullmatch(symbol))


@dataclass(frozen=True, slots=True)
class Subscription:
    """One public channel of one symbol (or status key).

    Attributes:
        channel: ``ticker``, ``trades``, ``book``, ``candles`` or ``status``.
        symbol: the Bitfinex symbol (``tBTCUSD``, ``fUSD``); empty for ``status``.
        prec: book precision ``P0``–``P4`` or ``R0``.
        freq: book frequency ``F0`` or ``F1``.
        length: book levels (orders for R0) per side.
        key: the ``key`` of candles (``trade:1m:tBTCUSD``) and status (``liq:global``).
    """

    channel: str
    symbol: str = ""
    prec: str = ""
    freq: str = ""
    length: int = 0
    key: str = ""
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every update looks its stream up by subscription: hash the six fields once.
        fields = (self.channel, self.symbol, self.prec, self.freq, self.length, self.key)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    @property
    def funding(self) -> bool:
        """True for funding symbols (``f…``), whose layouts differ (§5)."""
        return self.symbol.startswith("f")

    @property
    def raw(self) -> bool:
        """True for raw books (R0)."""
        return self.prec == "R0"

    @property
    def name(self) -> str:
        """The stream name without prefix, e.g. ``book:tBTCUSD:P0`` (SPEC §3)."""
        if self.channel == "book":
            return f"book:{self.symbol}:{self.prec}"
        if self.channel == "candles":
            # key is trade:TF:SYMBOL[:aggregates]
            _, timeframe, rest = self.key.split(":", 2)
            extra = rest[len(self.symbol) :]
            return f"candles:{self.symbol}:{timeframe}{extra}"
        if self.channel == "status":
            return f"status:{self.key}"
        return f"{self.channel}:{self.symbol}"

    def request(self) -> dict[str, Any]:
        """The ``subscribe`` event for this channel; ``subId`` is the stream name."""
        req: dict[str, Any] = {"event": "subscribe", "channel": self.channel}
        if self.channel in ("candles", "status"):
            req["key"] = self.key
        else:
            req["symbol"] = self.symbol
        if self.channel == "book":
            req.update(prec=self.prec, freq=self.freq, len=str(self.length))
        req["subId"] = self.name
        return req

    def identity(self) -> tuple[str, str, str, str]:
        """The fields a ``subscribed`` or ``error`` event echoes, to match it without subId."""
        if self.channel in ("candles", "status"):
            return (self.channel, self.key, "", "")
        return (self.channel, self.symbol, self.prec, str(self.length) if self.length else "")

    def __str__(self) -> str:
        return self.name


def identity_of(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """The :meth:`Subscription.identity` of a ``subscribed``/``error`` event's echo."""
    channel = str(event.get("channel", ""))
    if channel in ("candles", "status"):
        return (channel, str(event.get("key", "")), "", "")
    symbol = str(event.get("symbol") or "")
    if not symbol and event.get("pair"):
        symbol = "t" + str(event["pair"])
    length = event.get("len")
    prec = str(event.get("prec", "")) if channel == "book" else ""
    return (channel, symbol, prec, str(length) if channel == "book" and length else "")


def parse_channel(spec: str, symbol: str) -> Subscription:
    """Parse one config channel (``book:P2:F1:100``) for one symbol.

    Raises:
        SubscriptionSyntaxError: the message names what is wrong and the accepted forms.
    """
    if not is_valid_symbol(symbol):
        raise SubscriptionSyntaxError(
            f"symbol {symbol!r} is not a Bitfinex symbol: use tBASEQUOTE (tBTCUSD), "
            "tBASE:QUOTE for longer codes (tTESTBTC:TESTUSD) or fCCY for funding (fUSD), "
            "upper case"
        )
    name, _, options = spec.partition(":")
    if name in ("ticker", "trades"):
        if options:
            raise SubscriptionSyntaxError(f"channel {spec!r}: {name} takes no options")
        return Subscription(name, symbol)
    if name == "book":
        return _parse_book(spec, options, symbol)
    if name == "candles":
        return _parse_candles(spec, options, symbol)
    raise SubscriptionSyntaxError(
        f"unknown channel {spec!r}: use one of ticker, trades, book[:PREC[:FREQ[:LEN]]], "
        "candles[:TIMEFRAME[:aggregates]] (status keys go in the group's `status` list)"
    )


def _parse_book(spec: str, options: str, symbol: str) -> Subscription:
    parts = options.split(":") if options else []
    prec = parts[0] if parts else "P0"
    freq = parts[1] if len(parts) > 1 else "F0"
    length = parts[2] if len(parts) > 2 else "25"
    if prec not in BOOK_PRECISIONS:
        raise SubscriptionSyntaxError(f"channel {spec!r}: precision must be one of P0-P4 or R0")
    if freq not in BOOK_FREQUENCIES:
        raise SubscriptionSyntaxError(f"channel {spec!r}: frequency must be F0 or F1")
    lengths = BOOK_LENGTHS[prec[0]]
    if not length.isdigit() or int(length) not in lengths or len(parts) > 3:
        allowed = ", ".join(map(str, lengths))
        raise SubscriptionSyntaxError(
            f"channel {spec!r}: write book:PREC:FREQ:LEN with LEN one of {allowed}"
        )
    return Subscription("book", symbol, prec=prec, freq=freq, length=int(length))


def _parse_candles(spec: str, options: str, symbol: str) -> Subscription:
    timeframe, _, aggregate = options.partition(":") if options else ("1m", "", "")
    if timeframe not in CANDLE_TIMEFRAMES:
        raise SubscriptionSyntaxError(
            f"channel {spec!r}: timeframe must be one of {', '.join(CANDLE_TIMEFRAMES)}"
        )
    funding = symbol.startswith("f")
    if aggregate and not funding:
        raise SubscriptionSyntaxError(
            f"channel {spec!r}: aggregates (a30:p2:p30) apply to funding symbols only"
        )
    if funding:
        aggregate = aggregate or FUNDING_CANDLE_DEFAULT
        if not _AGGREGATE.fullmatch(aggregate):
            raise SubscriptionSyntaxError(
                f"channel {spec!r}: funding candles take aNN:pNN:pNN or pNN, e.g. "
                "candles:1m:a30:p2:p30"
            )
        return Subscription("candles", symbol, key=f"trade:{timeframe}:{symbol}:{aggregate}")
    return Subscription("candles", symbol, key=f"trade:{timeframe}:{symbol}")


def parse_status(key: str) -> Subscription:
    """Parse a status key: ``deriv:tBTCF0:USTF0`` or ``liq:global`` (§5.6)."""
    kind, _, rest = key.partition(":")
    if kind == "liq" and rest == "global":
        return Subscription("status", key=key)
    if kind == "deriv" and _TRADING.fullmatch(rest):
        return Subscription("status", rest, key=key)
    raise SubscriptionSyntaxError(
        f"status key {key!r} is not one Bitfinex serves: use deriv:SYMBOL "
        "(deriv:tBTCF0:USTF0) or liq:global"
    )
