"""End to end: a worker subprocess, the emulator over real WebSockets, a real redis-server."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import redis

from bridge import records
from tests.conftest import wait_until, write_config
from tests.feedcheck import (
    assert_well_formed,
    epochs,
    expected_entries,
    read_stream,
    rebuild_book,
)

SYMBOLS = ["tBTCUSD", "tXRPBTC", "fUSD"]  # tXRPBTC: prices below 1e-6, e-notation on the wire
CHANNELS = ["ticker", "trades", "book", "book:R0", "candles"]
STATUS = ["deriv:tBTCF0:USTF0", "liq:global"]
GROUP = f"""
[[groups]]
name = "majors"
symbols = {SYMBOLS!r}
channels = {CHANNELS!r}
status = {STATUS!r}
""".replace("'", '"')


def stream_names() -> list[str]:
    names = []
    for symbol in SYMBOLS:
        funding = symbol.startswith("f")
        names += [f"ticker:{symbol}", f"trades:{symbol}", f"book:{symbol}:P0", f"book:{symbol}:R0"]
        names.append(f"candles:{symbol}:1m" + (":a30:p2:p30" if funding else ""))
    return names + [f"status:{key}" for key in STATUS]


def snapshots(r: redis.Redis, prefix: str, names: list[str]) -> dict[str, int]:
    """Number of snapshot entries per stream."""
    return {
        name: sum(e["kind"] == "snapshot" for e in read_stream(r, f"{prefix}:{name}"))
        for name in names
    }


def test_every_stream_equals_what_the_emulator_sent(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Every public channel lands in Redis entry by entry as sent: one epoch, contiguous seq."""
    # Given a worker for three symbols (one funding) with every channel and both status keys
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUP)
    worker = spawn("worker", "-c", str(config), "--group", "majors")
    names = stream_names()
    # When the feed has run for a while and then pauses
    wait_until(lambda: all(snapshots(r, prefix, names).values()), 30, "a snapshot on every stream")
    wait_until(lambda: r.xlen(f"{prefix}:book:tXRPBTC:P0") > 60, 30, "book updates")
    emulator.pause()
    expected = expected_entries(emulator.sent_frames())
    assert sorted(expected) == sorted(names)

    def caught_up() -> bool:
        return all(
            len([e for e in read_stream(r, f"{prefix}:{n}") if e["kind"] != "reset"])
            >= len(expected[n])
            for n in names
        )

    wait_until(caught_up, 30, "Redis to hold every entry the emulator sent")
    # Then every stream is: reset, snapshot, updates, equal to the frames, in order
    for name in names:
        entries = read_stream(r, f"{prefix}:{name}")
        assert entries[0]["kind"] == "reset", name
        assert_well_formed(entries)
        (epoch,) = epochs(entries)
        assert [(e["kind"], e["data"]) for e in epoch] == expected[name], name
        assert [e["seq"] for e in epoch] == list(range(len(epoch)))
        assert all(isinstance(e["ts"], int) and e["ts"] > 1.6e12 for e in epoch)
        assert all("mts" in e for e in epoch), f"{name}: TIMESTAMP flag gives every entry mts"
        if name.startswith("trades:"):
            ids = [t["id"] for t in epoch[0]["data"]] + [e["data"]["id"] for e in epoch[1:]]
            assert len(ids) == len(set(ids)), f"{name}: a trade published twice"
    # And every book rebuilt from its stream equals the emulator's book
    for symbol in SYMBOLS:
        funding = symbol.startswith("f")
        for prec in ("P0", "R0"):
            (epoch,) = epochs(read_stream(r, f"{prefix}:book:{symbol}:{prec}"))
            rebuilt = rebuild_book(epoch, raw=prec == "R0", funding=funding)
            make = records.raw_order if prec == "R0" else records.book_level
            server = [make(e, funding) for e in emulator.book(symbol, prec, 25)]
            assert sorted(rebuilt.values(), key=repr) == sorted(server, key=repr), symbol
    assert worker.popen.poll() is None, worker.output()


def test_restarted_worker_resets_every_stream_then_starts_a_new_epoch(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A worker killed and restarted writes reset then a snapshot of a new epoch everywhere."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUP)
    names = stream_names()
    first = spawn("worker", "-c", str(config), "--group", "majors")
    wait_until(lambda: all(snapshots(r, prefix, names).values()), 30, "first snapshots")
    # When the worker is killed without a chance to clean up, and started again
    first.signal(signal.SIGKILL)
    first.wait(10)
    lengths = {n: r.xlen(f"{prefix}:{n}") for n in names}
    spawn("worker", "-c", str(config), "--group", "majors")
    wait_until(lambda: all(v == 2 for v in snapshots(r, prefix, names).values()), 30, "restart")
    # Then each stream continues with a reset and a snapshot of a new epoch
    for name in names:
        entries = read_stream(r, f"{prefix}:{name}")
        after = entries[lengths[name] :]
        assert after[0]["kind"] == "reset", (name, after[0])
        assert after[0]["data"] == {"reason": "worker started"}
        first_epoch, second_epoch = epochs(entries)
        assert first_epoch[0]["epoch"] != second_epoch[0]["epoch"]
        assert_well_formed(entries)


def test_sigterm_stops_the_worker_cleanly(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """SIGTERM: the worker unsubscribes, writes a reset on every stream, exits 0."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUP)
    names = stream_names()
    worker = spawn("worker", "-c", str(config), "--group", "majors")
    wait_until(lambda: all(snapshots(r, prefix, names).values()), 30, "snapshots")
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output()
    for name in names:
        entries = read_stream(r, f"{prefix}:{name}")
        assert entries[-1]["kind"] == "reset", name
        assert entries[-1]["data"] == {"reason": "worker stopped"}
        assert_well_formed(entries)

    def unsubscribed() -> set[int]:
        frames = emulator.received_frames()
        return {orjson.loads(f.text)["chanId"] for f in frames if '"unsubscribe"' in f.text}

    # The emulator reads the worker's last frames on its own thread: poll for them.
    subscribed = {
        orjson.loads(f.text)["chanId"]
        for f in emulator.sent_frames()
        if '"event":"subscribed"' in f.text
    }
    wait_until(lambda: unsubscribed() == subscribed, 10, "an unsubscribe for every channel")
