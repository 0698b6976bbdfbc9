"""Server-side faults: info 20051, maintenance 20060/20061, checksum mismatch, malformed frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from bridge.emulator import MALFORMED_KINDS
from tests.conftest import wait_until
from tests.scenario import Scenario

GROUP = """
symbols = ["tBTCUSD", "tXRPBTC", "fUSD"]
channels = ["ticker", "trades", "book", "book:R0", "candles"]
"""


def test_info_20051_reconnects_and_resubscribes_everything(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Info 20051 (server restart): the worker reconnects; every stream: reset + new epoch."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    (before,) = emulator.connections()
    assert emulator.send_info(20051) == 1
    scenario.wait_epochs({n: 2 for n in scenario.names}, "new epochs after 20051", 20)
    (after,) = emulator.connections()
    assert after.conn_id != before.conn_id
    assert "20051" in scenario.resets("book:fUSD:P0")[1]
    scenario.settle_and_check()


def test_maintenance_is_silence_without_churn_then_everything_is_resubscribed(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """20060: health `maintenance`, silence is no error (no resubscribe, no reconnect);
    20061: every channel resubscribed (reset + new epoch), health back to ok."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    wait_until(lambda: scenario.health().get("status") == "ok", 20, "status ok")
    (conn,) = emulator.connections()
    subscribes_before = _subscribes(emulator)
    # When maintenance starts and lasts past the channel timeout (3 s)
    emulator.maintenance_start()
    seen = wait_until(lambda: _with_status(scenario, "maintenance"), 10, "maintenance")
    # ... and the worker has reported on itself for 4 s more (> the channel timeout)
    later = wait_until(
        lambda: _reported_since(scenario, int(seen["updated"]) + 4000), 20, "4 s of maintenance"
    )
    assert later["status"] == "maintenance"
    # Then nothing was resubscribed nor reconnected during it
    assert _subscribes(emulator) == subscribes_before
    assert [c.conn_id for c in emulator.connections()] == [conn.conn_id]
    assert scenario.epoch_counts() == {n: 1 for n in scenario.names}
    # When it ends, every channel is resubscribed on the same connection
    emulator.maintenance_end()
    scenario.wait_epochs({n: 2 for n in scenario.names}, "new epochs after 20061", 20)
    wait_until(lambda: scenario.health().get("status") == "ok", 20, "status ok again")
    assert [c.conn_id for c in emulator.connections()] == [conn.conn_id]
    assert all(scenario.resets(n)[1] == "maintenance ended (20061)" for n in scenario.names)
    scenario.settle_and_check()


def _subscribes(emulator: Any) -> int:
    return sum('"event":"subscribe"' in f.text for f in emulator.received_frames())


def _with_status(scenario: Scenario, status: str) -> dict[str, str] | None:
    health = scenario.health()
    return health if health.get("status") == status else None


def _reported_since(scenario: Scenario, ms: int) -> dict[str, str] | None:
    """The health hash once its `updated` time has passed ``ms``."""
    health = scenario.health()
    return health if int(health.get("updated", 0)) >= ms else None


def test_checksum_mismatch_resets_and_resubscribes_that_book_alone(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A wrong `cs` on one book: that book alone gets reset + a new epoch, no reconnect,
    checksum_errors counted, and the rebuilt book equals the server's."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    (conn,) = emulator.connections()
    emulator.corrupt_checksum(emulator.channel_id("book tXRPBTC P0"))
    scenario.wait_epochs({"book:tXRPBTC:P0": 2}, "the book resubscribed")
    assert scenario.resets("book:tXRPBTC:P0")[1].startswith("checksum mismatch")
    wait_until(lambda: scenario.health().get("checksum_errors") == "1", 10, "checksum_errors")
    assert [c.conn_id for c in emulator.connections()] == [conn.conn_id]
    scenario.settle_and_check()
    for name in scenario.names:
        assert scenario.epoch_count(name) == (2 if name == "book:tXRPBTC:P0" else 1), name


def test_malformed_frames_are_counted_never_fatal_no_reconnect_no_reset(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Invalid JSON, unknown event, unknown chanId, garbage, empty array, hb on an unknown
    chanId: each counted in `malformed`; the connection and every stream carry on."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, GROUP)
    scenario.start()
    (conn,) = emulator.connections()
    for kind in MALFORMED_KINDS:
        emulator.send_malformed(kind)
    wait_until(
        lambda: int(scenario.health().get("malformed", 0)) >= len(MALFORMED_KINDS),
        10,
        "every malformed frame counted",
    )
    assert [c.conn_id for c in emulator.connections()] == [conn.conn_id]
    scenario.settle_and_check()
    assert scenario.epoch_counts() == {n: 1 for n in scenario.names}
    assert int(scenario.health()["malformed"]) == len(MALFORMED_KINDS)
    assert scenario.worker is not None and "malformed frame" in scenario.worker.output()


def test_health_leaves_maintenance_when_the_connection_comes_back_without_20061(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Maintenance ended while the connection was down (20061 never heard): once the worker
    is reconnected and subscribed, health is ok again, not stuck in maintenance."""
    scenario = Scenario(r, prefix, emulator, spawn, tmp_path, 'symbols = ["tBTCUSD"]\n'
                        'channels = ["ticker", "book"]\n')  # fmt: skip
    scenario.start()
    wait_until(lambda: _with_status(scenario, "ok"), 20, "status ok")
    emulator.maintenance_start()
    wait_until(lambda: _with_status(scenario, "maintenance"), 10, "maintenance")
    emulator.drop()  # the connection goes down during maintenance …
    emulator.maintenance_end()  # … and maintenance ends while nobody listens
    scenario.wait_epochs({n: 2 for n in scenario.names}, "new epochs after the reconnect", 30)
    wait_until(lambda: _with_status(scenario, "ok"), 20, "status ok after the reconnect")
    scenario.settle_and_check()
