"""Numbers written the way JavaScript's ``Number.prototype.toString`` writes them.

Bitfinex's servers are JavaScript: every number on the wire is the shortest text that
round-trips to the same double, in plain decimal for 1e-6 <= |x| < 1e21 and in exponent
form otherwise (``7e-7``, ``1.7e-8``, ``1e+21``). Python's ``repr`` finds the same shortest
digits but writes them differently (``7e-07``, ``60400.0``), which breaks book checksums
(bitfinex-ws-v2.md §7.2). The emulator writes numbers with :func:`js_number`; the bridge
hashes the raw text the server sent, so it never needs to re-format.
"""

from __future__ import annotations

import math

__all__ = ["js_number"]


def js_number(x: float) -> str:
    """Return ``x`` as JavaScript's ``String(x)`` would write it.

    >>> js_number(7e-07), js_number(60400.0), js_number(0.000001), js_number(1e21)
    ('7e-7', '60400', '0.000001', '1e+21')
    """
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    if x == 0:
        return "0"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    sign = "-" if x < 0 else ""
    digits, n = _shortest_digits(abs(x))
    return sign + _layout(digits, n)


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits ``d1d2…dk`` and ``n`` such that x = 0.d1d2…dk × 10**n."""
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    joined = whole + fraction
    stripped = joined.lstrip("0")
    leading_zeros = len(joined) - len(stripped)
    n = len(whole) - leading_zeros + (int(exponent) if exponent else 0)
    return stripped.rstrip("0"), n


def _layout(digits: str, n: int) -> str:
    """ECMAScript Number::toString steps 6-10 for positive finite values."""
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    exp = f"e+{e}" if e > 0 else f"e-{-e}"
    if k == 1:
        return digits + exp
    return digits[0] + "." + digits[1:] + exp
