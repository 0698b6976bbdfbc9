"""The ``bfx-bridge`` command line: worker, tail, emulator (and more, see ``--help``).

Exit codes are named in :mod:`bridge.errors`: 0 ok, 1 failure, 2 bad configuration,
3 could not boot.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import orjson
import redis

from bridge import __version__
from bridge.config import Config, load
from bridge.errors import EXIT_BOOT, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError
from bridge.log import redact, setup
from bridge.streams import decode_fields

__all__ = ["build_parser", "main"]

log = logging.getLogger("bridge")

DESCRIPTION = """\
Keeps Bitfinex WebSocket v2 connections alive and republishes every public channel,
normalised, onto Redis Streams (one stream per channel and symbol)."""

EPILOG = """\
examples:
  bfx-bridge worker -c bridge.toml --group majors   run one symbol group in the foreground
  bfx-bridge tail bfx:trades:tBTCUSD                 print a stream's entries as JSON lines
  bfx-bridge emulator --port 8765                    a local Bitfinex for tests and demos
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="bfx-bridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bfx-bridge {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        help="run one symbol group in the foreground",
        description="Run one symbol group in the foreground: its Bitfinex connections, "
        "its streams and its Redis writer. SIGTERM or SIGINT stops it cleanly: it "
        "unsubscribes, writes a reset on every stream, flushes to Redis and exits 0.",
    )
    _config_arg(worker)
    worker.add_argument("--group", required=True, metavar="NAME", help="the [[groups]] name")
    worker.set_defaults(handler=_cmd_worker)

    tail = commands.add_parser(
        "tail",
        help="print a stream's entries as JSON lines",
        description="Print the entries of one stream as JSON lines, msgpack data decoded: "
        "new entries as they arrive (like tail -f), or the last N with --last N.",
    )
    tail.add_argument("stream", metavar="STREAM", help="full key, e.g. bfx:book:tBTCUSD:P0")
    tail.add_argument("--redis", metavar="URL", help="Redis URL (default: from -c, or local)")
    tail.add_argument("-c", "--config", metavar="FILE", help="take the Redis URL from FILE")
    tail.add_argument("--last", type=int, default=0, metavar="N", help="start with the last N")
    tail.add_argument("--count", type=int, default=0, metavar="N", help="exit after N entries")
    tail.set_defaults(handler=_cmd_tail)

    from bridge.emulator import configure_parser, run

    emulator = commands.add_parser(
        "emulator",
        help="serve a local Bitfinex-compatible WS v2 endpoint",
        description="Serve a Bitfinex-compatible WebSocket v2 endpoint with synthetic but "
        "consistent data for any symbol (books with valid checksums, trades, tickers, "
        "candles, status). Point [bitfinex] url at ws://HOST:PORT/ws/2.",
    )
    configure_parser(emulator)
    emulator.set_defaults(handler=lambda args: run(args))
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="TOML config file")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bfx-bridge`` and ``python -m bridge``; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup(args.log_level, getattr(args, "group", "") or "")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"bfx-bridge: configuration refused: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    from bridge.worker import Worker

    config = load(args.config)
    group = config.group(args.group)
    try:
        worker = Worker(config, group)
    except (OSError, ValueError, redis.RedisError) as exc:
        print(
            f"bfx-bridge: worker {group.name} could not start: {redact(str(exc))}", file=sys.stderr
        )
        return EXIT_BOOT
    return worker.run()


def _redis_url(args: argparse.Namespace) -> str:
    if args.redis:
        return str(args.redis)
    if args.config:
        config: Config = load(args.config)
        return str(config["redis.url"])
    return "redis://127.0.0.1:6379/0"


def _cmd_tail(args: argparse.Namespace) -> int:
    url = _redis_url(args)
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    out = sys.stdout.buffer
    seen = 0
    try:
        last_id: Any = "$"
        if args.last > 0:
            rows: Any = client.xrevrange(args.stream, count=args.last)
            for entry_id, fields in reversed(rows):
                seen += _print_entry(out, entry_id, fields)
                last_id = entry_id
                if args.count and seen >= args.count:
                    return EXIT_OK
        while True:
            reply: Any = client.xread({args.stream: last_id}, block=1000, count=100)
            for _, batch in reply or []:
                for entry_id, fields in batch:
                    seen += _print_entry(out, entry_id, fields)
                    last_id = entry_id
                    if args.count and seen >= args.count:
                        return EXIT_OK
    except redis.ConnectionError as exc:
        print(f"bfx-bridge tail: cannot reach Redis at {redact(url)}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_OK


def _print_entry(out: BinaryIO, entry_id: bytes, fields: dict[bytes, bytes]) -> int:
    record = {"id": entry_id.decode(), **decode_fields(fields)}
    line = orjson.dumps(record, default=_fallback, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    out.write(line)
    out.flush()
    return 1


def _fallback(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)
