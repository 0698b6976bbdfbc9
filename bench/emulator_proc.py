"""The benchmark's emulator process: an :class:`~bridge.emulator.Emulator` driven over pipes.

``python bench/emulator_proc.py --log FILE [options]`` starts the emulator on a free port,
prints one JSON line ``{"url": …, "control_url": …, "pid": …}`` and then answers one JSON
line on stdout for each JSON command line on stdin (``{"cmd": NAME, …}``):

==================  ==========================================================================
``burst``           ``entries``: render and write a burst (:func:`bridge.emulator.burst.burst`)
``paced``           ``rate``, ``seconds``, ``out``: a paced feed; send records go to ``out``
``channels``        every connection's subscribed channels and flags
``drop``            TCP reset of every connection (:meth:`Emulator.drop`); ``t`` = wall time
``pause``           no market ticks (heartbeats go on) / ``resume``: ticks again
``flush``           flush the frame log file
``stop``            stop the emulator and exit
==================  ==========================================================================

Every frame sent is appended to the frame log as ``CONN<TAB>TEXT`` lines (buffered; flushed
by ``flush`` and at exit), for the entry-by-entry checks of P7. Running in its own process,
the emulator takes no CPU from the process being measured, nor it from the emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.emulator import Emulator, SentFrame  # noqa: E402
from bridge.emulator.burst import burst, paced  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--log", required=True, help="frame log file (CONN<TAB>TEXT lines)")
    parser.add_argument("--tick", type=float, default=0.1, help="market tick interval (s)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval (s)")
    parser.add_argument("--updates", default="1,3", help="book updates/trades per tick: LO,HI")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--paused", action="store_true", help="start with the market paused")
    args = parser.parse_args()
    low, high = (int(x) for x in args.updates.split(","))
    log = open(args.log, "w", buffering=1 << 20, encoding="utf-8")  # noqa: SIM115
    lock = threading.Lock()

    def sink(frame: SentFrame) -> None:
        if frame.direction == "sent":
            with lock:
                log.write(f"{frame.conn_id}\t{frame.text}\n")

    emulator = Emulator(
        port=0,
        heartbeat_interval=args.heartbeat,
        tick_interval=args.tick,
        connect_limit=None,
        seed=args.seed,
        updates_per_tick=(low, high),
        log_frames=False,
        frame_sink=sink,
        control_port=0,
    )
    emulator.start()
    if args.paused:
        emulator.pause()
    reply({"url": emulator.url, "control_url": emulator.control_url, "pid": os.getpid()})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if command["cmd"] == "stop":
                reply({"ok": True})
                break
            try:
                reply({"ok": True, **handle(emulator, command, log, lock)})
            except Exception as exc:  # the bench reports it; the emulator stays up
                reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        emulator.stop()
        log.close()
    return 0


def handle(
    emulator: Emulator, command: dict[str, Any], log: IO[str], lock: threading.Lock
) -> dict[str, Any]:
    """Run one command; the reply's fields."""
    name = command["cmd"]
    if name == "burst":
        result = burst(emulator, int(command["entries"]))
        return {
            "frames": result.frames,
            "bytes": result.bytes,
            "entries": result.entries,
            "connections": result.connections,
            "rounds": result.rounds,
            "render_seconds": result.render_seconds,
            "t0": result.t0,
            "t1": result.t1,
            "complete": result.complete,
            "frames_per_second": result.frames_per_second,
        }
    if name == "paced":
        sent = paced(emulator, float(command["rate"]), float(command["seconds"]))
        with open(command["out"], "w", encoding="utf-8") as out:
            for s in sent:
                out.write(f"{s.conn_id}\t{s.chan_id}\t{s.stream}\t{s.entries}\t{s.t_ns}\n")
        span = (sent[-1].t_ns - sent[0].t_ns) / 1e9 if len(sent) > 1 else 0.0
        return {"sent": len(sent), "seconds": span}
    if name == "channels":
        return {"connections": [c.describe() for c in emulator.connections()]}
    if name == "drop":
        dropped = emulator.drop()
        return {"dropped": dropped, "t": time.time()}
    if name == "pause":
        emulator.pause()
        return {}
    if name == "resume":
        emulator.resume()
        return {}
    if name == "flush":
        with lock:
            log.flush()
        return {}
    raise ValueError(f"unknown command {name!r}")


def reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
