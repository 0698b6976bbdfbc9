"""``python -m bridge status`` (SPEC §4): exit codes, the table and the JSON, against real
workers, the emulator and the real redis-server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import redis

from bridge.health import health_key
from tests.conftest import ROOT, wait_until, write_config

INTERVAL = 0.5
STREAMS = {
    "a": ["ticker:tBTCUSD", "book:tBTCUSD:P0"],
    "b": ["ticker:tETHUSD", "trades:tETHUSD", "candles:tETHUSD:1m"],
}
GROUPS = f"""
[[groups]]
name = "a"
symbols = ["tBTCUSD"]
channels = ["ticker", "book"]

[[groups]]
name = "b"
symbols = ["tETHUSD"]
channels = ["ticker", "trades", "candles"]

[health]
interval = {INTERVAL}
"""


def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bridge status -c CONFIG ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", "status", "-c", str(config), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The status table as {group: {COLUMN: cell}} (cells hold no spaces)."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    header = lines[0]
    assert header[:2] == ["GROUP", "STATUS"], stdout
    rows = [line for line in lines[1:] if len(line) == len(header)]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def exits(config: Path, code: int, *args: str) -> subprocess.CompletedProcess[str] | None:
    """The completed status run if it exited ``code``, else None (for wait_until)."""
    done = status(config, *args)
    return done if done.returncode == code else None


def none_ok(config: Path) -> subprocess.CompletedProcess[str] | None:
    """The completed status run if it exited 1 with no group ok, else None."""
    done = exits(config, 1)
    if done is None or any(row["STATUS"] == "ok" for row in table(done.stdout).values()):
        return None
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_status_exits_0_and_lists_every_group_when_all_are_ok(
    emulator: Any, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """All groups ok: exit 0, one table row per group with its live numbers."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUPS)
    spawn("run", "-c", str(config))
    done = wait_until(lambda: exits(config, 0), 60, "status to exit 0")
    rows = table(done.stdout)
    assert sorted(rows) == ["a", "b"], done.stdout
    assert rows["a"]["STATUS"] == rows["b"]["STATUS"] == "ok"
    assert rows["a"]["SUBSCRIBED"] == "2/2"
    assert rows["b"]["SUBSCRIBED"] == "3/3"
    for row in rows.values():
        assert row["CONN"] == "1"
        assert row["RECONN"] == "0"
        assert row["ERRORS"] == "0"
        assert row["DROPPED"] == "0"
        assert float(row["AGE"].rstrip("s")) < 3 * INTERVAL
        assert float(row["MSG/S"]) > 0
    assert done.stderr == ""


