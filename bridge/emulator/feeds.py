"""Feeds: the synthetic data of one channel, as message bodies ready for every subscriber.

A feed owns the state behind one :class:`~bridge.emulator.channels.ChannelInfo` and is
shared by all its subscribers. It writes message *bodies* (the text after the chanId,
see :mod:`bridge.emulator.wire`): :meth:`Feed.snapshot` for a new subscriber and
:meth:`Feed.tick` for everyone once per market tick. Layouts follow bitfinex-ws-v2.md §5.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from bridge.emulator.books import Book
from bridge.emulator.channels import CANDLE_TIMEFRAMES, candle_parts, is_funding
from bridge.emulator.prices import Instrument, amount_scale, round_sig
from bridge.emulator.wire import Wire, encode

__all__ = [
    "LIQ_SYMBOLS",
    "Batch",
    "BookFeed",
    "CandlesFeed",
    "DerivStatusFeed",
    "Feed",
    "LiquidationFeed",
    "TickerFeed",
    "TradesFeed",
]

_SNAPSHOT_TRADES = 30  # §5.2 (CAP): the 30 newest trades
_SNAPSHOT_CANDLES = 30
LIQ_SYMBOLS = ("tBTCF0:USTF0", "tETHF0:USTF0", "tSOLF0:USTF0", "tXRPF0:USTF0")


@dataclass(frozen=True, slots=True)
class Batch:
    """What one feed produced in one tick.

    Attributes:
        bodies: message bodies in send order; for books, one wire entry each.
        book: the bodies are book updates: a connection with BULK_UPDATES may send them as
            one ``[chanId,[[…],[…]]]`` message, and with OB_CHECKSUM follows them with a
            ``cs`` message carrying :attr:`checksum`.
        checksum: the book's checksum after these updates (books only).
    """

    bodies: tuple[str, ...]
    book: bool = False
    checksum: int | None = None


class Feed(ABC):
    """The state of one channel, shared by its subscribers."""

    @abstractmethod
    def snapshot(self, now_ms: int) -> str:
        """The body of the snapshot message a new subscriber gets right after ``subscribed``."""

    @abstractmethod
    def tick(self, now_ms: int, updates: int) -> Batch | None:
        """Advance one market tick; ``updates`` is the number of changes wanted (books, trades)."""


def _size(rng: random.Random, level: float) -> float:
    return round(amount_scale(level) * rng.lognormvariate(0, 1), 8)


class BookFeed(Feed):
    """A P0–P4 or R0 book. F1 books change only every ``every`` ticks (about 2 s, §5.3)."""

    def __init__(self, book: Book, every: int) -> None:
        self.book = book
        self._every = every
        self._ticks = 0

    def snapshot(self, now_ms: int) -> str:
        return encode(self.book.snapshot())

    def tick(self, now_ms: int, updates: int) -> Batch | None:
        self._ticks += 1
        if self._ticks % self._every:
            return None
        entries = self.book.step(updates)
        if not entries:
            return None
        return Batch(tuple(encode(e) for e in entries), book=True, checksum=self.book.checksum())


class TickerFeed(Feed):
    """Ticker: 10 fields for trading pairs, 16 (nulls at 13 and 14) for funding (§5.1)."""

    def __init__(self, instrument: Instrument, rng: random.Random) -> None:
        self._ins = instrument
        self._rng = rng
        self._funding = is_funding(instrument.symbol)
        self._open = instrument.price()
        self._high = self._low = self._open
        self._volume = round(_size(rng, instrument.base) * 1000, 8)

    def _fields(self) -> list[Wire]:
        last = self._ins.price()
        self._high, self._low = max(self._high, last), min(self._low, last)
        change = round_sig(last - self._open, 5) if last != self._open else 0
        relative = round(change / self._open, 4)
        bid, ask = round_sig(last * 0.9999, 5), round_sig(last * 1.0001, 5)
        bid_size, ask_size = _size(self._rng, last), _size(self._rng, last)
        tail: list[Wire] = [change, relative, last, self._volume, self._high, self._low]
        if not self._funding:
            return [bid, bid_size, ask, ask_size, *tail]
        frr = round_sig(self._ins.base, 5)
        head: list[Wire] = [frr, bid, 30, bid_size, ask, 2, ask_size]
        return [*head, *tail, None, None, round(bid_size * 10, 8)]

    def snapshot(self, now_ms: int) -> str:
        return encode(self._fields())

    def tick(self, now_ms: int, updates: int) -> Batch | None:
        self._volume = round(self._volume + _size(self._rng, self._ins.base), 8)
        return Batch((encode(self._fields()),))


class TradesFeed(Feed):
    """Trades with unique increasing ids: each ``te`` is followed by its ``tu`` one tick later.

    Trading entries are ``[ID, MTS, AMOUNT, PRICE]``; funding ones ``[ID, MTS, AMOUNT, RATE,
    PERIOD]`` sent as ``fte``/``ftu`` (§5.2).
    """

    def __init__(self, instrument: Instrument, rng: random.Random, now_ms: int) -> None:
        self._ins = instrument
        self._rng = rng
        self._funding = is_funding(instrument.symbol)
        self._ids: Iterator[int] = iter(range(rng.randrange(10**8, 10**9), 1 << 53))
        self._recent: deque[list[Wire]] = deque(maxlen=_SNAPSHOT_TRADES)
        self._pending: list[list[Wire]] = []
        for back in range(_SNAPSHOT_TRADES, 0, -1):
            self._recent.appendleft(self._trade(now_ms - back * 1000))

    def _trade(self, mts: int) -> list[Wire]:
        amount = _size(self._rng, self._ins.base) * self._rng.choice((1, -1))
        trade: list[Wire] = [next(self._ids), mts, amount or 1e-8, self._ins.price()]
        if self._funding:
            trade.append(self._rng.choice((2, 7, 30)))
        return trade

    def snapshot(self, now_ms: int) -> str:
        return encode(list(self._recent))

    def tick(self, now_ms: int, updates: int) -> Batch | None:
        executed, updated = ("fte", "ftu") if self._funding else ("te", "tu")
        bodies = [f'"{updated}",{encode(t)}' for t in self._pending]
        self._pending = [self._trade(now_ms) for _ in range(updates)]
        for trade in self._pending:
            self._recent.appendleft(trade)
            bodies.append(f'"{executed}",{encode(trade)}')
        return Batch(tuple(bodies))


class CandlesFeed(Feed):
    """Candles ``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]`` aligned on the timeframe (§5.5).

    Each tick changes the current candle (same MTS); when the clock enters the next
    timeframe bucket, a new candle starts (new MTS).
    """

    def __init__(self, key: str, instrument: Instrument, rng: random.Random, now_ms: int) -> None:
        parts = candle_parts(key)
        assert parts is not None
        self._span = CANDLE_TIMEFRAMES[parts[0]] * 1000
        self._ins = instrument
        self._rng = rng
        current = now_ms - now_ms % self._span
        closes = [instrument.price()]  # newest first, walking back in time
        for _ in range(_SNAPSHOT_CANDLES):
            closes.append(round_sig(closes[-1] * (1 + rng.gauss(0, 0.002)), 5))
        spans = range(_SNAPSHOT_CANDLES)
        candles = [self._candle(current - i * self._span, closes[i + 1], closes[i]) for i in spans]
        self._candles: deque[list[float | int]] = deque(candles, maxlen=_SNAPSHOT_CANDLES)

    def _candle(self, mts: int, open_: float, close: float) -> list[float | int]:
        high = round_sig(max(open_, close) * (1 + abs(self._rng.gauss(0, 0.001))), 5)
        low = round_sig(min(open_, close) * (1 - abs(self._rng.gauss(0, 0.001))), 5)
        return [mts, open_, close, high, low, round(_size(self._rng, self._ins.base) * 20, 8)]

    def snapshot(self, now_ms: int) -> str:
        return encode(list(self._candles))

    def tick(self, now_ms: int, updates: int) -> Batch | None:
        start = now_ms - now_ms % self._span
        current = self._candles[0]
        price = self._ins.price()
        if start > current[0]:
            self._candles.appendleft([start, current[2], price, price, price, 0])
            current = self._candles[0]
        current[2] = price
        current[3], current[4] = max(current[3], price), min(current[4], price)
        current[5] = round(current[5] + _size(self._rng, self._ins.base), 8)
        return Batch((encode(current),))


class DerivStatusFeed(Feed):
    """``deriv:SYMBOL`` status: one 23-field array with nulls at the placeholders (§5.6)."""

    def __init__(self, instrument: Instrument, rng: random.Random) -> None:
        self._ins = instrument
        self._rng = rng
        self._open_interest = round(_size(rng, instrument.base) * 10000, 8)

    def _fields(self, now_ms: int) -> list[Wire]:
        deriv = self._ins.price()
        spot = round_sig(deriv * (1 - 0.0003), 5)
        mark = round_sig((deriv + spot) / 2, 5)
        next_funding = now_ms - now_ms % 28_800_000 + 28_800_000
        accrued = round(self._rng.uniform(-0.0002, 0.0002), 8)
        step = self._rng.randint(0, 480)
        current = round(self._rng.uniform(-0.0001, 0.0001), 8)
        self._open_interest = round(self._open_interest * (1 + self._rng.gauss(0, 0.001)), 8)
        return [now_ms, None, deriv, spot, None, 1396531.67460709, None, next_funding,
                accrued, step, None, current, None, None, mark, None, None,
                self._open_interest, None, None, None, 0.001, 0.3]  # fmt: skip

    def snapshot(self, now_ms: int) -> str:
        return encode(self._fields(now_ms))

    def tick(self, now_ms: int, updates: int) -> Batch | None:
        return Batch((encode(self._fields(now_ms)),))


class LiquidationFeed(Feed):
    """``liq:global``: arrays of 12-field ``"pos"`` entries; some have a fractional MTS (§5.6)."""

    def __init__(self, instruments: list[Instrument], rng: random.Random) -> None:
        self._instruments = instruments
        self._rng = rng
        self._ids: Iterator[int] = iter(range(rng.randrange(10**8, 2 * 10**8), 1 << 53))

    def _entry(self, now_ms: int) -> list[Wire]:
        instrument = self._rng.choice(self._instruments)
        symbol, price = instrument.symbol, instrument.price()
        amount = _size(self._rng, price) * self._rng.choice((1, -1))
        mts: float = now_ms + 0.2002 if self._rng.random() < 0.2 else now_ms
        liq_price = round_sig(price * (1.05 if amount < 0 else 0.95), 5)
        is_match = self._rng.randint(0, 1)
        return ["pos", next(self._ids), mts, None, symbol, amount or -1e-8,
                price, None, is_match, 1 - is_match, None, liq_price]  # fmt: skip

    def snapshot(self, now_ms: int) -> str:
        return encode([self._entry(now_ms - back * 1000) for back in range(1, 6)])

    def tick(self, now_ms: int, updates: int) -> Batch | None:
        return Batch((encode([self._entry(now_ms)]),))
