"""Order-book state and the Bitfinex CRC32 book checksum (pure: no I/O, no clock).

One :class:`Book` holds one book subscription: aggregated (P0-P4) or raw (R0), trading or
funding. It applies wire entries by the rules of bitfinex-ws-v2.md §5.3/§5.4 and computes
the checksum the server sends as ``[chanId, "cs", CRC]`` (§7.1).

**Raw texts, not floats** (§7.2, §11 #1-#2). The server hashes numbers as JavaScript wrote
them (``7e-7``, ``0.0000011``, ``60400``); Python's ``repr`` writes ``7e-07`` and
``60400.0``. So :meth:`Book.apply` takes, beside the parsed entry, the JSON token text of
every element, and the book keeps the texts it hashes (price/rate or order id, and amount)
exactly as received. :func:`number_tokens` extracts those texts from a frame.

**Layout of the state.** Each side is a :class:`_Side`: a dict from a *sort key* to the
level, plus a list of the same keys kept sorted with :mod:`bisect`, best first. The sort key
carries the level's identity, so an update finds its level with one dict lookup, and the
checksum reads the 25 best levels of a side with one slice -- no sorting per ``cs``, which
matters because a ``cs`` may follow every update of a 250-level book (§6).

======================  ======================  =====================================
book                    identity                bids / asks sort key (best first)
======================  ======================  =====================================
trading P0-P4           PRICE                   (-price, 0) / (price, 0)
funding P0-P4           (RATE, PERIOD)          (-rate, period) / (rate, period)
trading R0              ORDER_ID                (-price, id) / (price, id)
funding R0              OFFER_ID                (-rate, id) / (rate, id)
======================  ======================  =====================================

The funding P order (rate, then period ascending) matches real snapshots (§5.3, the fBTC
snapshot of bitfinex-api-py#19). Funding R0 ordering is not documented; by analogy with
trading R0 it is rate, then offer id (an inference, §7.4 -- Bitfinex's own funding
checksums are known to be unreliable).
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["CHECKSUM_DEPTH", "Book", "number_tokens"]

CHECKSUM_DEPTH = 25
"""Levels (orders for R0) per side that the checksum covers (§7.1 step 2)."""

Number = int | float
SortKey = tuple[Number, Number]


class _Level:
    """One stored level (or order): its wire entry and its ``"key:amount"`` checksum pair."""

    __slots__ = ("entry", "pair")

    def __init__(self, entry: Sequence[Number], pair: str) -> None:
        self.entry = list(entry)
        self.pair = pair


class _Side:
    """One side of a book: levels by sort key, the keys sorted best first, and each key's
    ``"key:amount"`` checksum pair at the same index (so the best pairs are one slice)."""

    __slots__ = ("keys", "levels", "pairs")

    def __init__(self) -> None:
        self.keys: list[SortKey] = []
        self.levels: dict[SortKey, _Level] = {}
        self.pairs: list[str] = []

    def put(self, key: SortKey, level: _Level) -> None:
        """Add or replace the level at ``key``."""
        index = bisect_left(self.keys, key)
        if key in self.levels:
            self.pairs[index] = level.pair
        else:
            self.keys.insert(index, key)
            self.pairs.insert(index, level.pair)
        self.levels[key] = level

    def pop(self, key: SortKey) -> None:
        """Remove the level at ``key``; an unknown key is ignored (§5.3 rule 3)."""
        if self.levels.pop(key, None) is not None:
            index = bisect_left(self.keys, key)
            del self.keys[index]
            del self.pairs[index]

    def top(self, depth: int) -> list[_Level]:
        """The ``depth`` best levels, best first (fewer if the side is thinner)."""
        levels = self.levels
        return [levels[k] for k in self.keys[:depth]]

    def __len__(self) -> int:
        return len(self.keys)


class Book:
    """State of one book subscription (P0-P4 or R0, trading or funding).

    Feed it the snapshot entries and then the updates, in wire order, with :meth:`apply`;
    compare :meth:`checksum` with the server's ``cs``. The book keeps every level the
    server sends (all ``len`` of them, §7.1 step 1); the server's window deletes keep it
    bounded.

    Args:
        funding: a funding (``f…``) book: 4-element entries and inverted sides.
        raw: a raw book (R0): entries are orders keyed by id, not price levels.
    """

    __slots__ = ("_amount", "_asks", "_bids", "_count", "_orders", "_price", "funding", "raw")

    def __init__(self, *, funding: bool, raw: bool) -> None:
        self.funding = funding
        self.raw = raw
        # Wire positions (§5.3, §5.4): AMOUNT is last; the price/rate sits at 0 for P
        # books, 1 for trading R0 and 2 for funding R0; COUNT (P books only) precedes AMOUNT.
        self._amount = 3 if funding else 2
        self._count = self._amount - 1
        self._price = (2 if funding else 1) if raw else 0
        self._bids = _Side()
        self._asks = _Side()
        # R0 only: order id -> (side, sort key), so an order that moves can be found.
        self._orders: dict[Number, tuple[_Side, SortKey]] = {}

    def clear(self) -> None:
        """Forget every level (before a new snapshot)."""
        self._bids = _Side()
        self._asks = _Side()
        self._orders = {}

    def apply(self, entry: Sequence[Number], texts: Sequence[str]) -> None:
        """Apply one wire entry (a snapshot element or an update).

        Args:
            entry: the parsed entry: trading P ``[PRICE, COUNT, AMOUNT]``, funding P
                ``[RATE, PERIOD, COUNT, AMOUNT]``, trading R0 ``[ORDER_ID, PRICE, AMOUNT]``,
                funding R0 ``[OFFER_ID, PERIOD, RATE, AMOUNT]``.
            texts: the JSON token text of each element of ``entry``, as the server wrote it
                (see :func:`number_tokens`); only the first and the AMOUNT are kept.
        """
        amount = entry[self._amount]
        # §5.3 side rule, also for the ±1 markers of deletes: trading AMOUNT > 0 is a bid,
        # funding is inverted (AMOUNT < 0 is a bid). A zero amount (never sent) is an ask.
        is_bid = amount < 0 if self.funding else amount > 0
        if self.raw:
            self._apply_order(entry, texts, is_bid)
        else:
            self._apply_level(entry, texts, is_bid)

    def _apply_level(self, entry: Sequence[Number], texts: Sequence[str], is_bid: bool) -> None:
        """P0-P4 (§5.3): COUNT > 0 adds or replaces the level, COUNT = 0 deletes it."""
        price = entry[0]
        tie = entry[1] if self.funding else 0  # funding levels are (rate, period)
        side, other = (self._bids, self._asks) if is_bid else (self._asks, self._bids)
        key = (-price, tie) if is_bid else (price, tie)
        if entry[self._count] == 0:
            side.pop(key)
            return
        # A price is on one side only: drop a stale copy the server never deleted.
        other.pop((price, tie) if is_bid else (-price, tie))
        side.put(key, _Level(entry, f"{texts[0]}:{texts[self._amount]}"))

    def _apply_order(self, entry: Sequence[Number], texts: Sequence[str], is_bid: bool) -> None:
        """R0 (§5.4): PRICE (RATE) = 0 removes the order id, else adds or moves it."""
        order_id = entry[0]
        price = entry[self._price]
        located = self._orders.pop(order_id, None)
        if located is not None:
            located[0].pop(located[1])
        if price == 0:
            return
        side = self._bids if is_bid else self._asks
        key = (-price, order_id) if is_bid else (price, order_id)
        side.put(key, _Level(entry, f"{texts[0]}:{texts[self._amount]}"))
        self._orders[order_id] = (side, key)

    def preimage(self) -> str:
        """The string the checksum hashes (§7.1 steps 2-4).

        The 25 best bids and 25 best asks interleaved bid0, ask0, bid1, ask1, …, each as
        ``PRICE:AMOUNT`` (R0: ``ID:AMOUNT``; funding: RATE/OFFER_ID), joined with ``:``.
        A side with fewer levels just contributes fewer pairs; there is no padding.
        """
        bids = self._bids.pairs[:CHECKSUM_DEPTH]
        asks = self._asks.pairs[:CHECKSUM_DEPTH]
        # Interleave the common length with two slice assignments, then the longer side's rest.
        common = min(len(bids), len(asks))
        pairs = bids[:common] + asks[:common]
        pairs[::2], pairs[1::2] = bids[:common], asks[:common]
        pairs += bids[common:] or asks[common:]
        return ":".join(pairs)

    def checksum(self) -> int:
        """CRC-32 (IEEE) of :meth:`preimage` as a signed 32-bit int, like the server's ``cs``."""
        crc = zlib.crc32(self.preimage().encode())
        return crc - 0x1_0000_0000 if crc >= 0x8000_0000 else crc

    def entries(self) -> list[list[Number]]:
        """Every entry in wire layout: bids best first, then asks best first.

        This is the order of a server snapshot (§5.3, §5.4), so it can serve as one.
        """
        bids = [level.entry[:] for level in self._bids.top(len(self._bids))]
        return bids + [level.entry[:] for level in self._asks.top(len(self._asks))]

    def __len__(self) -> int:
        """Number of levels (R0: orders) on both sides."""
        return len(self._bids) + len(self._asks)


