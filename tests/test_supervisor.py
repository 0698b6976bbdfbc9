"""The supervisor (SPEC §1): ``python -m bridge run`` as a subprocess, its workers, Redis.

Worker pids come from the health keys, as an operator would take them; every assertion is
about what reached Redis (streams, health keys, the events stream) or about processes.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from bridge.errors import LocalProtocolError
from bridge.health import health_key
from bridge.supervisor import TRANSITIONS, Child, ChildState, restart_delay
from tests.conftest import wait_until, write_config
from tests.feedcheck import assert_well_formed, epochs, read_stream

INTERVAL = 0.5
STREAMS = {
    "a": ["ticker:tBTCUSD", "trades:tBTCUSD", "book:tBTCUSD:P0"],
    "b": ["ticker:tETHUSD", "book:tETHUSD:R0"],
}
GROUPS = """
[[groups]]
name = "a"
symbols = ["tBTCUSD"]
channels = ["ticker", "trades", "book"]

[[groups]]
name = "b"
symbols = ["tETHUSD"]
channels = ["ticker", "book:R0"]
"""


def sections(
    startsecs: float = 1,
    backoff_max: float = 2,
    stop_timeout: float = 8,
    interval: float = INTERVAL,
) -> str:
    """The [health] and [supervisor] tables, placed after the groups."""
    return f"""
[health]
interval = {interval}

