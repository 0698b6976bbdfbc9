"""Prometheus metrics (SPEC §4): ``[metrics] port`` on real workers, scraped over HTTP."""

from __future__ import annotations

import random
import socket
import urllib.request
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from bridge.health import health_key
from tests.conftest import wait_until, write_config

STREAMS = ["ticker:tBTCUSD", "trades:tBTCUSD", "book:tBTCUSD:P0", "candles:tBTCUSD:1m"]
GROUP_COUNTERS = [
    "msgs", "reconnects", "checksum_errors", "malformed", "subscribe_errors", "written", "dropped",
]  # fmt: skip
GROUP_GAUGES = ["connections", "subscribed", "expected", "buffered", "last_msg"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range.

    A port from bind(0) is an ephemeral one, and so may be the next: outgoing connections of
    the tests running alongside take them, so "port + 1" (the second group's metrics port)
    was sometimes taken by the time the worker bound it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, max(low - count, 10_001))
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free ports below the ephemeral range")


def groups_text(names: list[str], port: int) -> str:
    """One group per name (each its own symbol) and the [metrics] and [health] tables."""
    symbols = {"g": "tBTCUSD", "h": "tETHUSD"}
    text = "".join(
        f"""
[[groups]]
name = "{name}"
symbols = ["{symbols[name]}"]
channels = ["ticker", "trades", "book", "candles"]
"""
        for name in names
    )
    return text + f"\n[health]\ninterval = 0.5\n\n[metrics]\nport = {port}\n"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        body: bytes = reply.read()
        return body.decode()


def samples(text: str) -> Samples:
    """Every sample of the exposition: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def try_scrape(port: int) -> str:
    """The exposition text, or "" while nothing listens yet."""
    try:
        return scrape(port)
    except OSError:
        return ""


def status_ok(r: redis.Redis, prefix: str, group: str) -> bool:
    return r.hget(health_key(prefix, group), "status") == b"ok"


def test_metrics_parse_and_carry_group_and_stream_counters(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """/metrics is Prometheus text with every health counter per group and entries per stream."""
    port = free_port()
    config = write_config(
        tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=groups_text(["g"], port)
    )
    spawn("worker", "-c", str(config), "--group", "g")
    wait_until(lambda: status_ok(r, prefix, "g"), 30, "status ok")
    found = samples(wait_until(lambda: try_scrape(port), 30, "/metrics to answer"))
    # Then every health counter is there for the group, with the live values
    for name in GROUP_COUNTERS:
        assert ("bfx_bridge_" + name + "_total", frozenset({("group", "g")})) in found, name
    for name in GROUP_GAUGES:
        assert ("bfx_bridge_" + name, frozenset({("group", "g")})) in found, name
    assert value(found, "bfx_bridge_msgs_total", group="g") > 0
    assert value(found, "bfx_bridge_written_total", group="g") > 0
    assert value(found, "bfx_bridge_dropped_total", group="g") == 0
    assert value(found, "bfx_bridge_reconnects_total", group="g") == 0
    assert value(found, "bfx_bridge_connections", group="g") == 1
    assert value(found, "bfx_bridge_subscribed", group="g") == len(STREAMS)
    assert value(found, "bfx_bridge_expected", group="g") == len(STREAMS)
    assert value(found, "bfx_bridge_status", group="g", status="ok") == 1
    for other in ("starting", "degraded", "maintenance"):
        assert value(found, "bfx_bridge_status", group="g", status=other) == 0
    # And each configured stream has its own entries counter, and no other stream appears
    per_stream = {
        dict(labels)["stream"]: v
        for (name, labels), v in found.items()
        if name == "bfx_bridge_stream_entries_total"
    }
    assert sorted(per_stream) == sorted(STREAMS)
    assert all(v >= 2 for v in per_stream.values()), per_stream  # the reset and the snapshot
    for stream in STREAMS:
        labels = {"group": "g", "stream": stream}
        assert ("bfx_bridge_stream_seq", frozenset(labels.items())) in found, stream
        assert ("bfx_bridge_stream_last_ts", frozenset(labels.items())) in found, stream


def test_metrics_counters_move_with_the_feed(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """Two scrapes: frames, writes and every stream's entries have grown in between."""
    port = free_port()
    config = write_config(
        tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=groups_text(["g"], port)
    )
    spawn("worker", "-c", str(config), "--group", "g")
    wait_until(lambda: status_ok(r, prefix, "g"), 30, "status ok")
    first = samples(wait_until(lambda: try_scrape(port), 30, "/metrics to answer"))
    grown = [
        ("bfx_bridge_msgs_total", {"group": "g"}),
        ("bfx_bridge_written_total", {"group": "g"}),
        ("bfx_bridge_last_msg", {"group": "g"}),
    ] + [("bfx_bridge_stream_entries_total", {"group": "g", "stream": s}) for s in STREAMS[:3]]

    def all_grown() -> Samples:
        later = samples(scrape(port))
        ok = all(value(later, n, **lab) > value(first, n, **lab) for n, lab in grown)
        return later if ok else {}

    later = wait_until(all_grown, 20, "every counter to grow")
    for name, labels in grown:
        assert value(later, name, **labels) > value(first, name, **labels), name
    # and nothing was lost or reconnected on the way
    assert value(later, "bfx_bridge_reconnects_total", group="g") == 0
    assert value(later, "bfx_bridge_dropped_total", group="g") == 0


def test_metrics_port_does_not_stop_a_second_group_from_running(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """With [metrics] port and two groups, both workers run (neither crash-loops on the port)."""
    port = free_port(2)
    config = write_config(
        tmp_path / "bridge.toml",
        url=emulator.url,
        prefix=prefix,
        groups=groups_text(["g", "h"], port) + "\n[supervisor]\nstartsecs = 1\n",
    )
    supervisor = spawn("run", "-c", str(config))
    try:
        wait_until(lambda: status_ok(r, prefix, "g") and status_ok(r, prefix, "h"), 30, "g, h ok")
    except AssertionError as exc:  # say why: the workers' own words
        raise AssertionError(f"{exc}\n{supervisor.output()}") from exc
    exits: Any = [f for _, f in r.xrange(f"{prefix}:events") if f[b"type"] == b"worker_exit"]
    assert exits == [], supervisor.output()
    found = samples(scrape(port))
    assert value(found, "bfx_bridge_msgs_total", group="g") > 0


def test_metrics_port_in_use_is_a_boot_error_not_a_crash_loop(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A taken metrics port: the worker exits with the boot code, and is not restarted."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "bridge.toml",
            url=emulator.url,
            prefix=prefix,
            groups=groups_text(["g"], port) + "\n[supervisor]\nbackoff_max = 1\n",
        )
        supervisor = spawn("run", "-c", str(config))
        # Then the worker exits 3 (could not boot), once, and the supervisor gives up with 1
        wait_until(lambda: supervisor.popen.poll() is not None, 30, "the supervisor to give up")
    output = supervisor.output()
    assert supervisor.popen.returncode == 1, output
    rows: Any = r.xrange(f"{prefix}:events")
    kinds = [(f[b"type"].decode(), f.get(b"code", b"").decode()) for _, f in rows]
    assert ("worker_fatal", "3") in kinds, kinds
    assert [k for k, _ in kinds].count("worker_spawn") == 1, kinds
    assert str(port) in output and "Traceback" not in output, output
