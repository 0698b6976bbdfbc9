"""``bfx-bridge emulator`` (serve until SIGINT/SIGTERM) and ``bfx-bridge fault`` (inject a
fault into a running emulator through its HTTP control API, :mod:`bridge.emulator.control`).

::

    bfx-bridge emulator --port 8765 --control-port 8766
    bfx-bridge emulator --account testkey:testsecret   # auth accepts this pair (channel 0)
    bfx-bridge fault drop --conn 1                  # TCP reset, no close frame
    bfx-bridge fault silence --stream book:tBTCUSD:P0
    bfx-bridge fault maintenance on                 # 20060 + silence; "off": 20061
    bfx-bridge fault --control http://127.0.0.1:9000 connections
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import IO, Any
from urllib.parse import urlencode

import orjson

from bridge.emulator.faults import MALFORMED_KINDS
from bridge.emulator.server import Emulator, SentFrame
from bridge.errors import EXIT_FAILURE, EXIT_OK

__all__ = ["DEFAULT_CONTROL_URL", "configure_fault_parser", "configure_parser", "run", "run_fault"]

DEFAULT_CONTROL_URL = "http://127.0.0.1:8766"


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
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        type=_account,
        metavar="KEY:SECRET",
        help="accept auth with this API key and secret (repeatable); its channel 0 gets "
        "snapshots and scripted order, trade, wallet and position updates. Test credentials "
        "only: the command line is visible to other local users",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the fault control API on 127.0.0.1:PORT, 0 for any free port, for "
        "`bfx-bridge fault` (default: off; `bfx-bridge fault` expects 8766)",
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
        control_port=args.control_port,
        accounts=dict(args.account),
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _recorder(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        emulator.start()
        print(f"bfx-bridge emulator: serving {emulator.url} (Ctrl-C to stop)", file=sys.stderr)
        if emulator.control_url is not None:
            print(
                f"bfx-bridge emulator: fault control API on {emulator.control_url} "
                f"(bfx-bridge fault --control {emulator.control_url} ACTION)",
                file=sys.stderr,
            )
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if log_file is not None:
            log_file.close()
    return 0


def _account(text: str) -> tuple[str, str]:
    """``KEY:SECRET`` -> (key, secret); argparse reports the error without echoing them."""
    key, sep, secret = text.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError("write --account KEY:SECRET (both non-empty)")
    return key, secret


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


# -- bfx-bridge fault ------------------------------------------------------------------

# action -> (HTTP method, path, the argparse dests sent as query parameters of that name)
_REQUESTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "drop": ("POST", "/drop", ("conn",)),
    "silence": ("POST", "/silence", ("chan", "conn", "stream", "on")),
    "checksum": ("POST", "/checksum", ("chan", "stream", "count")),
    "malformed": ("POST", "/malformed", ("kind", "conn")),
    "seqgap": ("POST", "/seqgap", ("conn", "count")),
    "info": ("POST", "/info", ("code",)),
    "maintenance": ("POST", "/maintenance", ("on",)),
    "reject": ("POST", "/reject", ("status", "count")),
    "pause": ("POST", "/pause", ()),
    "resume": ("POST", "/resume", ()),
    "connections": ("GET", "/connections", ()),
    "faults": ("GET", "/faults", ()),
}


def configure_fault_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``[--control URL] ACTION [options]`` to ``parser`` (the ``fault`` sub-command)."""
    parser.add_argument(
        "--control",
        default=DEFAULT_CONTROL_URL,
        metavar="URL",
        help="the emulator's control API, as printed by `bfx-bridge emulator --control-port "
        "PORT` (default: %(default)s)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    drop = actions.add_parser("drop", help="reset connections abruptly: no close frame")
    drop.add_argument("--conn", type=int, help="only this connection (default: all)")
    silence = actions.add_parser("silence", help="send nothing on a channel or a connection")
    _target(silence, "--chan", "--conn", "--stream")
    silence.add_argument("--off", dest="on", action="store_false", help="end the silence")
    checksum = actions.add_parser("checksum", help="wrong cs values on a book channel")
    _target(checksum, "--chan", "--stream")
    checksum.add_argument("--count", type=int, default=1, help="how many (default: 1)")
    malformed = actions.add_parser("malformed", help="send one malformed frame")
    kinds = list(MALFORMED_KINDS)
    malformed.add_argument("kind", choices=kinds, metavar="KIND", help=", ".join(kinds))
    malformed.add_argument("--conn", type=int, help="only this connection (default: all)")
    seqgap = actions.add_parser("seqgap", help="skip SEQ_ALL numbers: a sequence gap")
    seqgap.add_argument("--conn", type=int, help="only this connection (default: all)")
    seqgap.add_argument("--count", type=int, default=1, help="numbers skipped (default: 1)")
    info = actions.add_parser("info", help="send an info event (20051, 20060, 20061…)")
    info.add_argument("code", type=int)
    maintenance = actions.add_parser("maintenance", help="on: 20060 + silence; off: 20061")
    maintenance.add_argument("on", choices=("on", "off"))
    reject = actions.add_parser("reject", help="refuse the next handshakes with HTTP STATUS")
    reject.add_argument("status", type=int, help="429, 503, 408…")
    reject.add_argument("--count", type=int, default=1, help="how many (default: 1)")
    actions.add_parser("pause", help="stop market data (heartbeats go on)")
    actions.add_parser("resume", help="market data again")
    actions.add_parser("connections", help="list connections and their channels")
    actions.add_parser("faults", help="print the fault log")


def _target(parser: argparse.ArgumentParser, *options: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    helps = {
        "--chan": "a chanId (see `bfx-bridge fault connections`)",
        "--conn": "a connection number",
        "--stream": "every channel of a stream name, e.g. book:tBTCUSD:P0",
    }
    for option in options:
        group.add_argument(option, type=str if option == "--stream" else int, help=helps[option])


def run_fault(args: argparse.Namespace) -> int:
    """Call the control API for ``args.action``; print its JSON reply. 0 if it succeeded."""
    method, path, names = _REQUESTS[args.action]
    params = {n: _param(getattr(args, n)) for n in names if getattr(args, n, None) is not None}
    url = args.control.rstrip("/") + path + ("?" + urlencode(params) if params else "")
    try:
        status, reply = _call(method, url)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", exc)
        print(
            f"bfx-bridge fault: cannot reach the emulator's control API at {args.control} "
            f"({reason}). Start the emulator with `bfx-bridge emulator --control-port PORT` "
            "and pass --control http://127.0.0.1:PORT (default port 8766).",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode())
    if status != 200:
        print(f"bfx-bridge fault: HTTP {status}: {reply.get('error', reply)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _param(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _call(method: str, url: str) -> tuple[int, dict[str, Any]]:
    """One request; the status and the JSON reply (error statuses included)."""
    request = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _json(exc.read())


def _json(data: bytes) -> dict[str, Any]:
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        return {"ok": False, "error": data.decode(errors="replace")[:500]}
    return reply
