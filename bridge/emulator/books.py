"""Synthetic order books: aggregated P0–P4 and raw R0, trading and funding.

One :class:`Book` is the server-side state of one ``book`` channel (symbol, prec, freq,
len): at most ``len`` levels (R0: orders) per side, never crossed. :meth:`Book.step`
applies random adds, changes and deletes and returns them as wire entries; the same state
yields the snapshot and the checksum, so both always agree with what was sent.

Layouts and rules, bitfinex-ws-v2.md §5.3/§5.4/§7:

===========  =============================  ==============================  ============
book         entry                          delete                          checksum
===========  =============================  ==============================  ============
P trading    ``[PRICE, COUNT, AMOUNT]``      ``[PRICE, 0, ±1]``              PRICE:AMOUNT
P funding    ``[RATE, PERIOD, COUNT, AMT]``  ``[RATE, PERIOD, 0, ±1]``       RATE:AMOUNT
R0 trading   ``[ID, PRICE, AMOUNT]``         ``[ID, 0, ±1]``                 ID:AMOUNT
R0 funding   ``[ID, PERIOD, RATE, AMOUNT]``  ``[ID, PERIOD, 0, ±1]``         ID:AMOUNT
===========  =============================  ==============================  ============

The side is the sign of AMOUNT: trading bids are positive, funding bids (borrowers)
negative. A delete's ±1 marker carries the sign of its side's amounts, which gives
"1 = bids" for trading and "1 = asks/offers" for funding, as §5.3 says.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from bridge.emulator.channels import ChannelInfo, is_funding
from bridge.emulator.prices import Instrument, amount_scale, to_grid
from bridge.emulator.wire import Scalar, checksum

__all__ = ["Book", "WireEntry"]

WireEntry = tuple[int | float, ...]
_FUNDING_PERIODS = (2, 3, 4, 5, 7, 10, 14, 15, 20, 30)
_CHECKSUM_DEPTH = 25  # §7.1: top 25 of each side


@dataclass(slots=True)
class _Entry:
    """One price level (P books) or one order (R0): the mutable server-side record."""

    bid: bool
    price: float  # the rate for funding books
    period: int  # funding only, else 0
    count: int  # P books only, else 0
    amount: float  # signed as on the wire
    order_id: int  # R0 only, else 0


class Book:
    """The shared state of one book channel; see the module docstring for the layouts."""

    def __init__(
        self,
        info: ChannelInfo,
        instrument: Instrument,
        rng: random.Random,
        order_ids: Iterator[int],
    ) -> None:
        assert info.symbol is not None and info.prec is not None and info.len is not None
        self.funding = is_funding(info.symbol)
        self.raw = info.prec == "R0"
        self.depth = int(info.len)
        self._digits = 5 if self.raw else 5 - int(info.prec[1])  # P0..P4: 5..1 figures
        self._instrument = instrument
        self._rng = rng
        self._order_ids = order_ids
        self._sides: dict[bool, dict[object, _Entry]] = {True: {}, False: {}}
        for bid in (True, False):
            for _ in range(self.depth * 4):
                if len(self._sides[bid]) < self.depth:
                    self._add(bid)

    # -- reading ---------------------------------------------------------------------

    def snapshot(self) -> list[WireEntry]:
        """Every entry in snapshot order: bids best first, then asks best first (§5.3)."""
        return [self._wire(e) for bid in (True, False) for e in self._sorted(bid)]

    def checksum(self) -> int:
        """The signed CRC-32 of the top 25 per side, interleaved bid0, ask0, … (§7.1)."""
        bids = self._sorted(True)[:_CHECKSUM_DEPTH]
        asks = self._sorted(False)[:_CHECKSUM_DEPTH]
        pairs: list[tuple[Scalar, Scalar]] = []
        for i in range(_CHECKSUM_DEPTH):
            pairs.extend(self._checksum_pair(side[i]) for side in (bids, asks) if i < len(side))
        return checksum(pairs)

    # -- updating --------------------------------------------------------------------

    def step(self, updates: int) -> list[WireEntry]:
        """Apply ``updates`` random changes; return every wire entry they produced, in order.

        One change can produce several entries: adding a level first deletes the levels of
        the other side it would cross and, when the window of ``len`` is full, the worst
        level of its own side; then it adds the level.
        """
        out: list[WireEntry] = []
        for _ in range(updates):
            bid = self._rng.random() < 0.5
            roll = self._rng.random()
            if not self._sides[bid] or roll < 0.4:
                out += self._add(bid)
            elif roll < 0.8:
                out += self._change(bid)
            else:
                out += self._delete(self._pick(bid))
        return out

    def _add(self, bid: bool) -> list[WireEntry]:
        """A new level (R0: order) near the mid, or a change when there is no room for it."""
        price = self._new_price(bid)
        side = self._sides[bid]
        if price is None:
            return self._change(bid) if side else []
        period = self._rng.choice(_FUNDING_PERIODS) if self.funding else 0
        order_id = next(self._order_ids) if self.raw else 0
        entry = _Entry(bid, price, period, self._rng.randint(1, 12), 0.0, order_id)
        entry.amount = self._new_amount(bid)
        if self.raw:
            entry.count = 0
        ident = self._ident(entry)
        if ident in side:
            return self._change(bid, side[ident])
        if len(side) >= self.depth and self._sort_key(entry) >= self._sort_key(self._worst(bid)):
            return self._change(bid) if side else []
        out = self._uncross(entry)
        while len(side) >= self.depth:  # make room first: a side never exceeds len
            out += self._delete(self._worst(bid))
        side[ident] = entry
        out.append(self._wire(entry))
        return out

    def _change(self, bid: bool, entry: _Entry | None = None) -> list[WireEntry]:
        """New amount (and count) for a level; R0 orders sometimes move to a new price."""
        if entry is None:
            entry = self._pick(bid)
        out: list[WireEntry] = []
        entry.amount = self._new_amount(bid)
        if self.raw:
            price = self._new_price(bid)
            if price is not None and self._rng.random() < 0.3:
                entry.price = price
                out += self._uncross(entry)
        else:
            entry.count = self._rng.randint(1, 12)
        out.append(self._wire(entry))
        return out

    def _delete(self, entry: _Entry) -> list[WireEntry]:
        """Remove a level or order and return its delete entry (COUNT/PRICE 0, ±1 marker)."""
        del self._sides[entry.bid][self._ident(entry)]
        marker = 1 if entry.amount > 0 else -1
        if self.raw:
            return [
                (entry.order_id, entry.period, 0, marker)
                if self.funding
                else (entry.order_id, 0, marker)
            ]
        if self.funding:
            return [(entry.price, entry.period, 0, marker)]
        return [(entry.price, 0, marker)]

    def _uncross(self, entry: _Entry) -> list[WireEntry]:
        """Delete the other side's entries that ``entry`` would cross (bid p kills asks <= p)."""
        other = self._sides[not entry.bid].values()
        if entry.bid:
            crossed = [e for e in other if e.price <= entry.price]
        else:
            crossed = [e for e in other if e.price >= entry.price]
        return [w for e in sorted(crossed, key=self._sort_key) for w in self._delete(e)]

    # -- helpers ---------------------------------------------------------------------

    def _new_price(self, bid: bool) -> float | None:
        """A price on this book's grid, a log-uniform distance of 1 step to 50 % from the mid.

        Dense near the mid, sparse far away: on ``tXRPBTC`` (mid ≈ 1.1e-6) about a fifth of
        the bids fall below 1e-6 and are written in exponent form. Coarse books (P3, P4)
        get few distinct levels, as on Bitfinex.
        """
        mid = self._instrument.mid
        step = 10.0 ** (math.floor(math.log10(mid)) - self._digits + 1)
        nearest = math.log(min(step / mid, 0.5))
        distance = math.exp(self._rng.uniform(nearest, math.log(0.5)))
        if bid:  # bids round down, asks up: a new level never lands on the wrong side
            price = to_grid(mid * (1 - distance), self._digits, up=False)
        else:
            price = to_grid(mid * (1 + distance), self._digits, up=True)
        return price if price > 0 else None

    def _new_amount(self, bid: bool) -> float:
        """A positive size, signed for its side: trading bids and funding offers are > 0."""
        size = round(amount_scale(self._instrument.base) * self._rng.lognormvariate(0, 1), 8)
        size = max(size, 1e-8)
        return size if bid != self.funding else -size

    def _pick(self, bid: bool) -> _Entry:
        return self._rng.choice(list(self._sides[bid].values()))

    def _worst(self, bid: bool) -> _Entry:
        return max(self._sides[bid].values(), key=self._sort_key)

    def _ident(self, entry: _Entry) -> object:
        """Identity within a side: the order id, the (rate, period) pair, or the price."""
        if self.raw:
            return entry.order_id
        return (entry.price, entry.period) if self.funding else entry.price

    def _sort_key(self, entry: _Entry) -> tuple[float, int, int]:
        """Best first: bids by price desc, asks asc; then period (P funding) or order id."""
        price = -entry.price if entry.bid else entry.price
        return (price, entry.order_id, 0) if self.raw else (price, entry.period, 0)

    def _sorted(self, bid: bool) -> list[_Entry]:
        return sorted(self._sides[bid].values(), key=self._sort_key)

    def _wire(self, e: _Entry) -> WireEntry:
        if self.raw:
            if self.funding:
                return (e.order_id, e.period, e.price, e.amount)
            return (e.order_id, e.price, e.amount)
        if self.funding:
            return (e.price, e.period, e.count, e.amount)
        return (e.price, e.count, e.amount)

    def _checksum_pair(self, e: _Entry) -> tuple[Scalar, Scalar]:
        return (e.order_id if self.raw else e.price, e.amount)