# A JSON string (skipped) or a JSON number (captured). Matching strings whole keeps digits
# inside them ("tBTCF0:USTF0", "2e-8" as text) out of the result. The frame is assumed to be
# valid JSON -- the caller parses it with orjson first -- so a number never touches a letter
# and `true`/`false`/`null` hold no digits.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')


def number_tokens(frame: str | bytes) -> list[str]:
    """Every JSON number of ``frame`` in document order, as the text the server wrote.

    >>> number_tokens('[81757,[[7e-7,1,10000],[0.00000111,1,-4847.13]],"x1",12]')
    ['81757', '7e-7', '1', '10000', '0.00000111', '1', '-4847.13', '12']

    Book frames hold numbers only (plus ``"cs"``/``"hb"`` markers), so the tokens of entry
    ``i`` follow from the entry lengths. Numbers inside JSON strings are not numbers and are
    not returned.
    """
    data = frame if isinstance(frame, bytes) else frame.encode()
    bare = data.translate(None, b"[]")
    if not bare.translate(None, _NUMBER_CHARS):
        # Only numbers, commas and brackets (a book update, nearly always): the numbers are
        # what the commas separate. A tenth of the regex's cost, which was a tenth of the
        # worker's under bursts. Empty arrays leave empty tokens.
        tokens = bare.decode().split(",")
        return [token for token in tokens if token] if "" in tokens else tokens
    text = data.decode()
    return [token for token in _TOKEN.findall(text) if token]


_NUMBER_CHARS = b"0123456789.-+eE,"  # what a frame of numbers, commas and brackets is made of
