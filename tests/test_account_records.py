"""Tests of bridge.account_records: channel-0 layouts of bitfinex-ws-v2.md §8.4 -> records.

Each table is checked against a literal array laid out as the doc lists its fields, with a
distinct value per position, so that a label off by one cannot pass. Placeholders and
nulls are dropped; extra values are ignored; short arrays give the keys present.
"""

from __future__ import annotations

import pytest

from bridge import account_records as ar
from bridge.account_records import ABBREVIATIONS, STREAMS, record


def numbered(labels: ar.Labels) -> tuple[list[object], dict[str, object]]:
    """An array with value ``i`` at position ``i``, and the record it must give."""
    values: list[object] = list(range(len(labels)))
    return values, {k: i for i, k in enumerate(labels) if k is not None}


@pytest.mark.parametrize(
    ("stream", "labels", "size", "placeholders"),
    [
        ("orders", ar.ORDER, 32, [11, 14, 15, 20, 21, 22, 26, 27, 29, 30]),
        ("positions", ar.POSITION, 20, [10, 14, 16]),
        ("wallets", ar.WALLET, 7, []),
        ("trades", ar.TRADE, 12, []),
        ("funding_trades", ar.FUNDING_TRADE, 8, []),
        ("funding_offers", ar.FUNDING_OFFER, 21, [7, 8, 11, 12, 13, 18]),
        ("funding_credits", ar.FUNDING_CREDIT, 22, [9, 10, 17, 19]),
        ("funding_loans", ar.FUNDING_LOAN, 21, [9, 10, 17, 19]),
        ("notifications", ar.NOTIFICATION, 8, [3]),
        ("balance", ar.BALANCE, 2, []),
    ],
)
def test_flat_layouts_have_the_documented_length_and_placeholders(
    stream: str, labels: ar.Labels, size: int, placeholders: list[int]
) -> None:
    """Each §8.4 layout: its length, its placeholders, one record key per other position."""
    assert len(labels) == size
    assert [i for i, k in enumerate(labels) if k is None] == placeholders
    values, expected = numbered(labels)
    assert record(stream, [*values, "appended later"]) == expected


def test_order_labels_are_the_spec_names_in_wire_order() -> None:
    """SPEC §8: the order record keys, in order."""
    assert [k for k in ar.ORDER if k] == [
        "id", "gid", "cid", "symbol", "mts_create", "mts_update", "amount", "amount_orig",
        "order_type", "type_prev", "mts_tif", "flags", "order_status", "price", "price_avg",
        "price_trailing", "price_aux_limit", "notify", "hidden", "placed_id", "routing", "meta",
    ]  # fmt: skip


def test_wallet_update_example_of_the_doc() -> None:
    """§8.4 wu example: BALANCE_AVAILABLE null is dropped, META kept as a map."""
    meta = {"reason": "TRADE", "order_id": 1, "trade_price": "7804.6", "trade_amount": "0.01"}
    values = ["exchange", "BTC", 1.61169184, 0, None, "Exchange 0.01 BTC for USD @ 7804.6", meta]
    assert record("wallets", values) == {
        "wallet_type": "exchange",
        "currency": "BTC",
        "balance": 1.61169184,
        "unsettled_interest": 0,
        "description": "Exchange 0.01 BTC for USD @ 7804.6",
        "meta": meta,
    }


def test_trade_te_has_no_fee_and_tu_has_it() -> None:
    """§8.4 TRADE: FEE/FEE_CURRENCY null in te are absent; tu carries them."""
    tu = [738045455, "tTESTBTC:TESTUSD", 1622169615771, 66635385225, 0.001, 38175,
          "EXCHANGE LIMIT", 39000, -1, -0.000002, "TESTBTC", 1622169615685]  # fmt: skip
    te = [*tu[:9], None, None, tu[11]]
    assert record("trades", tu)["fee"] == -0.000002
    assert record("trades", tu)["fee_currency"] == "TESTBTC"
    assert "fee" not in record("trades", te) and record("trades", te)["maker"] == -1


