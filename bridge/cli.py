"""The ``bfx-bridge`` command line: worker, tail, emulator (and more, see ``--help``).

Exit codes are named in :mod:`bridge.errors`: 0 ok, 1 failure, 2 bad configuration,
3 could not boot.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

import orjson
import redis

from bridge import __version__
from bridge.config import Config, load
from bridge.embedded import EMBEDDED, EmbeddedRedis, running_url
from bridge.errors import EXIT_BOOT, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, BridgeError, ConfigError
from bridge.log import redact, setup
from bridge.streams import decode_fields

__all__ = ["build_parser", "main"]

log = logging.getLogger("bridge")

DESCRIPTION = """\
Keeps Bitfinex WebSocket v2 connections alive and republishes every public channel,
normalised, onto Redis Streams (one stream per channel and symbol)."""

EPILOG = """\
examples:
  bfx-bridge demo                                    try it: no internet or Redis needed
  bfx-bridge run -c bridge.toml                      one worker per group, supervised
  bfx-bridge status -c bridge.toml                   health of every group (exit 0 if ok)
  bfx-bridge worker -c bridge.toml --group majors   run one symbol group in the foreground
  bfx-bridge tail bfx:trades:tBTCUSD                 print a stream's entries as JSON lines
  bfx-bridge emulator --port 8765                    a local Bitfinex for tests and demos
  bfx-bridge fault drop                              reset every emulator connection
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

    supervise = commands.add_parser(
        "run",
        help="supervise one worker process per group",
        description="Start one worker process per configured group, restart a worker that "
        "dies (exponential backoff with jitter, capped), and on SIGTERM or SIGINT stop "
        "every worker in order and exit 0.",
    )
    _config_arg(supervise)
    supervise.set_defaults(handler=_cmd_run)

    status = commands.add_parser(
        "status",
        help="show every group's health; exit 0 only if all are ok",
        description="One row per configured group from its health key in Redis. Exit code 0 "
        "only if every group has a live key with status ok (usable as a Kubernetes exec "
        "probe or a Docker HEALTHCHECK), 1 otherwise.",
    )
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="print JSON with per-stream detail")
    status.add_argument("--group", metavar="NAME", help="only this group")
    status.set_defaults(handler=_cmd_status)

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

    demo = commands.add_parser(
        "demo",
        help="emulator + embedded Redis + the bridge, with a live view",
        description="The first command to try: starts a local Bitfinex emulator and an "
        "embedded Redis (no internet, no Redis install needed), runs the bridge on a built-in "
        "example config, and shows a live view of every stream and of health until Ctrl-C.",
    )
    demo.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    demo.set_defaults(handler=_cmd_demo)

    from bridge.emulator import configure_fault_parser, configure_parser, run_fault
    from bridge.emulator import run as run_emulator

    emulator = commands.add_parser(
        "emulator",
        help="serve a local Bitfinex-compatible WS v2 endpoint",
        description="Serve a Bitfinex-compatible WebSocket v2 endpoint with synthetic but "
        "consistent data for any symbol (books with valid checksums, trades, tickers, "
        "candles, status). Point [bitfinex] url at ws://HOST:PORT/ws/2.",
    )
    configure_parser(emulator)
    emulator.set_defaults(handler=run_emulator)

    fault = commands.add_parser(
        "fault",
        help="inject a fault into a running emulator",
        description="Inject a fault into an emulator started with --control-port: drop "
        "connections, silence a channel or a connection, corrupt a checksum, send malformed "
        "frames or info codes, start/end maintenance, refuse handshakes, pause the market.",
    )
    configure_fault_parser(fault)
    fault.set_defaults(handler=run_fault)
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
    except BridgeError as exc:
        print(f"bfx-bridge: {redact(str(exc))}", file=sys.stderr)
        return EXIT_BOOT
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


@contextmanager
def _loaded(path: str) -> Iterator[Config]:
    """Load the config; with ``url = "embedded"``, start the embedded Redis around the run."""
    config = load(path)
    if config["redis.url"] != EMBEDDED:
        yield config
        return
    with EmbeddedRedis() as server:
        log.info("= embedded redis-server on %s (data in %s)", server.url, server.directory)
        os.environ["BFX_BRIDGE_REDIS_URL"] = server.url  # the workers inherit it
        yield load(path)


def _client_url(config: Config) -> str:
    """The Redis URL to read from; for "embedded", the one a running bridge started."""
    url = str(config["redis.url"])
    if url == EMBEDDED:
        running = running_url()
        if running is None:
            raise BridgeError("no embedded Redis is running (start the bridge first)")
        return running
    return url


def _cmd_run(args: argparse.Namespace) -> int:
    from bridge.supervisor import Supervisor

    with _loaded(args.config) as config:
        return Supervisor(config, args.config).run()


def _cmd_status(args: argparse.Namespace) -> int:
    from bridge.status import print_status, read_status

    config = load(args.config, credentials=False)  # status never authenticates
    groups = [config.group(args.group)] if args.group else list(config.groups)
    try:
        rows = read_status(_client_url(config), config["redis.prefix"], [g.name for g in groups])
    except (redis.RedisError, BridgeError) as exc:
        url = redact(config["redis.url"])
        print(f"bfx-bridge status: cannot read health from Redis at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print_status(rows, as_json=args.json)
    return EXIT_OK if rows and all(r["ok"] for r in rows) else EXIT_FAILURE


def _cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    return run_demo(args.duration)


def _redis_url(args: argparse.Namespace) -> str:
    if args.redis:
        return str(args.redis)
    if args.config:
        return _client_url(load(args.config, credentials=False))
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
