"""Subscription errors, refused handshakes, connection pacing, sharding under the limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from bridge.emulator import Emulator
from tests.conftest import wait_until, write_config
from tests.feedcheck import read_stream
from tests.scenario import FAST, Scenario


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Emulators with options of the test's choosing, stopped at teardown."""
    started: list[Emulator] = []

    def make(**options: Any) -> Emulator:
        options = {"heartbeat_interval": 1.0, "tick_interval": 0.02, "seed": 3,
                   "connect_limit": None, **options}  # fmt: skip
        emu = Emulator(port=0, **options)
        emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


def events(r: redis.Redis, prefix: str, kind: str) -> list[dict[str, Any]]:
    """Entries of the events stream of one type, decoded."""
    rows: Any = r.xrange(f"{prefix}:events")
    out = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
    return [e for e in out if e["type"] == kind]


def subscribe_requests(emu: Emulator, symbol: str) -> list[dict[str, Any]]:
    frames = [orjson.loads(f.text) for f in emu.received_frames() if '"subscribe"' in f.text]
    return [f for f in frames if f.get("symbol") == symbol]


def test_unknown_symbol_is_reported_retried_spaced_out_and_others_carry_on(
    make_emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """10300 for one symbol: an event and health say so, the retry waits 5 s then 10 s
    (no storm), the worker does not crash, and the other symbol's streams are faithful."""
    emu = make_emulator(unknown_symbols=frozenset({"tZZZUSD"}))
    group = 'symbols = ["tBTCUSD", "tZZZUSD"]\nchannels = ["ticker", "trades"]'
    scenario = Scenario(r, prefix, emu, spawn, tmp_path, group)
    scenario.worker = spawn("worker", "-c", str(scenario.path), "--group", "g")
    good = ["ticker:tBTCUSD", "trades:tBTCUSD"]
    scenario.wait_epochs({n: 1 for n in good}, "the known symbol's snapshots")

    # Then each refused channel is reported with the code, the message and the retry delay
    def two_rounds() -> list[dict[str, Any]]:
        found = events(r, prefix, "subscribe_error")
        return found if len(found) >= 4 else []

    refused = wait_until(two_rounds, 30, "two rounds of refusals")
    by_stream: dict[str, list[str]] = {}
    for event in refused:
        assert event["code"] == "10300" and event["msg"] == "symbol: invalid", event
        by_stream.setdefault(event["stream"], []).append(event["retry_in"])
    assert set(by_stream) == {f"{prefix}:ticker:tZZZUSD", f"{prefix}:trades:tZZZUSD"}
    assert all(delays[:2] == ["5", "10"] for delays in by_stream.values()), by_stream
    # And by then each refused channel was asked for exactly twice: no retry storm
    assert len(subscribe_requests(emu, "tZZZUSD")) <= 2 * 2 + 2
    health = wait_until(
        lambda: (h := scenario.health()) and int(h.get("subscribe_errors", 0)) >= 4 and h,
        10,
        "health to count the refusals",
    )
    assert health["status"] == "degraded"
    assert health["subscribed"] == "2" and health["expected"] == "4"
    assert scenario.resets("ticker:tZZZUSD") == ["worker started"]
    assert scenario.worker.popen.poll() is None
    assert "check the symbol exists on Bitfinex" in scenario.worker.output()
    scenario.settle_and_check(good)


def test_channel_limit_refusals_are_reported_and_the_rest_carry_on(
    make_emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A server that allows fewer channels than configured answers 10305: reported with what
    to do, and the channels it did accept are faithful."""
    emu = make_emulator(channel_limit=4)
    group = 'symbols = ["tBTCUSD", "tETHUSD", "fUSD"]\nchannels = ["ticker", "trades"]'
    scenario = Scenario(r, prefix, emu, spawn, tmp_path, group)
    scenario.worker = spawn("worker", "-c", str(scenario.path), "--group", "g")
    refused = wait_until(lambda: events(r, prefix, "subscribe_error"), 30, "10305 reported")
    assert {e["code"] for e in refused} == {"10305"}
    accepted = [n for n in scenario.names if not any(e["stream"].endswith(n) for e in refused)]
    assert len(accepted) == 4
    scenario.wait_epochs({n: 1 for n in accepted}, "the accepted channels' snapshots")
    assert "lower bitfinex.channel_limit" in scenario.worker.output()
    scenario.settle_and_check(accepted)


def test_refused_handshakes_back_off_then_connect(
    make_emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """HTTP 503 then 429 on the handshake: each failure is reported with its retry time (at
    least throttle_wait after a 429), then the worker connects and every stream is faithful."""
    emu = make_emulator()
    emu.reject_handshakes(503, 2)
    emu.reject_handshakes(429, 1)
    group = 'symbols = ["tBTCUSD"]\nchannels = ["ticker", "book"]'
    scenario = Scenario(r, prefix, emu, spawn, tmp_path, group,
                        bitfinex=FAST + "throttle_wait = 1.0\n")  # fmt: skip
    scenario.start()
    failed = events(r, prefix, "connect_failed")
    assert [("HTTP 503" in e["reason"], "HTTP 429" in e["reason"]) for e in failed] == [
        (True, False),
        (True, False),
        (False, True),
    ], failed
    assert float(failed[2]["retry_in"]) >= 1.0  # the 429 waits at least throttle_wait
    assert float(failed[0]["retry_in"]) < 1.0  # the first retry is quick
    assert len(events(r, prefix, "connected")) == 1
    scenario.settle_and_check()


def test_new_connections_are_paced_under_the_per_minute_limit(
    make_emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """With 3 connections needed and 2 allowed a minute, 2 open at once and the third waits
    (logged with its time), and the emulator never has to refuse one with 429."""
    emu = make_emulator(connect_limit=(2, 60.0))
    group = 'symbols = ["tBTCUSD", "tETHUSD", "fUSD"]\nchannels = ["ticker", "trades"]'
    pacing = "channel_limit = 2\nconnections_per_minute = 2\n"
    scenario = Scenario(r, prefix, emu, spawn, tmp_path, group, bitfinex=FAST + pacing)
    scenario.worker = spawn("worker", "-c", str(scenario.path), "--group", "g")
    wait_until(lambda: "pacing connections, next attempt in" in scenario.worker.output(), 20,
               "the third connection to be paced")  # fmt: skip
    wait_until(lambda: len(emu.connections()) == 2, 10, "the first two connections")
    assert events(r, prefix, "connect_failed") == []  # no 429 provoked
    assert "3 connections" in scenario.worker.output()


def test_sixty_channels_are_sharded_under_the_server_limit(
    make_emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """60 channels with the server enforcing 25 per connection: all subscribed, never more
    than 25 on one connection, no 10305 provoked, every stream faithful."""
    emu = make_emulator(channel_limit=25, tick_interval=0.05)
    symbols = ["tBTCUSD", "tETHUSD", "tXRPBTC", "tSOLUSD", "tLTCUSD", "tEOSUSD",
               "tADAUSD", "tDOTUSD", "fUSD", "fBTC", "fETH", "fUST"]  # fmt: skip
    group = f"symbols = {orjson.dumps(symbols).decode()}\n" + \
        'channels = ["ticker", "trades", "book", "book:R0", "candles"]'  # fmt: skip
    scenario = Scenario(r, prefix, emu, spawn, tmp_path, group)
    assert len(scenario.names) == 60
    scenario.start()
    per_connection = [len(c.channels()) for c in emu.connections()]
    assert sorted(per_connection) == [20, 20, 20], per_connection
    assert not any('"code":10305' in f.text for f in emu.sent_frames())
    wait_until(lambda: scenario.health().get("subscribed") == "60", 10, "60 subscribed")
    scenario.settle_and_check()
    assert all(read_stream(r, scenario.key(n))[0]["kind"] == "reset" for n in scenario.names)


def test_connection_pacing_is_shared_by_every_worker_of_the_host(
    make_emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Two workers (two groups) needing 2 connections each, with 2 allowed a minute: the
    host opens 2 in all, not 2 per worker, and Bitfinex never has to answer 429."""
    emu = make_emulator(connect_limit=(2, 60.0))
    groups = """
[[groups]]
name = "a"
symbols = ["tBTCUSD", "tETHUSD"]
channels = ["ticker", "trades"]

[[groups]]
name = "b"
symbols = ["tXRPBTC", "fUSD"]
channels = ["ticker", "trades"]
"""
    config = write_config(tmp_path / "bridge.toml", url=emu.url, prefix=prefix, groups=groups,
                          extra="channel_limit = 2\nconnections_per_minute = 2\n")  # fmt: skip
    workers = [spawn("worker", "-c", str(config), "--group", g) for g in ("a", "b")]
    wait_until(lambda: len(emu.connections()) == 2, 20, "two connections in all")
    # the two connections the host may open are taken; whoever needs more is paced
    wait_until(lambda: any("pacing connections" in w.output() for w in workers), 20,
               "a worker paced by the host's limit")  # fmt: skip
    assert len(emu.connections()) == 2
    assert events(r, prefix, "connect_failed") == []  # no 429 provoked
