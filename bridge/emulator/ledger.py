"""One emulated account: its orders, positions, wallets and funding, and the script that
changes them on every market tick (bitfinex-ws-v2.md §8.3, §8.4 layouts).

The story repeats: an order is placed (``on`` and its ``on-req`` notification), half filled
(``ou``), the fill is executed (``te``) and then updated with its fee (``tu``), both wallets
change (``wu``), the margin position moves with the market (``pu``), the rest of the order
is cancelled (``oc``), and the balance and margin info follow (``bu``, ``miu``). Every
message changes the state the snapshots (``ps``, ``ws``, ``os``, ``fos``, ``fcs``, ``fls``)
are taken from, so a client that authenticates again mid-story gets snapshots consistent
with the updates that follow. Numbers are rounded the way Bitfinex writes them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bridge.emulator.prices import round_sig
from bridge.emulator.wire import Wire

__all__ = ["Ledger", "Message"]

SYMBOL, BASE, QUOTE = "tBTCUSD", "BTC", "USD"
DERIV = "tBTCF0:USTF0"
ORDER_TYPE = "EXCHANGE LIMIT"
SIZE = 0.02
FEE_RATE = 0.002


@dataclass(frozen=True, slots=True)
class Message:
    """One channel-0 message: ``[0, abbr, payload]``, and what a filter must allow for it.

    Attributes:
        category: the auth-filter family (``trading``, ``wallet``, ``funding``,
            ``balance``, ``notify``).
        scope: the filter's suffix that also allows it (``tBTCUSD``, ``exchange-BTC``).
        req: a ``*-req`` notification (its trailers carry no public sequence, §6).
    """

    abbr: str
    payload: Wire
    category: str
    scope: str = ""
    req: bool = False


def _num(value: Wire) -> float:
    """A number read back from a wire array."""
    assert isinstance(value, int | float), value
    return float(value)


class Ledger:
    """The state of one account (call under the owner's lock)."""

    def __init__(self, start_ms: int, first_id: int) -> None:
        ids = itertools.count(first_id, 3)
        self._ids: Callable[[], int] = ids.__next__
        self.wallets: dict[tuple[str, str], list[Wire]] = {
            ("exchange", QUOTE): ["exchange", QUOTE, 25000.0, 0, 25000.0, None, None],
            ("exchange", BASE): ["exchange", BASE, 0.75, 0, 0.75, None, None],
            ("margin", QUOTE): ["margin", QUOTE, 8000.0, 0, 6500.5, None, None],
            ("funding", QUOTE): ["funding", QUOTE, 3000.0, 0, None, None, None],
        }
        self.orders: dict[int, list[Wire]] = {}
        resting = self._order(start_ms, -0.5, 99000.0)  # a sell far above the market
        self.orders[int(_num(resting[0]))] = resting
        self.positions: dict[str, list[Wire]] = {
            DERIV: [DERIV, "ACTIVE", 0.5, 59000.0, 0, 0, 0, 0, 41000.0, 2.5, None,
                    self._ids(), start_ms, start_ms, None, 1, None, 12000.0, 600.0, None],
        }  # fmt: skip
        t = start_ms
        self.offers: list[list[Wire]] = [
            [self._ids(), "fUSD", t, t, 1000.0, 1000.0, "LIMIT", None, None, 0, "ACTIVE",
             None, None, None, 0.0002, 2, 0, 0, None, 0, None],
        ]  # fmt: skip
        self.credits: list[list[Wire]] = [
            [self._ids(), "fUSD", 1, t, t, 500.0, 0, "ACTIVE", "FIXED", None, None, 0.00021, 2,
             t, t, 0, 0, None, 0, None, 0, SYMBOL],
        ]  # fmt: skip
        self.loans: list[list[Wire]] = [
            [self._ids(), "fUSD", -1, t, t, 200.0, 0, "ACTIVE", "FIXED", None, None, 0.00025, 7,
             t, t, 0, 0, None, 0, None, 0],
        ]  # fmt: skip
        self._script: Iterator[Callable[[int, float], list[Message]]] = itertools.cycle(
            [self._place, self._notify, self._fill, self._execute, self._fee, self._wallets,
             self._position, self._cancel, self._balance, self._margin]
        )  # fmt: skip
        self._side = 1
        self._order_id = 0
        self._trade: list[Wire] = []

    def snapshots(self) -> list[Message]:
        """What Bitfinex sends after ``OK``, in the official mock's order (§8.2)."""
        return [
            Message("ps", list(self.positions.values()), "trading"),
            Message("ws", list(self.wallets.values()), "wallet"),
            Message("os", list(self.orders.values()), "trading"),
            Message("fos", list(self.offers), "funding"),
            Message("fcs", list(self.credits), "funding"),
            Message("fls", list(self.loans), "funding"),
        ]

    def step(self, now_ms: int, price: float) -> list[Message]:
        """Advance the story by one message (``price``: the market's tBTCUSD mid)."""
        return next(self._script)(now_ms, price)

    def cancel_all(self, now_ms: int) -> list[Message]:
        """The dead-man switch fired: every open order is cancelled (``oc`` each)."""
        out = []
        for order in self.orders.values():
            order[5], order[13] = now_ms, "CANCELED"
            out.append(Message("oc", list(order), "trading", SYMBOL))
        self.orders.clear()
        return out

    # -- the script ------------------------------------------------------------------

    def _order(self, now_ms: int, amount: float, price: float) -> list[Wire]:
        cid = now_ms % 86_400_000
        return [self._ids(), None, cid, SYMBOL, now_ms, now_ms, amount, amount, ORDER_TYPE,
                None, None, None, 0, "ACTIVE", None, None, price, 0, 0, 0, None, None, None,
                0, 0, None, None, None, "API>BFX", None, None, {}]  # fmt: skip

    def _place(self, now_ms: int, price: float) -> list[Message]:
        self._side = -self._side
        limit = round_sig(price * (1 - 0.0005 * self._side), 5)
        order = self._order(now_ms, SIZE * self._side, limit)
        self._order_id = int(_num(order[0]))
        self.orders[self._order_id] = order
        return [Message("on", list(order), "trading", SYMBOL)]

    def _notify(self, now_ms: int, price: float) -> list[Message]:
        order = self.orders[self._order_id]
        side = "buy" if self._side > 0 else "sell"
        text = f"Submitting exchange limit {side} order for {SIZE} {BASE}."
        body: list[Wire] = [now_ms, "on-req", None, None, list(order), None, "SUCCESS", text]
        return [Message("n", body, "notify", req=True)]

    def _fill(self, now_ms: int, price: float) -> list[Message]:
        order = self.orders[self._order_id]
        half = round(SIZE / 2 * self._side, 8)
        order[5], order[6], order[17] = now_ms, half, order[16]
        order[13] = f"PARTIALLY FILLED @ {order[16]}({half})"
        return [Message("ou", list(order), "trading", SYMBOL)]

    def _execute(self, now_ms: int, price: float) -> list[Message]:
        order = self.orders[self._order_id]
        half = round(SIZE / 2 * self._side, 8)
        self._trade = [self._ids(), SYMBOL, now_ms, self._order_id, half, order[16],
                       ORDER_TYPE, order[16], 1, None, None, order[2]]  # fmt: skip
        return [Message("te", list(self._trade), "trading", SYMBOL)]

    def _fee(self, now_ms: int, price: float) -> list[Message]:
        amount, at = _num(self._trade[4]), _num(self._trade[5])
        if amount > 0:  # a buy pays its fee in the base currency, a sell in the quote
            self._trade[9:11] = [round(-amount * FEE_RATE, 8), BASE]
        else:
            self._trade[9:11] = [round(amount * at * FEE_RATE, 8), QUOTE]
        return [Message("tu", list(self._trade), "trading", SYMBOL)]

    def _wallets(self, now_ms: int, price: float) -> list[Message]:
        amount, at = _num(self._trade[4]), _num(self._trade[5])
        fee, fee_ccy = _num(self._trade[9]), self._trade[10]
        changes = {BASE: amount + (fee if fee_ccy == BASE else 0),
                   QUOTE: -amount * at + (fee if fee_ccy == QUOTE else 0)}  # fmt: skip
        out = []
        for ccy, change in changes.items():
            wallet = self.wallets[("exchange", ccy)]
            balance = round(_num(wallet[2]) + change, 8)
            meta: dict[str, Wire] = {
                "reason": "TRADE",
                "order_id": self._order_id,
                "trade_price": str(at),
                "trade_amount": str(amount),
            }
            desc = f"Exchange {abs(amount)} {BASE} for {QUOTE} @ {at}"
            self.wallets[("exchange", ccy)] = ["exchange", ccy, balance, 0, balance, desc, meta]
            out.append(Message("wu", list(self.wallets[("exchange", ccy)]), "wallet",
                               f"exchange-{ccy}"))  # fmt: skip
        return out

    def _position(self, now_ms: int, price: float) -> list[Message]:
        pos = self.positions[DERIV]
        amount, base = _num(pos[2]), _num(pos[3])
        pl = round((price - base) * amount, 4)
        pos[6], pos[7], pos[13] = pl, round(pl / (base * amount) * 100, 4), now_ms
        return [Message("pu", list(pos), "trading", DERIV)]

    def _cancel(self, now_ms: int, price: float) -> list[Message]:
        order = self.orders.pop(self._order_id)
        order[5], order[13] = now_ms, f"CANCELED was: {order[13]}"
        return [Message("oc", list(order), "trading", SYMBOL)]

    def _balance(self, now_ms: int, price: float) -> list[Message]:
        usd = sum(_num(w[2]) for w in self.wallets.values() if w[1] == QUOTE)
        btc = sum(_num(w[2]) for w in self.wallets.values() if w[1] == BASE)
        aum = round(usd + btc * price, 2)
        return [Message("bu", [aum, round(aum * 0.98, 2)], "balance")]

    def _margin(self, now_ms: int, price: float) -> list[Message]:
        pl = _num(self.positions[DERIV][6])
        margin = _num(self.wallets[("margin", QUOTE)][2])
        body: list[Wire] = ["base", [pl, 0, round(margin + pl, 4), round(margin + pl, 4), 600.0]]
        return [Message("miu", body, "trading")]
