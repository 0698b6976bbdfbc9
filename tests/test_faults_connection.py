"""Connection faults: abrupt drops, a silent channel, a silent connection, a sequence gap.

Each test injects the fault into the emulator under a running worker and checks, entry by
entry, what reached the real redis-server (tests/scenario.py, Scenario.settle_and_check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from tests.conftest import wait_until
from tests.scenario import Scenario

GROUP = """
symbols = ["tBTCUSD", "tXRPBTC", "fUSD"]
channels = ["ticker", "trades", "book", "book:R0"]
"""
SHARDED = "channel_limit = 6\nchannel_timeout = 3\nconnection_timeout = 2\nping_interval = 0.5"


def streams_of(emulator: Any, conn: Any) -> set[str]:
    """The stream names a live emulator connection serves."""
    return {name for name in _names(emulator) if emulator.channel_ids(name, conn.conn_id)}


def _names(emulator: Any) -> list[str]:
    return [
        f"{ch}:{sym}" if not ch.startswith("book") else f"book:{sym}:{ch.split(':')[1]}"
        for sym in ("tBTCUSD", "tXRPBTC", "fUSD")
        for ch in ("ticker", "trades", "book:P0", "book:R0")
    ]


def test_abrupt_drop_of_one_connection_resets_only_its_streams(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A TCP reset on one of two connections: its streams get reset + a new epoch, only they."""
    # Given 12 channels sharded 6/6 over two connections
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP, bitfinex=SHARDED)
    scenario.start()
    victim, other = emulator.connections()
    dropped = streams_of(emulator, victim)
    assert len(dropped) == 6 and streams_of(emulator, other) == set(scenario.names) - dropped
    # When that connection is reset without a close frame
    emulator.drop(victim.conn_id)
    # Then each of its streams gets a reset and a second epoch, quickly; the others do not
    scenario.wait_epochs({n: 2 for n in dropped}, "a new epoch on the dropped streams", 10)
    scenario.settle_and_check()
    for name in dropped:
        reasons = scenario.resets(name)
        assert len(reasons) == 2 and reasons[0] == "worker started", reasons
        assert "receive" in reasons[1] or "closed" in reasons[1], reasons
    for name in set(scenario.names) - dropped:
        assert scenario.resets(name) == ["worker started"], name
        assert scenario.epoch_count(name) == 1
    wait_until(lambda: scenario.health().get("reconnects") == "1", 10, "reconnects = 1")


def test_abrupt_drop_of_every_connection_recovers_every_stream(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """All connections reset at once: every stream gets a reset and a fresh snapshot."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP, bitfinex=SHARDED)
    scenario.start()
    assert emulator.drop() == 2
    scenario.wait_epochs({n: 2 for n in scenario.names}, "a new epoch everywhere", 10)
    scenario.settle_and_check()
    assert all(len(scenario.resets(n)) == 2 for n in scenario.names)


def test_silent_channel_alone_is_resubscribed(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A channel with no data and no heartbeat is unsubscribed and subscribed again on the
    same connection; only its stream gets a reset and a new epoch."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    (conn,) = emulator.connections()
    chan = emulator.channel_id("book tXRPBTC P0")
    # When that one channel goes silent (no hb either) while the others carry on
    emulator.silence_channel(chan)
    scenario.wait_epochs({"book:tXRPBTC:P0": 2}, "the silent book resubscribed")
    # Then: same connection, an unsubscribe then a subscribe for it, one reset with the reason
    assert [c.conn_id for c in emulator.connections()] == [conn.conn_id]
    sent = [f.text for f in emulator.received_frames() if f.conn_id == conn.conn_id]
    assert f'{{"event":"unsubscribe","chanId":{chan}}}' in sent
    assert scenario.resets("book:tXRPBTC:P0")[1].startswith("channel silent for")
    scenario.settle_and_check()
    for name in scenario.names:
        assert scenario.epoch_count(name) == (2 if name == "book:tXRPBTC:P0" else 1), name


def test_silent_connection_is_dropped_and_reopened(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A connection that sends nothing, not even a pong, is closed and reopened; every stream
    on it gets a reset then a new epoch."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    (conn,) = emulator.connections()
    emulator.silence_connection(conn.conn_id)
    scenario.wait_epochs({n: 2 for n in scenario.names}, "new epochs after the silence", 20)
    assert [c.conn_id for c in emulator.connections()] != [conn.conn_id]
    assert any(reason.startswith("nothing received for") for reason in
               scenario.resets("ticker:tBTCUSD")), scenario.resets("ticker:tBTCUSD")  # fmt: skip
    scenario.settle_and_check()


def test_sequence_gap_reconnects(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A SEQ_ALL gap means lost frames: the connection is reopened and every stream on it
    gets a reset (naming the gap) and a fresh snapshot."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    emulator.skip_seq(count=3)
    scenario.wait_epochs({n: 2 for n in scenario.names}, "new epochs after the gap", 20)
    assert "sequence gap" in scenario.resets("trades:fUSD")[1]
    scenario.settle_and_check()