def test_status_json_has_every_group_with_per_stream_detail(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """`--json` parses, and gives each group's health and each stream's state and epoch."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUPS)
    spawn("run", "-c", str(config))
    wait_until(lambda: exits(config, 0), 60, "status to exit 0")
    done = wait_until(
        lambda: (
            (d := exits(config, 0, "--json"))
            and all(s["seq"] > 0 for row in orjson.loads(d.stdout) for s in row["streams"].values())
            and d
        ),
        30,
        "updates on every stream",
    )
    rows = {row["group"]: row for row in orjson.loads(done.stdout)}
    assert sorted(rows) == ["a", "b"]
    for group, row in rows.items():
        assert row["status"] == "ok" and row["ok"] is True, row
        assert 0 < row["ttl_ms"] <= 3 * INTERVAL * 1000
        assert int(row["pid"]) == int(r.hget(health_key(prefix, group), "pid") or 0)
        assert row["subscribed"] == row["expected"] == str(len(STREAMS[group]))
        assert sorted(row["streams"]) == sorted(STREAMS[group])
        for name, stream in row["streams"].items():
            assert stream["state"] == "live", (name, stream)
            assert stream["epoch"].startswith(row["run_id"] + "."), (name, stream)
            assert stream["entries"] >= stream["seq"] + 2 > 2, (name, stream)


def test_status_exits_1_when_a_group_has_no_worker(
    emulator: Any, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Only group a runs: exit 1, b shown as absent; `--group a` alone exits 0."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUPS)
    spawn("worker", "-c", str(config), "--group", "a")
    wait_until(lambda: exits(config, 0, "--group", "a"), 60, "group a ok")
    done = status(config)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = table(done.stdout)
    assert rows["a"]["STATUS"] == "ok"
    assert rows["b"]["STATUS"] == "absent"
    assert "no live health key for: b" in done.stdout
    as_json = status(config, "--json")
    assert as_json.returncode == 1
    by_group = {row["group"]: row for row in orjson.loads(as_json.stdout)}
    assert by_group["a"]["ok"] is True
    assert by_group["b"]["status"] == "absent" and by_group["b"]["ok"] is False
    assert by_group["b"]["streams"] == {}


def test_status_fails_within_a_minute_of_the_exchange_going_away(
    emulator: Any, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """The emulator stops: status turns non-ok (exit 1) within a minute and stays so."""
    # Given a healthy bridge whose connections give up after 3 s of silence
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUPS)
    config.write_text(
        config.read_text().replace("connection_timeout = 8", "connection_timeout = 3")
    )
    spawn("run", "-c", str(config))
    wait_until(lambda: exits(config, 0), 60, "status to exit 0")
    # When the exchange goes away
    emulator.stop()
    # Then status exits 1 within a minute, and soon names both groups as not ok
    wait_until(lambda: exits(config, 1), 60, "status to exit 1")
    done = wait_until(lambda: none_ok(config), 10, "both groups not ok")
    rows = table(done.stdout)
    assert {rows["a"]["STATUS"], rows["b"]["STATUS"]} == {"degraded"}, done.stdout
    # And it keeps failing while the exchange is away (five probes in a row)
    for _ in range(5):
        assert none_ok(config) is not None


def test_status_fails_when_the_exchange_goes_silent_and_refuses_reconnects(
    emulator: Any, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Connections open but silent, new handshakes refused: status exits 1 within a minute."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUPS)
    config.write_text(
        config.read_text().replace("connection_timeout = 8", "connection_timeout = 3")
    )
    spawn("run", "-c", str(config))
    wait_until(lambda: exits(config, 0), 60, "status to exit 0")
    # When the exchange stops answering (no data, no heartbeat, no pong) and refuses newcomers
    emulator.reject_handshakes(503, count=10_000)
    for conn in emulator.connections():
        conn.silence_all()
    # Then status exits 1 within a minute, and keeps failing
    done = wait_until(lambda: exits(config, 1), 60, "status to exit 1")
    rows = table(done.stdout)
    assert any(row["STATUS"] == "degraded" for row in rows.values()), done.stdout
    for _ in range(5):
        assert status(config).returncode == 1


def test_status_exits_1_with_a_redacted_message_when_redis_is_unreachable(
    tmp_path: Path,
) -> None:
    """No Redis at the configured URL: exit 1, a message naming it, the password redacted."""
    port = free_port()
    config = tmp_path / "bridge.toml"
    config.write_text(
        f"""
[redis]
url = "redis://:s3cr3tpw@127.0.0.1:{port}/0"

[[groups]]
name = "a"
symbols = ["tBTCUSD"]
channels = ["ticker"]
"""
    )
    done = status(config)
    assert done.returncode == 1
    assert "cannot read health from Redis" in done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cr3tpw" not in done.stdout + done.stderr


def test_status_fails_when_a_worker_freezes(
    emulator: Any, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A worker that stops refreshing (SIGSTOP) is no longer ok once its key expires."""
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUPS)
    spawn("worker", "-c", str(config), "--group", "a")
    frozen = spawn("worker", "-c", str(config), "--group", "b")
    wait_until(lambda: exits(config, 0), 60, "status to exit 0")
    frozen.signal(signal.SIGSTOP)
    done = wait_until(lambda: exits(config, 1), 3 * INTERVAL + 10, "status to exit 1")
    rows = table(done.stdout)
    assert rows["a"]["STATUS"] == "ok"
    assert rows["b"]["STATUS"] == "absent", done.stdout
