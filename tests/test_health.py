"""Health keys (SPEC §4): a worker subprocess, the emulator and the real redis-server.

The pure :func:`bridge.health.status_of` decision is tested case by case at the end.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from bridge.emulator import Emulator
from bridge.health import Vitals, health_key, status_of
from tests.conftest import wait_until, write_config
from tests.feedcheck import assert_well_formed, read_stream

INTERVAL = 0.5  # [health] interval of every config here: the TTL is 1.5 s
SPEC_FIELDS = {
    "status", "pid", "host", "updated", "connections", "subscribed", "expected", "msgs",
    "reconnects", "checksum_errors", "last_msg", "buffered", "dropped",
}  # fmt: skip
STREAMS = ["ticker:tBTCUSD", "trades:tBTCUSD", "book:tBTCUSD:P0"]
GROUP = f"""
[[groups]]
name = "g"
symbols = ["tBTCUSD"]
channels = ["ticker", "trades", "book"]

[health]
interval = {INTERVAL}
"""


def health(r: redis.Redis, prefix: str, group: str = "g") -> dict[str, str]:
    """The health hash of ``group``, decoded."""
    raw: Any = r.hgetall(health_key(prefix, group))
    return {k.decode(): v.decode() for k, v in raw.items()}


def stream_detail(r: redis.Redis, prefix: str, group: str = "g") -> dict[str, Any]:
    """The per-stream detail hash of ``group``, JSON-decoded."""
    raw: Any = r.hgetall(f"{health_key(prefix, group)}:streams")
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


def status_is(r: redis.Redis, prefix: str, status: str, group: str = "g") -> dict[str, str]:
    """The health hash when its status is ``status``, else an empty dict (for wait_until)."""
    fields = health(r, prefix, group)
    return fields if fields.get("status") == status else {}


def subscribe_errors(r: redis.Redis, prefix: str) -> list[dict[str, str]]:
    """The ``subscribe_error`` entries of the events stream, decoded, oldest first."""
    rows: Any = r.xrange(f"{prefix}:events")
    events = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
    return [e for e in events if e["type"] == "subscribe_error"]


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def worker(emulator: Any, prefix: str, spawn: Any, tmp_path: Path) -> Any:
    """A worker subprocess for group ``g`` (tBTCUSD ticker, trades, book)."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUP)
    return spawn("worker", "-c", str(config), "--group", "g")


@pytest.fixture
def refusing_emulator() -> Iterator[Emulator]:
    """An emulator that refuses tZZZUSD with 10300 ``symbol: invalid``."""
    emu = Emulator(
        port=0,
        heartbeat_interval=1.0,
        tick_interval=0.02,
        seed=11,
        connect_limit=None,
        unknown_symbols=frozenset({"tZZZUSD"}),
    )
    emu.start()
    yield emu
    emu.stop()


def test_health_hash_has_every_spec_field_with_live_values(
    worker: Any, r: redis.Redis, prefix: str
) -> None:
    """The health hash holds every SPEC §4 field with values that describe the live worker."""
    # Given a worker whose three channels are all subscribed
    fields = wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok")
    # Then every field the SPEC names is there, with the worker's real values
    assert set(fields) >= SPEC_FIELDS, SPEC_FIELDS - set(fields)
    assert fields["status"] == "ok"
    assert int(fields["pid"]) == worker.pid
    assert fields["host"] == socket.gethostname()
    assert abs(now_ms() - int(fields["updated"])) < 3 * INTERVAL * 1000
    assert fields["connections"] == "1"
    assert fields["subscribed"] == "3"
    assert fields["expected"] == "3"
    assert int(fields["msgs"]) > 0
    assert fields["reconnects"] == "0"
    assert fields["checksum_errors"] == "0"
    assert 0 <= int(fields["updated"]) - int(fields["last_msg"]) < 10_000
    assert int(fields["buffered"]) >= 0
    assert fields["dropped"] == "0"


def test_health_key_has_a_ttl_of_three_intervals_and_updated_moves(
    worker: Any, r: redis.Redis, prefix: str
) -> None:
    """The key expires after about three intervals and each refresh moves `updated` and `msgs`."""
    first = wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok")
    key = health_key(prefix, "g")
    for name in (key, f"{key}:streams"):
        ttl = r.pttl(name)
        assert 0 < ttl <= 3 * INTERVAL * 1000, (name, ttl)
    later = wait_until(
        lambda: (h := health(r, prefix)) and int(h["updated"]) > int(first["updated"]) and h,
        10,
        "a later refresh",
    )
    assert int(later["msgs"]) > int(first["msgs"])
    assert later["pid"] == first["pid"]
    assert abs(now_ms() - int(later["updated"])) < 3 * INTERVAL * 1000


