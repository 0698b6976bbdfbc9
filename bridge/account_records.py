"""Channel-0 arrays -> records: one label table per account layout (bitfinex-ws-v2.md §8.4).

The same rules as :mod:`bridge.records`: one label per wire position, ``None`` where
Bitfinex documents a placeholder; placeholder positions and null values are dropped; extra
trailing values are ignored (layouts grow without a version change) and a short array gives
the keys that are present. Labels are the snake_case names of §8.4, the contract of SPEC §8.

:data:`ABBREVIATIONS` says which stream each channel-0 message type (§8.3) feeds and whether
it is that stream's snapshot; :data:`STREAMS` lists the account streams (SPEC §8).

Three messages are not flat arrays: ``bu`` (``[AUM, AUM_NET]``) is, but ``miu`` and ``fiu``
carry a type tag and a nested array (``["base", [...]]``, ``["sym", SYMBOL, [...]]``); their
records get ``update_type`` (``base``/``sym``) and ``symbol`` beside the nested labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.records import Labels, Record

__all__ = [
    "ABBREVIATIONS",
    "BALANCE",
    "FUNDING_CREDIT",
    "FUNDING_INFO",
    "FUNDING_LOAN",
    "FUNDING_OFFER",
    "FUNDING_TRADE",
    "IGNORED",
    "MARGIN_BASE",
    "MARGIN_SYM",
    "NOTIFICATION",
    "ORDER",
    "POSITION",
    "SNAPSHOTTED",
    "STREAMS",
    "TRADE",
    "WALLET",
    "record",
]

# §8.3: abbreviation -> (stream kind, is a snapshot).
ABBREVIATIONS: dict[str, tuple[str, bool]] = {
    "os": ("orders", True), "on": ("orders", False), "ou": ("orders", False),
    "oc": ("orders", False),
    "ps": ("positions", True), "pn": ("positions", False), "pu": ("positions", False),
    "pc": ("positions", False),
    "ws": ("wallets", True), "wu": ("wallets", False),
    "te": ("trades", False), "tu": ("trades", False),
    "fte": ("funding_trades", False), "ftu": ("funding_trades", False),
    "fos": ("funding_offers", True), "fon": ("funding_offers", False),
    "fou": ("funding_offers", False), "foc": ("funding_offers", False),
    "fcs": ("funding_credits", True), "fcn": ("funding_credits", False),
    "fcu": ("funding_credits", False), "fcc": ("funding_credits", False),
    "fls": ("funding_loans", True), "fln": ("funding_loans", False),
    "flu": ("funding_loans", False), "flc": ("funding_loans", False),
    "bu": ("balance", False), "miu": ("margin", False), "fiu": ("funding_info", False),
    "n": ("notifications", False),
}  # fmt: skip
STREAMS = tuple(dict.fromkeys(kind for kind, _ in ABBREVIATIONS.values()))
IGNORED = frozenset({"hts", "hfts", "hos", "ats", "mis", "uac"})  # legacy/undocumented (§8.3)
# Streams Bitfinex snapshots after auth, with the filter and the permission that gate them.
SNAPSHOTTED = {
    "orders": ("trading", "orders"), "positions": ("trading", "positions"),
    "wallets": ("wallet", "wallets"), "funding_offers": ("funding", "funding"),
    "funding_credits": ("funding", "funding"), "funding_loans": ("funding", "funding"),
}  # fmt: skip


# ORDER (32): placeholders at 11, 14, 15, 20-22, 26, 27, 29, 30.
ORDER: Labels = (
    "id", "gid", "cid", "symbol", "mts_create", "mts_update", "amount", "amount_orig",
    "order_type", "type_prev", "mts_tif", None, "flags", "order_status", None, None,
    "price", "price_avg", "price_trailing", "price_aux_limit", None, None, None,
    "notify", "hidden", "placed_id", None, None, "routing", None, None, "meta",
)  # fmt: skip

# POSITION (20): placeholders at 10, 14, 16.
POSITION: Labels = (
    "symbol", "status", "amount", "base_price", "margin_funding", "margin_funding_type",
    "pl", "pl_perc", "price_liq", "leverage", None, "position_id", "mts_create",
    "mts_update", None, "type", None, "collateral", "collateral_min", "meta",
)  # fmt: skip

# WALLET (7).
WALLET: Labels = (
    "wallet_type", "currency", "balance", "unsettled_interest", "balance_available",
    "description", "meta",
)  # fmt: skip

# TRADE (12): FEE and FEE_CURRENCY are null in `te`, filled in `tu`.
TRADE: Labels = (
    "id", "symbol", "mts_create", "order_id", "exec_amount", "exec_price", "order_type",
    "order_price", "maker", "fee", "fee_currency", "cid",
)  # fmt: skip

# FUNDING_TRADE (8).
FUNDING_TRADE: Labels = (
    "id", "symbol", "mts_create", "offer_id", "amount", "rate", "period", "maker",
)  # fmt: skip

# FUNDING_OFFER (21): placeholders at 7, 8, 11-13, 18; RATE_REAL last (the doc's list).
FUNDING_OFFER: Labels = (
    "id", "symbol", "mts_create", "mts_update", "amount", "amount_orig", "offer_type",
    None, None, "flags", "status", None, None, None, "rate", "period", "notify", "hidden",
    None, "renew", "rate_real",
)  # fmt: skip

# FUNDING_CREDIT (22): placeholders at 9, 10, 17, 19.
FUNDING_CREDIT: Labels = (
    "id", "symbol", "side", "mts_create", "mts_update", "amount", "flags", "status",
    "rate_type", None, None, "rate", "period", "mts_opening", "mts_last_payout", "notify",
    "hidden", None, "renew", None, "no_close", "position_pair",
)  # fmt: skip

# FUNDING_LOAN (21): FUNDING_CREDIT without POSITION_PAIR.
FUNDING_LOAN: Labels = FUNDING_CREDIT[:21]

# NOTIFICATION (8): NOTIFY_INFO (e.g. an ORDER array) is kept as Bitfinex sent it.
NOTIFICATION: Labels = (
    "mts", "type", "message_id", None, "notify_info", "code", "status", "text",
)  # fmt: skip

# bu: [AUM, AUM_NET].
BALANCE: Labels = ("aum", "aum_net")

# miu: ["base", [USER_PL, USER_SWAPS, MARGIN_BALANCE, MARGIN_NET, MARGIN_MIN]] or
# ["sym", SYMBOL, [TRADABLE_BALANCE, GROSS_BALANCE, BUY, SELL, ...]].
MARGIN_BASE: Labels = ("user_pl", "user_swaps", "margin_balance", "margin_net", "margin_min")
MARGIN_SYM: Labels = ("tradable_balance", "gross_balance", "buy", "sell")

# fiu: ["sym", SYMBOL, [YIELD_LOAN, YIELD_LEND, DURATION_LOAN, DURATION_LEND]].
FUNDING_INFO: Labels = ("yield_loan", "yield_lend", "duration_loan", "duration_lend")

_FLAT: dict[str, Labels] = {
    "orders": ORDER,
    "positions": POSITION,
    "wallets": WALLET,
    "trades": TRADE,
    "funding_trades": FUNDING_TRADE,
    "funding_offers": FUNDING_OFFER,
    "funding_credits": FUNDING_CREDIT,
    "funding_loans": FUNDING_LOAN,
    "notifications": NOTIFICATION,
    "balance": BALANCE,
}


def _label(labels: Labels, values: Sequence[Any]) -> Record:
    """Zip ``labels`` with ``values``, dropping placeholders, nulls and extra values."""
    return {k: v for k, v in zip(labels, values, strict=False) if k is not None and v is not None}


def record(stream: str, values: Any) -> Record:
    """The record of one entry of account stream ``stream`` (``orders``, ``margin``, …).

    Raises:
        TypeError, ValueError, IndexError: ``values`` does not have the layout's shape (the
            core reports the frame as malformed).
    """
    if type(values) is not list:
        raise TypeError(f"{stream} entry is not an array")
    labels = _FLAT.get(stream)
    if labels is not None:
        return _label(labels, values)
    return _tagged(stream, values)


def _tagged(stream: str, values: list[Any]) -> Record:
    """``miu``/``fiu``: a type tag, for ``sym`` a symbol, then the nested array."""
    tag = values[0]
    if tag == "base" and stream == "margin":
        return {"update_type": "base", **_label(MARGIN_BASE, _nested(values[1]))}
    if tag == "sym":
        labels = MARGIN_SYM if stream == "margin" else FUNDING_INFO
        if type(values[1]) is not str:
            raise TypeError(f"{stream}: symbol is not a string")
        return {"update_type": "sym", "symbol": values[1], **_label(labels, _nested(values[2]))}
    raise ValueError(f"{stream}: unknown update type {tag!r}")


def _nested(values: Any) -> list[Any]:
    if type(values) is not list:
        raise TypeError("nested values are not an array")
    return values
