"""``bfx-bridge emulator``: serve the emulator in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO

import orjson

from bridge.emulator.server import Emulator, SentFrame

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (the ``emulator`` sub-command)."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="interval of the heartbeats sent on every channel (default: %(default)s)",
    )
    parser.add_argument(
        "--tick",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="interval between market updates on every channel (default: %(default)s)",
    )
    parser.add_argument(
        "--channel-limit",
        type=int,
        default=25,
        metavar="N",
        help="channels per connection before 'subscribe: limit' (default: %(default)s)",
    )
    parser.add_argument(
        "--connect-limit",
        type=int,
        default=20,
        metavar="N",
        help="connections accepted per minute before HTTP 429; 0 turns the limit off "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed the synthetic data so that runs are reproducible (default: random)",
    )
    parser.add_argument(
        "--log",
        metavar="FILE",
        default=None,
        help='append every frame sent as a JSON line {"conn": N, "t": UNIX_SECONDS, "text": …}',
    )


def run(args: argparse.Namespace) -> int:
    """Serve with the options of :func:`configure_parser` until SIGINT/SIGTERM; return 0."""
    log_file: IO[str] | None = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115
    emulator = Emulator(
        args.host,
        args.port,
        heartbeat_interval=args.heartbeat,
        tick_interval=args.tick,
        channel_limit=args.channel_limit,
        connect_limit=(args.connect_limit, 60.0) if args.connect_limit > 0 else None,
        seed=args.seed,
        log_frames=False,
        frame_sink=_file_sink(log_file) if log_file else None,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _recorder(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        emulator.start()
        print(f"bfx-bridge emulator: serving {emulator.url} (Ctrl-C to stop)", file=sys.stderr)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if log_file is not None:
            log_file.close()
    return 0


def _recorder(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    """A signal handler that only records the signal (STYLE habit 7)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return handler


def _file_sink(file: IO[str]) -> Callable[[SentFrame], None]:
    """Write every sent frame as one JSON line, flushed at once."""

    def sink(entry: SentFrame) -> None:
        if entry.direction == "sent":
            line = {"conn": entry.conn_id, "t": time.time(), "text": entry.text}
            file.write(orjson.dumps(line).decode() + "\n")
            file.flush()

    return sink
