"""Reference prices: where each symbol trades, derived from its name, and how it moves.

Every symbol gets a deterministic base level so that a test can predict its magnitude:
well-known coins sit near real-world prices, anything else gets a level from a CRC of its
name. Pairs quoted in BTC are tiny on purpose (``tXRPBTC`` ≈ 1.1e-6) so that numbers below
1e-6 reach the wire in exponent form (``7e-7``), the checksum trap of bitfinex-ws-v2.md
§7.2. Funding symbols get a daily rate around 0.0001–0.0005.
"""

from __future__ import annotations

import math
import random
import zlib

__all__ = ["Instrument", "amount_scale", "base_level", "round_sig", "to_grid"]

_USD_PRICES = {
    "BTC": 60000.0,
    "ETH": 3000.0,
    "LTC": 80.0,
    "XRP": 0.55,
    "SOL": 150.0,
    "DOGE": 0.15,
    "ADA": 0.45,
    "EOS": 0.7,
    "LEO": 6.0,
    "UST": 1.0,
    "USD": 1.0,
    "EUR": 1.08,
}
_BTC_PRICES = {"XRP": 1.1e-6, "ETH": 0.052, "LTC": 0.0013, "EOS": 1.2e-5, "DOGE": 2.5e-6}


def _name_hash(name: str) -> int:
    return zlib.crc32(name.encode())


def _split_pair(pair: str) -> tuple[str, str]:
    """``BTCUSD`` -> (BTC, USD); ``AAVE:USD`` -> (AAVE, USD) (§9 split rule)."""
    if ":" in pair:
        base, _, quote = pair.partition(":")
        return base, quote
    return pair[:3], pair[3:]


def base_level(symbol: str) -> float:
    """The level a symbol's price (or funding rate) reverts to; deterministic in its name.

    >>> base_level("tBTCUSD"), base_level("tXRPBTC")
    (60000.0, 1.1e-06)
    """
    h = _name_hash(symbol)
    mantissa = 1 + (h % 900) / 100
    if symbol.startswith("f"):
        return round_sig(0.0001 * (1 + (h >> 10) % 400 / 100), 5)
    base, quote = _split_pair(symbol[1:])
    base = base.removesuffix("F0")
    if quote.removesuffix("F0") == "BTC":
        return _BTC_PRICES.get(base, round_sig(mantissa * 10.0 ** -(5 + (h >> 12) % 3), 5))
    return _USD_PRICES.get(base, round_sig(mantissa * 10.0 ** ((h >> 12) % 5 - 1), 5))


def round_sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant figures (a clean, shortest-repr float).

    >>> round_sig(60012.345, 5), round_sig(0.000001234567, 3)
    (60012.0, 1.23e-06)
    """
    return float(f"{x:.{digits - 1}e}")


def to_grid(x: float, digits: int, *, up: bool) -> float:
    """``x`` rounded up or down to ``digits`` significant figures.

    >>> to_grid(59990.0, 1, up=False), to_grid(60010.0, 1, up=True), to_grid(1.0994e-6, 3, up=True)
    (50000.0, 70000.0, 1.1e-06)
    """
    exponent = math.floor(math.log10(x)) - digits + 1
    scaled = round(x / 10.0**exponent, 9)  # 5.9999999999 is 6: avoid a spurious floor
    mantissa = math.ceil(scaled) if up else math.floor(scaled)
    return float(f"{mantissa}e{exponent}")


def amount_scale(level: float) -> float:
    """A typical order size for a price level: about 0.1 BTC, 100 XRP, 1e5 XRP/BTC."""
    return 10.0 ** min(5, max(-1, 2 - round(math.log10(level))))


class Instrument:
    """The moving reference price (or rate) of one symbol: a mean-reverting random walk.

    The market steps each instrument once per tick; every feed of the symbol (book,
    ticker, trades, candles) reads :attr:`mid`, so they tell a consistent story.
    """

    def __init__(self, symbol: str, rng: random.Random) -> None:
        self.symbol = symbol
        self.base = base_level(symbol)
        self.mid = self.base
        self._rng = rng
        self._log_offset = 0.0

    def step(self) -> None:
        """Move the reference level by one tick (±0.05 % per step, pulled back to base)."""
        self._log_offset = 0.99 * self._log_offset + self._rng.gauss(0.0, 0.0005)
        self.mid = self.base * math.exp(self._log_offset)

    def price(self, digits: int = 5) -> float:
        """The current level on a ``digits`` significant-figure grid."""
        return round_sig(self.mid, digits)
