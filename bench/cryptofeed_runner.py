"""cryptofeed 2.4.1 against the local emulator, writing Redis Streams (P2, bench/peer.py).

Runs inside cryptofeed's own venv (no bridge import). Follows shared PERFORMANCE.md: the
symbol cache is filled first so that no REST call is made, and ``connect()`` points every
connection at the emulator after the parent made it (``WSAsyncConn`` refuses ``ws://`` only
in ``__init__``). L2 books (P0, F0, len 25, as the bridge's default ``book``) and trades go to
``TradeStream``/``BookStream`` with snapshots after the first practically never.

    python cryptofeed_runner.py --url ws://127.0.0.1:PORT/ws/2 --redis-port N --symbols tBTCUSD,…
"""

from __future__ import annotations

import argparse

from cryptofeed import FeedHandler
from cryptofeed.backends.redis import BookStream, TradeStream
from cryptofeed.defines import BITFINEX, L2_BOOK, TRADES
from cryptofeed.exchanges import Bitfinex
from cryptofeed.symbols import Symbols


def normalized(symbol: str) -> str:
    """``tBTCUSD`` -> ``BTC-USD``, ``tAAVE:USD`` -> ``AAVE-USD`` (cryptofeed's names)."""
    pair = symbol[1:]
    base, quote = pair.split(":") if ":" in pair else (pair[:3], pair[3:])
    return f"{base}-{quote}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--symbols", required=True)
    parser.add_argument("--book-len", type=int, default=25)
    parser.add_argument("--log", default="cryptofeed.log")
    args = parser.parse_args()
    symbols = args.symbols.split(",")
    names = {normalized(s): s for s in symbols}
    Symbols.set(BITFINEX, names, {"instrument_type": {n: "spot" for n in names}})

    class LocalBitfinex(Bitfinex):  # type: ignore[misc]
        def connect(self):  # type: ignore[no-untyped-def]
            connections = super().connect()
            for connection, *_ in connections:
                connection.address = args.url
            return connections

    redis = {"host": "127.0.0.1", "port": args.redis_port}
    feed = LocalBitfinex(
        symbols=list(names),
        channels=[L2_BOOK, TRADES],
        number_of_price_points=args.book_len,
        callbacks={
            L2_BOOK: BookStream(key="cf:book", snapshot_interval=10**12, **redis),
            TRADES: TradeStream(key="cf:trades", **redis),
        },
    )
    handler = FeedHandler(config={"log": {"filename": args.log, "level": "WARNING"}})
    handler.add_feed(feed)
    handler.run()


if __name__ == "__main__":
    main()
