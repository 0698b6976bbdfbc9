"""Tests of bridge.subscription: channel syntax, requests, ack identity, stream names.

The requests are compared with the subscribe events of bitfinex-ws-v2.md §3.1 and the
identities with the real ``subscribed`` events quoted there.
"""

from __future__ import annotations

import pytest

from bridge.subscription import (
    Subscription,
    SubscriptionSyntaxError,
    identity_of,
    is_valid_symbol,
    parse_channel,
    parse_status,
)


@pytest.mark.parametrize(
    "symbol",
    ["tBTCUSD", "tTESTBTC:TESTUSD", "tAAVE:USD", "tBTCF0:USTF0", "fUSD", "fUST", "tDOGE:UST"],
)
def test_valid_symbols(symbol: str) -> None:
    """The §9 symbol forms are accepted."""
    assert is_valid_symbol(symbol)


@pytest.mark.parametrize(
    "symbol",
    ["", "BTCUSD", "btcusd", "tbtcusd", "tBTCUS", "tBTC:", "fusd", "f", "tBTC USD", "xUSD"],
)
def test_invalid_symbols(symbol: str) -> None:
    """Lower case, missing prefix, wrong length or separators are refused."""
    assert not is_valid_symbol(symbol)


def test_book_defaults_and_request() -> None:
    """`book` is P0/F0/25 and asks for len as a string, with subId = stream name."""
    sub = parse_channel("book", "tBTCUSD")
    assert sub == Subscription("book", "tBTCUSD", "P0", "F0", 25)
    assert sub.request() == {
        "event": "subscribe",
        "channel": "book",
        "symbol": "tBTCUSD",
        "prec": "P0",
        "freq": "F0",
        "len": "25",
        "subId": "book:tBTCUSD:P0",
    }
    assert sub.funding is False and sub.raw is False


def test_raw_book_request_and_properties() -> None:
    """`book:R0:F0:100` on a funding symbol is a raw funding book."""
    sub = parse_channel("book:R0:F0:100", "fUSD")
    assert sub.raw is True and sub.funding is True
    assert sub.request()["prec"] == "R0" and sub.request()["len"] == "100"
    assert sub.name == "book:fUSD:R0"


def test_candles_and_status_requests_use_key() -> None:
    """Candles and status subscribe by `key` (§3.1)."""
    assert parse_channel("candles:5m", "tBTCUSD").request() == {
        "event": "subscribe",
        "channel": "candles",
        "key": "trade:5m:tBTCUSD",
        "subId": "candles:tBTCUSD:5m",
    }
    assert parse_status("deriv:tBTCF0:USTF0").request() == {
        "event": "subscribe",
        "channel": "status",
        "key": "deriv:tBTCF0:USTF0",
        "subId": "status:deriv:tBTCF0:USTF0",
    }


def test_ticker_and_trades_requests() -> None:
    """Ticker and trades subscribe by `symbol` only."""
    assert parse_channel("ticker", "fUSD").request() == {
        "event": "subscribe",
        "channel": "ticker",
        "symbol": "fUSD",
        "subId": "ticker:fUSD",
    }
    assert parse_channel("trades", "tBTCUSD").name == "trades:tBTCUSD"


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ("candles", "trade:1m:fUSD:a30:p2:p30"),
        ("candles:1m:a30:p2:p30", "trade:1m:fUSD:a30:p2:p30"),
        ("candles:1h:p30", "trade:1h:fUSD:p30"),
        ("candles:1D:a10:p2:p7", "trade:1D:fUSD:a10:p2:p7"),
    ],
)
def test_funding_candle_keys(spec: str, key: str) -> None:
    """Funding candles carry the aggregate; plain `candles` gets a30:p2:p30 (§5.5)."""
    assert parse_channel(spec, "fUSD").key == key