def test_margin_and_funding_info_keep_their_type_and_symbol() -> None:
    """miu base / sym and fiu sym: update_type, symbol, then the nested labels."""
    assert record("margin", ["base", [-13.0, 0, 49331.9, 49318.4, 27]]) == {
        "update_type": "base",
        "user_pl": -13.0,
        "user_swaps": 0,
        "margin_balance": 49331.9,
        "margin_net": 49318.4,
        "margin_min": 27,
    }
    assert record("margin", ["sym", "tETHUSD", [149361.1, 149639.2, 150067.6, 150067.6, 9]]) == {
        "update_type": "sym",
        "symbol": "tETHUSD",
        "tradable_balance": 149361.1,
        "gross_balance": 149639.2,
        "buy": 150067.6,
        "sell": 150067.6,
    }
    assert record("funding_info", ["sym", "fUSD", [0.0008, 0.0004, 1.4, 3.2]]) == {
        "update_type": "sym",
        "symbol": "fUSD",
        "yield_loan": 0.0008,
        "yield_lend": 0.0004,
        "duration_loan": 1.4,
        "duration_lend": 3.2,
    }


def test_notification_keeps_its_payload_as_sent() -> None:
    """n: NOTIFY_INFO (an order array) is kept as Bitfinex sent it; nulls dropped."""
    order = [1, None, 2, "tBTCUSD"]
    assert record("notifications", [None, "on-req", None, None, order, None, "SUCCESS", "ok"]) == {
        "type": "on-req",
        "notify_info": order,
        "status": "SUCCESS",
        "text": "ok",
    }


def test_short_arrays_give_the_keys_present() -> None:
    """A shorter array than documented is not an error: fewer keys."""
    assert record("orders", [5, None, 7]) == {"id": 5, "cid": 7}


@pytest.mark.parametrize(
    ("stream", "values", "error"),
    [
        ("orders", {"id": 1}, TypeError),
        ("margin", ["base", 5], TypeError),
        ("margin", ["sym", 5, [1]], TypeError),
        ("margin", ["other", [1]], ValueError),
        ("funding_info", ["base", [1]], ValueError),
        ("margin", [], IndexError),
    ],
)
def test_unusable_shapes_raise_for_the_core_to_report(
    stream: str, values: object, error: type[Exception]
) -> None:
    """Shapes that are not the layout raise; the core turns them into Malformed events."""
    with pytest.raises(error):
        record(stream, values)


def test_every_abbreviation_feeds_one_of_the_spec_streams() -> None:
    """SPEC §8: twelve streams and the abbreviations that feed each."""
    assert STREAMS == (
        "orders", "positions", "wallets", "trades", "funding_trades", "funding_offers",
        "funding_credits", "funding_loans", "balance", "margin", "funding_info", "notifications",
    )  # fmt: skip
    feeds: dict[str, list[str]] = {}
    for abbr, (stream, _) in ABBREVIATIONS.items():
        feeds.setdefault(stream, []).append(abbr)
    assert feeds == {
        "orders": ["os", "on", "ou", "oc"], "positions": ["ps", "pn", "pu", "pc"],
        "wallets": ["ws", "wu"], "trades": ["te", "tu"], "funding_trades": ["fte", "ftu"],
        "funding_offers": ["fos", "fon", "fou", "foc"],
        "funding_credits": ["fcs", "fcn", "fcu", "fcc"],
        "funding_loans": ["fls", "fln", "flu", "flc"], "balance": ["bu"], "margin": ["miu"],
        "funding_info": ["fiu"], "notifications": ["n"],
    }  # fmt: skip
    assert [a for a, (_, snap) in ABBREVIATIONS.items() if snap] == [
        "os", "ps", "ws", "fos", "fcs", "fls"
    ]  # fmt: skip