[supervisor]
startsecs = {startsecs}
backoff_max = {backoff_max}
stop_timeout = {stop_timeout}
"""


def make_config(
    tmp_path: Path, emulator: Any, prefix: str, groups: str = GROUPS, **kw: Any
) -> Path:
    """A config for ``groups`` with a 0.5 s health interval and quick supervisor settings."""
    return write_config(
        tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=groups + sections(**kw)
    )


def health(r: redis.Redis, prefix: str, group: str) -> dict[str, str]:
    raw: Any = r.hgetall(health_key(prefix, group))
    return {k.decode(): v.decode() for k, v in raw.items()}


def ok_pid(r: redis.Redis, prefix: str, group: str, not_pid: int = 0) -> int:
    """The worker pid of ``group`` when its health is ``ok`` (and not ``not_pid``), else 0."""
    fields = health(r, prefix, group)
    if fields.get("status") != "ok" or int(fields["pid"]) == not_pid:
        return 0
    return int(fields["pid"])


def events(r: redis.Redis, prefix: str, kind: str, group: str | None = None) -> list[dict]:
    """Entries of type ``kind`` (of ``group``) on the events stream, decoded, oldest first."""
    rows: Any = r.xrange(f"{prefix}:events")
    decoded = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
    return [e for e in decoded if e["type"] == kind and group in (None, e.get("group"))]


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_and_wait_restart(r: redis.Redis, prefix: str, group: str, pid: int) -> int:
    """SIGKILL the worker ``pid`` of ``group``; return the pid of its healthy successor."""
    os.kill(pid, signal.SIGKILL)
    return wait_until(lambda: ok_pid(r, prefix, group, not_pid=pid), 30, f"{group} restarted")


def test_killed_worker_is_restarted_and_its_streams_start_a_new_epoch(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """SIGKILL a worker: it is restarted, its streams get reset + new epoch, the others not."""
    # Given a supervisor running two groups, both healthy, with data on every stream
    supervisor = spawn("run", "-c", str(make_config(tmp_path, emulator, prefix)))
    pid_a = wait_until(lambda: ok_pid(r, prefix, "a"), 30, "group a ok")
    pid_b = wait_until(lambda: ok_pid(r, prefix, "b"), 30, "group b ok")
    everything = STREAMS["a"] + STREAMS["b"]
    wait_until(
        lambda: all(len(epochs(read_stream(r, f"{prefix}:{n}"))) == 1 for n in everything),
        30,
        "a snapshot on every stream",
    )
    # When worker a is killed without any chance to clean up
    new_a = kill_and_wait_restart(r, prefix, "a", pid_a)
    # Then the supervisor is still up and a new worker a runs
    assert supervisor.popen.poll() is None, supervisor.output()
    assert new_a != pid_a and not alive(pid_a)
    (exit_a,) = events(r, prefix, "worker_exit", "a")
    assert exit_a["pid"] == str(pid_a)
    assert exit_a["code"] == str(-signal.SIGKILL)
    assert 0.5 <= float(exit_a["restart_in"]) <= 1.5  # first failure: 1 s ± 50 %
    spawns = [e["pid"] for e in events(r, prefix, "worker_spawn", "a")]
    assert spawns == [str(pid_a), str(new_a)]
    # And every stream of group a continues with reset, then a snapshot of a new epoch
    for name in STREAMS["a"]:
        key = f"{prefix}:{name}"
        wait_until(lambda k=key: len(epochs(read_stream(r, k))) == 2, 30, f"new epoch on {key}")
        entries = read_stream(r, key)
        assert_well_formed(entries)
        starts = [i for i, e in enumerate(entries) if e["data"] == {"reason": "worker started"}]
        assert len(starts) == 2, (name, starts)
        after = entries[starts[1] :]
        assert after[0]["kind"] == "reset"
        assert after[1]["kind"] == "snapshot" and after[1]["seq"] == 0, after[1]
        first, second = epochs(entries)
        assert first[0]["epoch"] != second[0]["epoch"]
        assert all(e["epoch"] == first[0]["epoch"] for e in first), name
    # And group b was not touched: same worker, one reset (its start), one epoch
    assert ok_pid(r, prefix, "b") == pid_b
    assert events(r, prefix, "worker_exit", "b") == []
    for name in STREAMS["b"]:
        entries = read_stream(r, f"{prefix}:{name}")
        assert_well_formed(entries)
        assert [e["kind"] for e in entries].count("reset") == 1, name
        assert len(epochs(entries)) == 1, name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sigterm_stops_every_worker_in_order_and_exits_0(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path, signum: int
) -> None:
    """SIGTERM/INT: exit 0 within 10 s, no worker left, health gone, streams end with reset."""
    supervisor = spawn("run", "-c", str(make_config(tmp_path, emulator, prefix)))
    pids = {g: wait_until(lambda g=g: ok_pid(r, prefix, g), 30, f"{g} ok") for g in STREAMS}
    everything = STREAMS["a"] + STREAMS["b"]
    wait_until(
        lambda: all(r.xlen(f"{prefix}:{n}") > 5 for n in everything), 30, "data on every stream"
    )
    # When the supervisor gets SIGTERM (or SIGINT)
    supervisor.signal(signum)
    # Then it exits 0 within 10 s, and its workers are gone
    assert supervisor.wait(10) == 0, supervisor.output()
    for group, pid in pids.items():
        assert not alive(pid), f"worker {group} (pid {pid}) is still there"
    # And no health key claims a live group
    for group in STREAMS:
        assert health(r, prefix, group).get("status") in (None, "starting", "degraded"), group
        assert r.exists(health_key(prefix, group)) == 0, group
    # And what was written is consistent and ends with the stop's reset
    for name in everything:
        entries = read_stream(r, f"{prefix}:{name}")
        assert_well_formed(entries)
        assert len(epochs(entries)) == 1, name
        assert entries[-1]["kind"] == "reset", (name, entries[-1])
        assert entries[-1]["data"] == {"reason": "worker stopped"}, name
    # And each worker said it stopped, on the events stream
    stops = {e["group"]: e["pid"] for e in events(r, prefix, "worker_stop")}
    assert stops == {g: str(pid) for g, pid in pids.items()}
    # And before closing, each worker unsubscribed every channel it held
    subscribed = set()
    for frame in emulator.sent_frames():
        msg = orjson.loads(frame.text)
        if isinstance(msg, dict) and msg.get("event") == "subscribed":
            subscribed.add((frame.conn_id, msg["chanId"]))
    left = set()
    for frame in emulator.received_frames():
        msg = orjson.loads(frame.text)
        if isinstance(msg, dict) and msg.get("event") == "unsubscribe":
            left.add((frame.conn_id, msg["chanId"]))
    assert len(subscribed) == len(everything)
    assert left == subscribed


def test_worker_that_does_not_stop_is_killed_after_stop_timeout(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A worker that ignores SIGTERM (frozen) is SIGKILLed after stop_timeout; exit 0 in 10 s."""
    # Given health keys that live 6 s (interval 2 s) and a stop timeout of 1 s
    config = make_config(tmp_path, emulator, prefix, stop_timeout=1, interval=2)
    supervisor = spawn("run", "-c", str(config))
    pids = {g: wait_until(lambda g=g: ok_pid(r, prefix, g), 30, f"{g} ok") for g in STREAMS}
    # When worker a is frozen and the supervisor is asked to stop
    os.kill(pids["a"], signal.SIGSTOP)
    supervisor.signal(signal.SIGTERM)
    # Then the supervisor escalates, and exits 0 within 10 s with no worker left
    assert supervisor.wait(10) == 0, supervisor.output()
    assert f"worker a (pid {pids['a']}) did not stop in 1s: killing it" in supervisor.output()
    assert not alive(pids["a"]) and not alive(pids["b"])
    # And worker b stopped in order while a's streams stay consistent (no stop reset: killed)
    assert r.exists(health_key(prefix, "b")) == 0
    for name in STREAMS["b"]:
        entries = read_stream(r, f"{prefix}:{name}")
        assert_well_formed(entries)
        assert entries[-1]["data"] == {"reason": "worker stopped"}, name
    for name in STREAMS["a"]:
        entries = read_stream(r, f"{prefix}:{name}")
        assert_well_formed(entries)
        assert {"reason": "worker stopped"} not in [e["data"] for e in entries], name
    # And no health key still claims that the killed worker's group is ok
    assert health(r, prefix, "a").get("status") != "ok", health(r, prefix, "a")