@pytest.mark.parametrize(
    ("spec", "symbol", "words"),
    [
        ("orders", "tBTCUSD", "unknown channel"),
        ("ticker:x", "tBTCUSD", "takes no options"),
        ("book:P9", "tBTCUSD", "precision"),
        ("book:P0:F3", "tBTCUSD", "frequency"),
        ("book:P0:F0:30", "tBTCUSD", "LEN one of 1, 25, 100, 250"),
        ("book:R0:F0:250", "tBTCUSD", "LEN one of 1, 25, 100"),
        ("candles:2h", "tBTCUSD", "timeframe"),
        ("candles:1m:a30:p2:p30", "tBTCUSD", "funding symbols only"),
        ("candles:1m:x", "fUSD", "aNN:pNN:pNN"),
        ("ticker", "btcusd", "not a Bitfinex symbol"),
    ],
)
def test_channel_syntax_errors_say_what_to_write(spec: str, symbol: str, words: str) -> None:
    """Each bad channel raises SubscriptionSyntaxError explaining the accepted form."""
    with pytest.raises(SubscriptionSyntaxError) as info:
        parse_channel(spec, symbol)
    assert words in str(info.value)


def test_status_keys() -> None:
    """deriv:SYMBOL and liq:global parse; anything else is refused."""
    assert parse_status("liq:global") == Subscription("status", key="liq:global")
    assert parse_status("deriv:tBTCF0:USTF0").symbol == "tBTCF0:USTF0"
    for bad in ("liq:local", "deriv:fUSD", "deriv:", "foo:bar"):
        with pytest.raises(SubscriptionSyntaxError):
            parse_status(bad)


@pytest.mark.parametrize(
    ("sub", "event"),
    [
        (
            parse_channel("ticker", "tBFTUSD"),
            {
                "event": "subscribed",
                "channel": "ticker",
                "chanId": 232949,
                "symbol": "tBFTUSD",
                "pair": "BFTUSD",
            },
        ),
        (
            parse_channel("book:P0:F0:100", "tTESTBTC:TESTUSD"),
            {
                "event": "subscribed",
                "channel": "book",
                "chanId": 232957,
                "symbol": "tTESTBTC:TESTUSD",
                "prec": "P0",
                "freq": "F0",
                "len": "100",
                "pair": "TESTBTC:TESTUSD",
            },
        ),
        (
            parse_channel("book", "fBTC"),
            {
                "event": "subscribed",
                "channel": "book",
                "chanId": 106275,
                "symbol": "fBTC",
                "prec": "P0",
                "freq": "F0",
                "len": "25",
                "currency": "BTC",
            },
        ),
        (
            parse_channel("trades", "fUSD"),
            {
                "event": "subscribed",
                "channel": "trades",
                "chanId": 339521,
                "symbol": "fUSD",
                "currency": "USD",
            },
        ),
        (
            parse_channel("candles", "tBTCUSD"),
            {
                "event": "subscribed",
                "channel": "candles",
                "chanId": 343351,
                "key": "trade:1m:tBTCUSD",
            },
        ),
        (
            parse_status("deriv:tBTCF0:USTF0"),
            {
                "event": "subscribed",
                "channel": "status",
                "chanId": 335856,
                "key": "deriv:tBTCF0:USTF0",
            },
        ),
        (
            parse_channel("ticker", "tBTCUSD"),
            {"event": "subscribed", "channel": "ticker", "chanId": 1, "pair": "BTCUSD"},
        ),
        (
            parse_channel("book", "tETHUSD"),
            {
                "event": "subscribed",
                "channel": "book",
                "chanId": 10092,
                "symbol": "tETHUSD",
                "prec": "P0",
                "freq": "F0",
                "len": 25,
                "subId": 123,
                "pair": "ETHUSD",
            },
        ),
    ],
)
def test_identity_of_real_acks_matches_the_subscription(
    sub: Subscription, event: dict[str, object]
) -> None:
    """A real `subscribed` event (§3.1) has the identity of the subscription it answers."""
    assert identity_of(event) == sub.identity()


def test_identities_differ_between_variants() -> None:
    """Different precisions, lengths and channels have different identities."""
    subs = [
        parse_channel("book", "tBTCUSD"),
        parse_channel("book:P1", "tBTCUSD"),
        parse_channel("book:P0:F0:100", "tBTCUSD"),
        parse_channel("ticker", "tBTCUSD"),
        parse_channel("trades", "tBTCUSD"),
        parse_channel("candles", "tBTCUSD"),
        parse_channel("candles:5m", "tBTCUSD"),
    ]
    assert len({s.identity() for s in subs}) == len(subs)


def test_str_is_the_stream_name() -> None:
    """str(sub) is its stream name."""
    assert str(parse_channel("candles:5m", "tTESTBTC:TESTUSD")) == "candles:tTESTBTC:TESTUSD:5m"