def test_status_is_starting_until_every_channel_answers_then_ok(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A new worker reports `starting` (never `degraded`) until subscribed, then `ok`."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUP)
    spawn("worker", "-c", str(config), "--group", "g")
    seen: list[str] = []

    def became_ok() -> bool:
        status = health(r, prefix).get("status")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        return status == "ok"

    wait_until(became_ok, 30, "status ok")
    assert seen in (["starting", "ok"], ["ok"]), seen
    fields = health(r, prefix)
    assert fields["subscribed"] == fields["expected"] == "3"


def test_streams_hash_matches_what_reached_redis(worker: Any, r: redis.Redis, prefix: str) -> None:
    """The `:streams` hash gives each stream's state, epoch and seq as written to Redis."""
    wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok")
    detail = wait_until(
        lambda: (d := stream_detail(r, prefix)) and all(d[n]["seq"] > 0 for n in STREAMS) and d,
        20,
        "updates on every stream",
    )
    assert sorted(detail) == sorted(STREAMS)
    for name in STREAMS:
        info = detail[name]
        assert info["state"] == "live", (name, info)
        assert info["entries"] >= info["seq"] + 2  # the start's reset, the snapshot, the updates
        assert abs(now_ms() - info["last_ts"]) < 10_000
        # Redis holds that epoch (one snapshot, the first) up to at least that seq
        key = f"{prefix}:{name}"
        wait_until(
            lambda k=key, i=info: read_stream(r, k)[-1]["seq"] >= i["seq"], 10, f"{key} written"
        )
        entries = read_stream(r, key)
        assert_well_formed(entries)
        snapshots = [e for e in entries if e["kind"] == "snapshot"]
        assert [e["epoch"] for e in snapshots] == [info["epoch"]], name
        assert entries[0]["kind"] == "reset"


def test_health_keys_are_deleted_when_the_worker_stops(
    worker: Any, r: redis.Redis, prefix: str
) -> None:
    """SIGTERM: the worker exits 0 and has deleted its health hash and its `:streams` hash."""
    wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok")
    key = health_key(prefix, "g")
    assert r.exists(key, f"{key}:streams") == 2
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output()
    assert r.exists(key, f"{key}:streams") == 0


def test_health_key_of_a_killed_worker_expires(worker: Any, r: redis.Redis, prefix: str) -> None:
    """SIGKILL: nobody deletes the key, and it disappears within about three intervals."""
    fields = wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok")
    key = health_key(prefix, "g")
    assert int(fields["pid"]) == worker.pid
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL
    assert r.exists(key) == 1  # nobody deleted it
    wait_until(lambda: r.exists(key, f"{key}:streams") == 0, 3 * INTERVAL + 1.5, "expiry")


def test_refused_symbol_makes_the_group_degraded_and_is_reported(
    refusing_emulator: Emulator, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A refused subscription: health `degraded`, subscribe_errors counted, an event, no storm."""
    groups = f"""
[[groups]]
name = "g"
symbols = ["tBTCUSD", "tZZZUSD"]
channels = ["ticker", "trades"]

[health]
interval = {INTERVAL}
"""
    config = write_config(
        tmp_path / "bridge.toml", url=refusing_emulator.url, prefix=prefix, groups=groups
    )
    worker = spawn("worker", "-c", str(config), "--group", "g")
    # When Bitfinex refuses both channels of tZZZUSD
    fields = wait_until(
        lambda: (h := status_is(r, prefix, "degraded")) and int(h["subscribe_errors"]) >= 2 and h,
        30,
        "degraded with two subscribe errors",
    )
    # Then health says so, and the two good channels carry on
    assert fields["subscribed"] == "2"
    assert fields["expected"] == "4"
    assert fields["connections"] == "1"
    detail = stream_detail(r, prefix)
    assert detail["ticker:tBTCUSD"]["state"] == "live"
    assert detail["trades:tBTCUSD"]["state"] == "live"
    assert detail["ticker:tZZZUSD"]["state"] != "live"
    assert detail["trades:tZZZUSD"]["state"] != "live"
    for name in ("ticker:tBTCUSD", "trades:tBTCUSD"):
        assert any(e["kind"] == "snapshot" for e in read_stream(r, f"{prefix}:{name}")), name
    for name in ("ticker:tZZZUSD", "trades:tZZZUSD"):
        assert [e["kind"] for e in read_stream(r, f"{prefix}:{name}")] == ["reset"], name
    # And each refusal is an event naming the stream, the code and the message
    errors = subscribe_errors(r, prefix)
    assert {e["stream"] for e in errors} == {f"{prefix}:ticker:tZZZUSD", f"{prefix}:trades:tZZZUSD"}
    assert all(e["code"] == "10300" and e["group"] == "g" for e in errors), errors
    assert all(e["msg"] == "symbol: invalid" for e in errors), errors
    # And the refused channels are retried with a growing pause, not in a storm
    key = f"{prefix}:ticker:tZZZUSD"
    second = wait_until(
        lambda: (e := [x for x in subscribe_errors(r, prefix) if x["stream"] == key])[1:] and e,
        30,
        "the first retry of ticker:tZZZUSD",
    )
    assert float(second[1]["retry_in"]) > float(second[0]["retry_in"]) > 0, second
    requests = [
        f.t
        for f in refusing_emulator.received_frames()
        if '"subscribe"' in f.text and '"ticker"' in f.text and "tZZZUSD" in f.text
    ]
    assert len(requests) == len(second) == 2, (requests, second)
    assert requests[1] - requests[0] >= 0.5 * float(second[0]["retry_in"])
    assert worker.popen.poll() is None, worker.output()


def test_maintenance_is_reported_until_it_ends(
    worker: Any, emulator: Any, r: redis.Redis, prefix: str
) -> None:
    """Info 20060 turns the health status to `maintenance`; 20061 brings it back to `ok`."""
    wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok")
    emulator.send_info(20060)
    wait_until(lambda: status_is(r, prefix, "maintenance"), 10, "status maintenance")
    emulator.send_info(20061)
    wait_until(lambda: status_is(r, prefix, "ok"), 30, "status ok after maintenance")
    kinds = [(e[b"type"], e.get(b"active")) for _, e in r.xrange(f"{prefix}:events")]  # type: ignore[union-attr]
    assert (b"maintenance", b"1") in kinds and (b"maintenance", b"0") in kinds, kinds


# -- status_of: the pure decision --------------------------------------------------------------

HEALTHY = Vitals(
    ever_ready=True,
    maintenance=False,
    connections=2,
    shards=2,
    subscribed=30,
    expected=30,
    redis_ok=True,
    buffered=0,
    buffer_limit=1000,
)


def test_status_of_healthy_vitals_is_ok() -> None:
    """Everything connected, subscribed, written: `ok` (a few buffered entries are fine)."""
    assert status_of(HEALTHY) == "ok"
    assert status_of(dataclasses.replace(HEALTHY, buffered=100)) == "ok"


def test_status_of_is_starting_before_every_channel_answered() -> None:
    """Before every channel has answered once the status is `starting`, even with no link."""
    assert status_of(dataclasses.replace(HEALTHY, ever_ready=False)) == "starting"
    starting = dataclasses.replace(HEALTHY, ever_ready=False, connections=0, subscribed=0)
    assert status_of(starting) == "starting"


@pytest.mark.parametrize(
    "change",
    [
        {"connections": 1},
        {"subscribed": 29},
        {"redis_ok": False},
        {"buffered": 101},
    ],
    ids=["connection-down", "channel-unsubscribed", "redis-unavailable", "buffer-over-a-tenth"],
)
def test_status_of_is_degraded_for_each_reason(change: dict[str, Any]) -> None:
    """A connection down, a channel missing, Redis away or a filling buffer: `degraded`."""
    assert status_of(dataclasses.replace(HEALTHY, **change)) == "degraded"


def test_status_of_maintenance_wins_over_everything() -> None:
    """During maintenance silence is expected: `maintenance` even when starting or degraded."""
    worst = dataclasses.replace(
        HEALTHY,
        maintenance=True,
        ever_ready=False,
        connections=0,
        subscribed=0,
        redis_ok=False,
        buffered=1000,
    )
    assert status_of(worst) == "maintenance"
    assert status_of(dataclasses.replace(HEALTHY, maintenance=True)) == "maintenance"
