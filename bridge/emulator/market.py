"""The market: every feed of the emulator, who subscribes to it, and the tick that moves it.

Feeds are shared across connections: all subscribers of an equal
:class:`~bridge.emulator.channels.ChannelInfo` see the very same book, trades and
candles. Feeds are created on first use and kept for the emulator's lifetime, so a later
subscriber (or :meth:`Market.book`) continues the same story; only feeds with subscribers
tick.

Concurrency: one lock guards all feeds and subscriber sets. :meth:`Market.subscribe` takes
the snapshot and registers the subscriber under it, and :meth:`Market.tick` generates a
tick's batches and copies the subscriber lists under it, so every subscriber gets each
update exactly once, either inside its snapshot or as an update. The caller delivers the
batches after the lock is released (connections take their own lock to send).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from typing import Protocol

from bridge.emulator.books import Book
from bridge.emulator.channels import ChannelInfo, candle_parts
from bridge.emulator.feeds import (
    LIQ_SYMBOLS,
    Batch,
    BookFeed,
    CandlesFeed,
    DerivStatusFeed,
    Feed,
    LiquidationFeed,
    TickerFeed,
    TradesFeed,
)
from bridge.emulator.prices import Instrument

__all__ = ["Delivery", "Market", "Subscriber"]

_F1_SECONDS = 2.0  # F1 books: "2sec" (§5.3)


class Subscriber(Protocol):
    """Anything that can receive a tick's batch for one of its chanIds (a connection)."""

    def deliver(self, chan_id: int, batch: Batch) -> None:
        """Send ``batch`` on ``chan_id``."""


Delivery = tuple[list[tuple[Subscriber, int]], Batch]


class Market:
    """All synthetic state of one emulator.

    Args:
        seed: makes every feed reproducible (each feed draws from its own generator seeded
            by ``seed`` and its channel); None for fresh randomness.
        tick_interval: seconds between ticks; sets the F1 book cadence.
        updates_per_tick: inclusive range of book updates (and new trades) per tick.
    """

    def __init__(
        self, *, seed: int | None, tick_interval: float, updates_per_tick: tuple[int, int]
    ) -> None:
        self.lock = threading.Lock()
        self._seed = seed
        self._updates = updates_per_tick
        self._f1_every = max(1, round(_F1_SECONDS / tick_interval))
        self._rng = self._random("market")
        self._feeds: dict[ChannelInfo, Feed] = {}
        self._subscribers: dict[ChannelInfo, dict[int, Subscriber]] = {}
        self._instruments: dict[str, Instrument] = {}
        self._order_ids: Iterator[int] = itertools.count(34_000_000_000, 7)

    def _random(self, name: str) -> random.Random:
        return random.Random(f"{self._seed}/{name}") if self._seed is not None else random.Random()

    def instrument(self, symbol: str) -> Instrument:
        """The reference price of ``symbol``, created on first use (call under the lock)."""
        if symbol not in self._instruments:
            self._instruments[symbol] = Instrument(symbol, self._random(symbol))
        return self._instruments[symbol]

    def _feed(self, info: ChannelInfo, now_ms: int) -> Feed:
        """The feed of ``info``, created on first use (call under the lock)."""
        feed = self._feeds.get(info)
        if feed is None:
            feed = self._feeds[info] = self._new_feed(info, now_ms)
        return feed

    def _new_feed(self, info: ChannelInfo, now_ms: int) -> Feed:
        rng = self._random(repr(info))
        if info.channel == "candles":
            assert info.key is not None
            parts = candle_parts(info.key)
            assert parts is not None
            return CandlesFeed(info.key, self.instrument(parts[1]), rng, now_ms)
        if info.channel == "status":
            assert info.key is not None
            if info.key == "liq:global":
                return LiquidationFeed([self.instrument(s) for s in LIQ_SYMBOLS], rng)
            return DerivStatusFeed(self.instrument(info.key.partition(":")[2]), rng)
        assert info.symbol is not None
        instrument = self.instrument(info.symbol)
        if info.channel == "ticker":
            return TickerFeed(instrument, rng)
        if info.channel == "trades":
            return TradesFeed(instrument, rng, now_ms)
        every = self._f1_every if info.freq == "F1" else 1
        return BookFeed(Book(info, instrument, rng, self._order_ids), every)

    def subscribe(
        self, info: ChannelInfo, subscriber: Subscriber, chan_id: int, now_ms: int
    ) -> str:
        """Register ``subscriber`` for ``info`` as ``chan_id``; return the snapshot body.

        Atomic with respect to :meth:`tick`: the snapshot reflects exactly the updates the
        subscriber will not be sent.
        """
        with self.lock:
            snapshot = self._feed(info, now_ms).snapshot(now_ms)
            self._subscribers.setdefault(info, {})[chan_id] = subscriber
            return snapshot

    def unsubscribe(self, info: ChannelInfo, chan_id: int) -> None:
        """Stop sending ``info`` to ``chan_id``; unknown ids are ignored."""
        with self.lock:
            subscribers = self._subscribers.get(info, {})
            subscribers.pop(chan_id, None)
            if not subscribers:
                self._subscribers.pop(info, None)

    def book(self, info: ChannelInfo, now_ms: int) -> list[list[float | int]]:
        """What a fresh snapshot of book ``info`` would contain now, as Python lists."""
        with self.lock:
            feed = self._feed(info, now_ms)
            assert isinstance(feed, BookFeed)
            return [list(entry) for entry in feed.book.snapshot()]

    def tick(self, now_ms: int) -> list[Delivery]:
        """Advance every subscribed feed one tick; return what to send to whom."""
        deliveries: list[Delivery] = []
        with self.lock:
            for instrument in self._instruments.values():
                instrument.step()
            for info, subscribers in self._subscribers.items():
                batch = self._feeds[info].tick(now_ms, self._rng.randint(*self._updates))
                if batch is not None:
                    deliveries.append(([(s, c) for c, s in subscribers.items()], batch))
        return deliveries
