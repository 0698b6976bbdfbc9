"""``python -m bridge demo`` (SPEC §1): emulator + embedded Redis + supervisor, end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.config import parse
from bridge.demo import DEMO_CONFIG
from bridge.embedded import EmbeddedRedis
from tests.conftest import ROOT, wait_until
from tests.feedcheck import assert_well_formed, epochs, read_stream

DURATION = 20


def demo_streams() -> dict[str, list[str]]:
    """The stream names of each group of the demo's built-in config."""
    text = DEMO_CONFIG.format(ws_url="ws://127.0.0.1:1/ws/2", redis_url="redis://127.0.0.1:1/0")
    config = parse(tomllib.loads(text), "demo.toml", {})
    return {g.name: [sub.name for sub in g.subscriptions] for g in config.groups}


def rich_table(output: str, title: str) -> list[list[str]]:
    """The body rows of the last rich table titled ``title`` in ``output``, cells stripped."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line.rstrip().endswith(f" {title}"))
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return rows


def shared_state(r: redis.Redis, keys: list[str]) -> dict[str, Any]:
    """What the shared Redis holds under the demo's own key names: type and last entry."""
    state: dict[str, Any] = {}
    for key in keys:
        kind = r.type(key)
        last = r.xrevrange(key, count=1) if kind == b"stream" else None
        state[key] = (kind, last)
    return state


def test_demo_runs_everything_locally_and_every_stream_gets_data(
    r: redis.Redis, spawn: Any, tmp_path: Path
) -> None:
    """`demo --duration 20`: exit 0, data on every stream in its own Redis, none in ours."""
    # Given the names the demo would write, and what the shared Redis holds under them now
    groups = demo_streams()
    names = [name for group in groups.values() for name in group]
    ours = [f"bfx:{n}" for n in names] + ["bfx:events"]
    ours += [f"bfx:health:{g}" for g in groups] + [f"bfx:health:{g}:streams" for g in groups]
    before = shared_state(r, ours)
    # When the demo runs for 20 s with its embedded Redis under tmp_path
    data = tmp_path / "embedded"
    demo = spawn(
        "demo",
        "--duration",
        str(DURATION),
        env={"BFX_BRIDGE_EMBEDDED_DIR": str(data), "COLUMNS": "200"},
    )
    health_seen: list[str] = []

    def finished() -> bool:
        health_seen.extend(k for k in ours if "health" in k and r.exists(k))
        return demo.popen.poll() is not None

    wait_until(finished, DURATION + 60, "the demo to finish")
    output = demo.output()
    # Then it exited 0 and said how to go on
    assert demo.popen.returncode == 0, output
    assert "bridge stopped cleanly" in output
    assert "bfx-bridge tail" in output and "redis-cli" in output
    # And its final view shows every stream with entries, a rate and an epoch
    rows = {row[0]: row for row in rich_table(output, "streams")}
    assert sorted(rows) == sorted(names), output
    for name, (_, entries, rate, _last, _top, epoch) in rows.items():
        assert int(entries) > 0, (name, entries)
        assert float(rate) > 0, (name, rate)
        assert epoch, name
    assert rows["book:tBTCUSD:P0"][4].count("/") == 1  # best bid / best ask
    assert rows["ticker:tBTCUSD"][3] != ""  # last price
    # And health was ok for both groups, every channel subscribed
    health = {row[0]: row for row in rich_table(output, "health")}
    for group, streams in groups.items():
        assert health[group][1] == "ok", health
        assert health[group][2] == f"{len(streams)}/{len(streams)}", health
    # And the data is in the embedded Redis's saved file, consistent, as the view showed it
    assert not (data / "url").exists(), "the embedded server's url file outlived it"
    with EmbeddedRedis(data) as saved:
        client = redis.Redis.from_url(saved.url)
        for name in names:
            entries = read_stream(client, f"bfx:{name}")
            assert len(entries) >= int(rows[name][1]), name
            assert_well_formed(entries)
            assert epochs(entries)[-1][0]["epoch"] == rows[name][5], name
            assert entries[-1]["data"] == {"reason": "worker stopped"}, name
        client.close()
    # And nothing reached the shared Redis on 6379 under the demo's names
    assert health_seen == []
    assert shared_state(r, ours) == before
    # And the hint on `status` shows the config line to write, "[redis]" included
    assert '<config with [redis] url = "redis://127.0.0.1:' in output, "the hint lost [redis]"


def test_run_with_embedded_redis_serves_status_and_stops_it_on_exit(
    emulator: Any, spawn: Any, tmp_path: Path
) -> None:
    """`url = "embedded"`: run starts a private Redis that status finds; it stops with run."""
    data = tmp_path / "embedded"
    config = tmp_path / "bridge.toml"
    config.write_text(
        f"""
[bitfinex]
url = "{emulator.url}"

[redis]
url = "embedded"

[[groups]]
name = "solo"
symbols = ["tBTCUSD"]
channels = ["ticker", "trades"]

[health]
interval = 0.5
"""
    )
    env = {"BFX_BRIDGE_EMBEDDED_DIR": str(data)}
    supervisor = spawn("run", "-c", str(config), env=env)
    url = wait_until(
        lambda: (data / "url").exists() and (data / "url").read_text().strip(), 30, "url file"
    )
    assert url.startswith("redis://127.0.0.1:") and not url.endswith(":6379/0"), url
    client = redis.Redis.from_url(url)

    def status_exit() -> int:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "status", "-c", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
            timeout=30,
        )
        return done.returncode

    wait_until(lambda: status_exit() == 0, 60, "status (reading the embedded Redis) to exit 0")
    assert client.xlen("bfx:ticker:tBTCUSD") > 0
    # When the supervisor stops, the embedded server stops too and forgets its URL
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0, supervisor.output()
    assert not (data / "url").exists()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert (data / "bridge.rdb").exists()
    assert status_exit() == 1


def test_demo_runs_until_ctrl_c_then_stops_cleanly(spawn: Any, tmp_path: Path) -> None:
    """Without --duration the demo runs until SIGINT, then stops the bridge and exits 0."""
    data = tmp_path / "embedded"
    demo = spawn("demo", env={"BFX_BRIDGE_EMBEDDED_DIR": str(data), "COLUMNS": "200"})
    url = wait_until(
        lambda: (data / "url").exists() and (data / "url").read_text().strip(), 30, "url file"
    )
    client = redis.Redis.from_url(url)
    groups = demo_streams()
    wait_until(
        lambda: all(client.hget(f"bfx:health:{g}", "status") == b"ok" for g in groups),
        60,
        "every demo group ok",
    )
    client.close()
    # When the user presses Ctrl-C
    demo.signal(signal.SIGINT)
    # Then the demo stops the bridge and its Redis, and exits 0
    assert demo.wait(60) == 0, demo.output()
    assert "bridge stopped cleanly" in demo.output()
    assert not (data / "url").exists()
