"""Redis faults: the server stops and comes back; a slow (paused) server."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.conftest import RedisServer, wait_until
from tests.feedcheck import read_stream
from tests.scenario import Scenario

GROUP = """
symbols = ["tBTCUSD", "tXRPBTC", "fUSD"]
channels = ["ticker", "trades", "book", "book:R0", "candles"]
"""
LOST = "entries lost while Redis was unavailable"


def test_short_outage_within_the_buffer_loses_and_duplicates_nothing(
    emulator: Any, redis_server: RedisServer, spawn: Any, tmp_path: Path
) -> None:
    """Redis stopped then restarted: the buffer is retried, nothing is lost or written twice."""
    r = redis_server.client()
    scenario = Scenario(r, "bfx", emulator, spawn, tmp_path, GROUP, redis_url=redis_server.url)
    scenario.start()
    # When Redis goes away for a while (less than the buffer holds) and comes back
    redis_server.stop()
    wait_until(lambda: "Redis unavailable" in scenario.worker.output(), 20, "the outage logged")
    redis_server.start()
    # Then every stream is one epoch, entry for entry what was sent
    scenario.settle_and_check()
    assert scenario.epoch_counts() == {name: 1 for name in scenario.names}
    wait_until(lambda: scenario.health().get("redis") == "ok", 10, "health redis ok")
    assert scenario.health()["dropped"] == "0"
    assert scenario.worker.popen.poll() is None


def test_outage_past_the_buffer_drops_oldest_then_resets_and_resnapshots(
    emulator: Any, redis_server: RedisServer, spawn: Any, tmp_path: Path
) -> None:
    """Past the bound the oldest entries are dropped and counted; each stream that lost
    entries gets a reset and a fresh snapshot once Redis is back; nothing else is lost."""
    r = redis_server.client()
    scenario = Scenario(r, "bfx", emulator, spawn, tmp_path, GROUP, redis_url=redis_server.url,
                        redis_extra="buffer = 200")  # fmt: skip
    scenario.start()
    before = {name: r.xlen(scenario.key(name)) for name in scenario.names}
    # When Redis stays away long enough for far more than 200 entries to arrive
    redis_server.stop()
    wait_until(lambda: "buffer full" in scenario.worker.output(), 30, "the buffer to overflow")
    redis_server.start()

    # Then the streams that lost entries have a reset saying so, then a new epoch
    def lost_streams() -> list[str]:
        return [n for n in scenario.names if LOST in scenario.resets(n)]

    wait_until(lambda: len(lost_streams()) >= 3, 30, "resets for lost entries")
    scenario.wait_epochs({n: 2 for n in lost_streams()}, "fresh snapshots after the loss")
    scenario.settle_and_check()
    wait_until(lambda: int(scenario.health().get("dropped", 0)) > 0, 10, "dropped counted")
    for name in lost_streams():
        entries = read_stream(r, scenario.key(name))
        # what landed before the outage is still there, untouched
        assert len(entries) > before[name]
    assert scenario.worker.popen.poll() is None


def test_paused_redis_back_pressures_instead_of_growing(
    emulator: Any, redis_server: RedisServer, spawn: Any, tmp_path: Path
) -> None:
    """A Redis that stops answering writes (CLIENT PAUSE) back-pressures the readers: the
    worker's memory stays flat, and once Redis answers again every stream is faithful."""
    r = redis_server.client()
    scenario = Scenario(r, "bfx", emulator, spawn, tmp_path, GROUP, redis_url=redis_server.url,
                        redis_extra="batch = 20")  # fmt: skip
    worker = scenario.start()
    rss_before = _rss_kb(worker.pid)
    # When Redis holds every write for four seconds
    r.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
    peak = rss_before
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:  # sample memory through the pause
        peak = max(peak, _rss_kb(worker.pid))
        time.sleep(0.05)
    # Then the readers waited for the writer, memory did not grow with the backlog
    wait_until(lambda: int(scenario.health().get("backpressure", 0)) > 0, 10, "back-pressure")
    assert peak - rss_before < 20_000, (rss_before, peak)
    scenario.settle_and_check()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_redis_refusing_writes_out_of_memory_buffers_without_a_subscribe_storm(
    emulator: Any, redis_server: RedisServer, spawn: Any, tmp_path: Path
) -> None:
    """OOM replies mean "not now": entries wait in the buffer (or are dropped past it and
    announced later), Bitfinex sees no resubscribe storm, health stops saying ok, and once
    Redis takes writes again every stream is faithful."""
    r = redis_server.client()
    scenario = Scenario(r, "bfx", emulator, spawn, tmp_path, GROUP, redis_url=redis_server.url,
                        redis_extra="buffer = 300")  # fmt: skip
    scenario.start()
    subscribes = _subscribes(emulator)
    # When Redis answers every write with OOM for a while
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", "1")
    wait_until(lambda: "OOM" in scenario.worker.output(), 20, "the OOM noticed")
    wait_until(lambda: "buffer full" in scenario.worker.output(), 30, "the buffer to overflow")
    # Then no resubscribe happened while Redis refused, and health is not ok
    assert _subscribes(emulator) == subscribes
    wait_until(lambda: scenario.health().get("status") != "ok", 15, "health not ok")
    r.config_set("maxmemory", "0")
    # And after it: streams that lost entries were reset once each and resnapshotted
    scenario.settle_and_check()
    assert _subscribes(emulator) - subscribes <= len(scenario.names)
    assert scenario.worker.popen.poll() is None


def _subscribes(emulator: Any) -> int:
    return sum('"event":"subscribe"' in f.text for f in emulator.received_frames())


def test_sigterm_while_redis_is_paused_still_stops_within_the_deadline(
    emulator: Any, redis_server: RedisServer, spawn: Any, tmp_path: Path
) -> None:
    """SIGTERM while readers are held back by a paused Redis: they are released, the worker
    stops in order and exits 0 within SPEC's 10 s, saying what could not be written."""
    r = redis_server.client()
    scenario = Scenario(r, "bfx", emulator, spawn, tmp_path, GROUP, redis_url=redis_server.url,
                        redis_extra="batch = 20")  # fmt: skip
    worker = scenario.start()
    r.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    # 3000 frames after the pause are far more than the writer's queue bound (1000) holds:
    # by then the readers are held back
    sent = len(emulator.sent_frames())
    wait_until(lambda: len(emulator.sent_frames()) > sent + 3000, 20, "readers held back")
    worker.signal(signal.SIGTERM)
    try:
        assert worker.wait(10) == 0, worker.output()[-2000:]
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
    assert "not written" in worker.output() or "stopped" in worker.output()
