"""The worker's hot path in one process, without sockets or threads: a quiet, repeatable
per-message cost to compare changes with (the P1 figure moves ±10 % between runs).

A frame log written by the emulator (``python bench/run.py --only P1 --quick --keep`` leaves
one as ``p1.frames`` in the kept directory) is replayed for one connection: its frames are
encoded as WebSocket frames and fed 256 KiB at a time through the real code the read loop
runs (:class:`~bridge.wsframes.FrameReader`, the connection's message handling, the core's
:meth:`~bridge.protocol.Protocol.feed`, the worker's event → entry step), and each batch of
entries is joined into one buffer as the writer does. Redis is not involved: this measures
our Python only.

    python bench/hotpath.py FRAMES [--connection N|all] [--profile]

With ``--connection all`` every connection of the log is replayed, one read of each in turn
(P6's frame logs: 1, 4 or 40 connections), so that the cost of many streams can be told
apart from the cost of many threads.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.connection import Connection  # noqa: E402
from bridge.protocol import Protocol  # noqa: E402
from bridge.streams import Entry, EpochSource, Stream  # noqa: E402
from bridge.subscription import Subscription  # noqa: E402
from bridge.worker import GC_THRESHOLDS, Worker  # noqa: E402
from bridge.wsframes import FrameReader  # noqa: E402

CHUNK = 262144


def load(path: Path) -> dict[str, list[bytes]]:
    """The frames the emulator sent, by connection, in order."""
    frames: dict[str, list[bytes]] = {}
    with path.open("rb") as log:
        for line in log:
            conn, _, text = line.rstrip(b"\n").partition(b"\t")
            frames.setdefault(conn.decode(), []).append(text)
    return frames


def subscriptions(frames: list[bytes]) -> list[Subscription]:
    """The subscriptions the log's ``subscribed`` events acknowledge."""
    subs = []
    for frame in frames:
        if not frame.startswith(b'{"event":"subscribed"'):
            continue
        ack: dict[str, Any] = orjson.loads(frame)
        if ack["channel"] == "book":
            subs.append(Subscription("book", ack["symbol"], ack["prec"], ack["freq"],
                                     int(ack["len"])))  # fmt: skip
        elif ack["channel"] in ("candles", "status"):
            subs.append(Subscription(ack["channel"], key=ack["key"]))
        else:
            subs.append(Subscription(ack["channel"], ack["symbol"]))
    return subs


def wire(frames: list[bytes]) -> list[bytes]:
    """The frames as a server writes them (unmasked text frames), cut into 256 KiB reads."""
    out = bytearray()
    for frame in frames:
        size = len(frame)
        if size < 126:
            out += bytes((0x81, size))
        elif size < 65536:
            out += bytes((0x81, 126)) + size.to_bytes(2, "big")
        else:
            out += bytes((0x81, 127)) + size.to_bytes(8, "big")
        out += frame
    return [bytes(out[i : i + CHUNK]) for i in range(0, len(out), CHUNK)]


class _Writer:
    """Stands for the publisher: joins each batch's commands as the writer thread would."""

    def __init__(self) -> None:
        self.entries = 0

    def put_all(self, entries: list[Entry]) -> None:
        b"".join(e.command or b"" for e in entries)
        self.entries += len(entries)


def _worker(subs: list[Subscription], writer: _Writer) -> Worker:
    """The worker's event -> entry step (its real method), without config, Redis or threads."""
    worker = Worker.__new__(Worker)
    worker.streams = {sub: Stream(f"bench:{sub.name}", EpochSource("bench"), 1_000_000)
                      for sub in subs}  # fmt: skip
    worker.publisher = writer  # type: ignore[assignment]
    worker._on_control = lambda conn, event, ts: None  # type: ignore[method-assign]
    return worker


def _connection(subs: list[Subscription], worker: Worker) -> Connection:
    """A connection's message handling (its real methods), without a socket or a thread."""
    conn = Connection.__new__(Connection)
    conn.protocol = Protocol(subs)
    conn.protocol.connect(0.0)
    conn.msgs = 0
    conn.on_events = worker._on_events
    return conn


def replay(connections: list[tuple[list[bytes], list[Subscription]]]) -> tuple[int, int]:
    """What the read loop does in Python with each read, with the real methods of the
    connection, the core and the worker; (messages, entries). Several connections are read
    in turn, one read each, as the read loop does when all are busy."""
    writer = _Writer()
    worker = _worker([sub for _, subs in connections for sub in subs], writer)
    readers = [(_connection(subs, worker), FrameReader()) for _, subs in connections]
    rounds = max(len(chunks) for chunks, _ in connections)
    for index in range(rounds):
        for (chunks, _), (conn, frames) in zip(connections, readers, strict=True):
            if index < len(chunks):
                now = time.monotonic()
                conn._dispatch(conn._messages(None, frames.feed(chunks[index]), now))  # type: ignore[arg-type]
    return sum(conn.msgs for conn, _ in readers), writer.entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frames", type=Path)
    parser.add_argument("--connection", default="1", help="which connection, or 'all'")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    logged = load(args.frames)
    chosen = sorted(logged, key=int) if args.connection == "all" else [args.connection]
    connections = [(wire(logged[c]), subscriptions(logged[c])) for c in chosen]
    channels = sum(len(subs) for _, subs in connections)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(replay, connections)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    best = float("inf")
    for _ in range(args.repeat):
        started = time.process_time()
        messages, entries = replay(connections)
        best = min(best, time.process_time() - started)
    print(f"{channels} channels on {len(connections)} connections, {messages:,} messages, "
          f"{entries:,} entries: "
          f"best of {args.repeat} {best:.3f} s CPU = {best / entries * 1e6:.2f} µs/entry, "
          f"{best / messages * 1e6:.2f} µs/message")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