def test_workers_stop_when_the_supervisor_is_killed(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """SIGKILL on the supervisor: its workers do not live on as orphans."""
    supervisor = spawn("run", "-c", str(make_config(tmp_path, emulator, prefix)))
    pids = [wait_until(lambda g=g: ok_pid(r, prefix, g), 30, f"{g} ok") for g in STREAMS]
    supervisor.signal(signal.SIGKILL)
    supervisor.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in pids), 15, "the orphaned workers to exit")
    for group in STREAMS:
        wait_until(lambda g=group: not r.exists(health_key(prefix, g)), 10, f"{group} gone")


def test_events_record_each_spawn_and_exit_with_group_and_pid(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """The events stream has worker_spawn, worker_start and worker_exit with group and pid."""
    supervisor = spawn("run", "-c", str(make_config(tmp_path, emulator, prefix)))
    pids = {g: wait_until(lambda g=g: ok_pid(r, prefix, g), 30, f"{g} ok") for g in STREAMS}
    new_b = kill_and_wait_restart(r, prefix, "b", pids["b"])
    spawned = [(e["group"], e["pid"], e["source"]) for e in events(r, prefix, "worker_spawn")]
    assert sorted(spawned) == sorted(
        [
            ("a", str(pids["a"]), "supervisor"),
            ("b", str(pids["b"]), "supervisor"),
            ("b", str(new_b), "supervisor"),
        ]
    )
    started = sorted((e["group"], e["pid"]) for e in events(r, prefix, "worker_start"))
    assert started == sorted([("a", str(pids["a"])), ("b", str(pids["b"])), ("b", str(new_b))])
    exits = [(e["group"], e["pid"], e["code"]) for e in events(r, prefix, "worker_exit")]
    assert exits == [("b", str(pids["b"]), str(-signal.SIGKILL))]
    assert all(int(e["ts"]) > 1.6e12 for e in events(r, prefix, "worker_spawn"))
    assert supervisor.popen.poll() is None


def test_restart_backoff_grows_while_a_worker_keeps_dying_early(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A worker killed before startsecs waits ~1 s, then ~2 s, then ~4 s before its restart."""
    config = make_config(tmp_path, emulator, prefix, startsecs=120, backoff_max=60)
    spawn("run", "-c", str(config))
    pid = wait_until(lambda: ok_pid(r, prefix, "b"), 30, "b ok")
    for _ in range(3):
        pid = kill_and_wait_restart(r, prefix, "b", pid)
    delays = [float(e["restart_in"]) for e in events(r, prefix, "worker_exit", "b")]
    assert len(delays) == 3, delays
    for delay, base in zip(delays, (1, 2, 4), strict=True):
        assert 0.5 * base <= delay <= 1.5 * base, delays


def test_restart_backoff_resets_after_startsecs_of_proven_health(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A worker that ran startsecs before dying is restarted after the first, short delay."""
    config = make_config(tmp_path, emulator, prefix, startsecs=1, backoff_max=60)
    spawn("run", "-c", str(config))
    pid = wait_until(lambda: ok_pid(r, prefix, "b"), 30, "b ok")
    for _ in range(3):
        spawned = int(events(r, prefix, "worker_spawn", "b")[-1]["ts"])
        # the worker has reported health for well over startsecs since it was spawned
        wait_until(
            lambda s=spawned: int(health(r, prefix, "b").get("updated", 0)) - s > 2000,
            30,
            "the worker to run for startsecs",
        )
        pid = kill_and_wait_restart(r, prefix, "b", pid)
    delays = [float(e["restart_in"]) for e in events(r, prefix, "worker_exit", "b")]
    assert len(delays) == 3 and all(0.5 <= d <= 1.5 for d in delays), delays


def test_worker_refused_by_its_config_is_not_restarted(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """A worker exiting with the config code stays down; the other group carries on."""
    # Given a supervisor running groups a and b
    config = make_config(tmp_path, emulator, prefix)
    supervisor = spawn("run", "-c", str(config))
    pid_a = wait_until(lambda: ok_pid(r, prefix, "a"), 30, "a ok")
    pid_b = wait_until(lambda: ok_pid(r, prefix, "b"), 30, "b ok")
    # When the file is edited so that group a no longer exists, and worker a dies
    config.write_text(config.read_text().replace('name = "a"', 'name = "renamed"'))
    os.kill(pid_a, signal.SIGKILL)
    (fatal,) = wait_until(lambda: events(r, prefix, "worker_fatal", "a"), 30, "worker_fatal a")
    # Then its restart exited with the config code and is not restarted again
    assert fatal["code"] == "2"
    assert "no group named 'a'" in supervisor.output()
    # (witness: a later death of worker b is handled, and a is still not respawned)
    new_b = kill_and_wait_restart(r, prefix, "b", pid_b)
    assert len(events(r, prefix, "worker_spawn", "a")) == 2  # the first, and the refused one
    assert len(events(r, prefix, "worker_fatal", "a")) == 1
    assert not r.exists(health_key(prefix, "a"))
    assert ok_pid(r, prefix, "b") == new_b
    assert supervisor.popen.poll() is None, supervisor.output()


def test_supervisor_exits_1_when_no_group_can_run(
    emulator: Any, r: redis.Redis, prefix: str, spawn: Any, tmp_path: Path
) -> None:
    """When every worker exits with the config code the supervisor gives up with exit 1."""
    config = make_config(tmp_path, emulator, prefix)
    supervisor = spawn("run", "-c", str(config))
    pids = [wait_until(lambda g=g: ok_pid(r, prefix, g), 30, f"{g} ok") for g in STREAMS]
    # When the file becomes unreadable and both workers die
    config.write_text("[bitfinex\n")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # Then each restart is refused, and the supervisor exits 1 instead of looping
    assert supervisor.wait(30) == 1, supervisor.output()
    fatal = sorted((e["group"], e["code"]) for e in events(r, prefix, "worker_fatal"))
    assert fatal == [("a", "2"), ("b", "2")]
    assert len(events(r, prefix, "worker_spawn")) == 4
    assert "no group can run" in supervisor.output()


# -- pure parts -----------------------------------------------------------------------------


class Extreme(random.Random):
    """A random source that always draws the lowest or the highest value."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(("failures", "base"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)])
def test_restart_delay_doubles_from_one_second_with_jitter(failures: int, base: float) -> None:
    """The n-th consecutive failure waits 2**(n-1) s, jittered within ±50 %."""
    assert restart_delay(failures, cap=60, rng=Extreme(high=False)) == 0.5 * base
    assert restart_delay(failures, cap=60, rng=Extreme(high=True)) == 1.5 * base
    assert 0.5 * base <= restart_delay(failures, cap=60, rng=random.Random(failures)) <= 1.5 * base


@pytest.mark.parametrize("failures", [6, 7, 20, 1000])
def test_restart_delay_never_exceeds_backoff_max(failures: int) -> None:
    """`backoff_max` is the longest wait before a restart, jitter included."""
    for rng in (Extreme(high=False), Extreme(high=True), random.Random(failures)):
        delay = restart_delay(failures, cap=30, rng=rng)
        assert 0 < delay <= 30, delay
    assert restart_delay(failures, cap=30, rng=Extreme(high=False)) >= 15


def test_child_refuses_transitions_not_in_the_table() -> None:
    """A child moves only along TRANSITIONS; FATAL is never followed by STARTING."""
    child = Child("a", state=ChildState.STARTING)
    child.transition(ChildState.RUNNING)
    child.transition(ChildState.BACKOFF)
    child.transition(ChildState.STARTING)
    child.transition(ChildState.FATAL)
    with pytest.raises(LocalProtocolError):
        child.transition(ChildState.STARTING)
    assert ChildState.STARTING not in TRANSITIONS[ChildState.FATAL]
    assert ChildState.STARTING not in TRANSITIONS[ChildState.STOPPING]
    assert TRANSITIONS[ChildState.STOPPED] == frozenset()
