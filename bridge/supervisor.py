"""The supervisor: one worker process per group, restarted when it dies, stopped in order.

``bfx-bridge run -c CONFIG`` starts ``bfx-bridge worker --group NAME`` for every group as a
child process, reaps children without blocking, restarts one that died after a jittered,
capped exponential backoff (reset once it has run ``supervisor.startsecs``), and never
restarts in a loop a worker that exited with the config or boot exit code. Signal handlers
only record the signal; the main loop acts on it: SIGTERM/SIGINT send SIGTERM to every
worker, wait ``supervisor.stop_timeout`` seconds, SIGKILL what is left, and exit 0.

Each child's state moves through :data:`TRANSITIONS` (after Supervisor's ``process.py``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import redis

from bridge.config import Config
from bridge.errors import EXIT_BOOT, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, LocalProtocolError
from bridge.health import health_key
from bridge.publisher import connect_redis
from bridge.streams import EVENTS_MAXLEN

__all__ = ["TRANSITIONS", "Child", "ChildState", "Supervisor", "restart_delay"]

log = logging.getLogger(__name__)

TICK = 0.1


class ChildState(enum.Enum):
    """Where one group's worker process stands."""

    STARTING = "starting"  # spawned, not yet running for startsecs
    RUNNING = "running"  # ran startsecs: its backoff is reset
    BACKOFF = "backoff"  # died; waiting to restart
    FATAL = "fatal"  # exited with the config or boot code: not restarted
    STOPPING = "stopping"  # SIGTERM sent
    STOPPED = "stopped"


C = ChildState
TRANSITIONS: dict[ChildState, frozenset[ChildState]] = {
    # STARTING -> RUNNING because it lived startsecs; -> BACKOFF because it died early;
    # -> FATAL because it exited with EXIT_CONFIG/EXIT_BOOT; -> STOPPING because we stop.
    C.STARTING: frozenset({C.RUNNING, C.BACKOFF, C.FATAL, C.STOPPING}),
    # RUNNING -> BACKOFF because it died; -> FATAL as above; -> STOPPING because we stop.
    C.RUNNING: frozenset({C.BACKOFF, C.FATAL, C.STOPPING}),
    # BACKOFF -> STARTING because its restart time came; -> STOPPED because we stop.
    C.BACKOFF: frozenset({C.STARTING, C.STOPPED}),
    C.FATAL: frozenset({C.STOPPED}),
    # STOPPING -> STOPPED because it exited (or was killed).
    C.STOPPING: frozenset({C.STOPPED}),
    C.STOPPED: frozenset(),
}


def restart_delay(failures: int, cap: float, rng: random.Random | None = None) -> float:
    """Backoff before restart number ``failures``: 1 s doubling, ±50 % jitter, at most cap."""
    base = 2.0 ** max(failures - 1, 0)
    return min(cap, base * (rng or random).uniform(0.5, 1.5))


@dataclass
class Child:
    """One group's worker process."""

    group: str
    state: ChildState = ChildState.STOPPED
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    exits: list[int] = field(default_factory=list)

    def transition(self, new: ChildState) -> None:
        """Move to ``new``; an edge not in TRANSITIONS is a bug."""
        if self.state is not ChildState.STOPPED and new not in TRANSITIONS[self.state]:
            raise LocalProtocolError(f"{self.group}: {self.state.value} -> {new.value}")
        self.state = new


class Supervisor:
    """Runs one worker per group of ``config`` (see the module docstring)."""

    def __init__(self, config: Config, config_path: str, *, argv0: list[str] | None = None):
        self.config = config
        self.config_path = config_path
        self.argv0 = argv0 or [sys.executable, "-m", "bridge"]
        self.children = {g.name: Child(g.name) for g in config.groups}
        self.signals: list[int] = []
        self.startsecs: float = config["supervisor.startsecs"]
        self.backoff_max: float = config["supervisor.backoff_max"]
        self.stop_timeout: float = config["supervisor.stop_timeout"]
        self._redis: redis.Redis | None = None

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit 0) or until no group can run (exit 1)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record_signal)
        log.info("= supervisor (pid %d) starting %d workers", os.getpid(), len(self.children))
        for child in self.children.values():
            self._spawn(child)
        while not self.signals:
            self._reap()
            self._promote_and_restart()
            if all(c.state is ChildState.FATAL for c in self.children.values()):
                log.error("! no group can run (each exited with a config or boot error); exiting")
                self._stop_all()
                return EXIT_FAILURE
            time.sleep(TICK)
        log.info(
            "= supervisor: %s received, stopping workers", signal.Signals(self.signals[0]).name
        )
        self._stop_all()
        return EXIT_OK

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # only record it; the main loop acts

    # -- children -----------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        args = [*self.argv0, "worker", "-c", self.config_path, "--group", child.group]
        parent = os.getpid()
        child.popen = subprocess.Popen(args, preexec_fn=lambda: _child_setup(parent))
        child.transition(ChildState.STARTING)
        child.started = time.monotonic()
        log.info("= worker %s started (pid %d)", child.group, child.popen.pid)
        self._event("worker_spawn", group=child.group, pid=child.popen.pid)

    def _reap(self) -> None:
        for child in self.children.values():
            if child.popen is None or child.state not in (ChildState.STARTING, ChildState.RUNNING):
                continue
            code = child.popen.poll()
            if code is None:
                continue
            child.exits.append(code)
            pid = child.popen.pid
            child.popen = None
            if code in (EXIT_CONFIG, EXIT_BOOT):
                child.transition(ChildState.FATAL)
                why = "bad configuration" if code == EXIT_CONFIG else "could not start"
                log.error(
                    "! worker %s (pid %d) exited %d (%s): not restarting it; "
                    "fix the cause and restart the supervisor",
                    child.group, pid, code, why,
                )  # fmt: skip
                self._event("worker_fatal", group=child.group, pid=pid, code=code)
                continue
            child.failures += 1
            delay = restart_delay(child.failures, self.backoff_max)
            child.restart_at = time.monotonic() + delay
            child.transition(ChildState.BACKOFF)
            log.warning("! worker %s (pid %d) exited %s; restarting in %.1fs",
                        child.group, pid, _describe(code), delay)  # fmt: skip
            self._event("worker_exit", group=child.group, pid=pid, code=code,
                        restart_in=f"{delay:.1f}")  # fmt: skip

    def _promote_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.state is ChildState.STARTING and now - child.started >= self.startsecs:
                child.transition(ChildState.RUNNING)
                child.failures = 0  # backoff resets only after proven health
            elif child.state is ChildState.BACKOFF and now >= child.restart_at:
                self._spawn(child)

    def _stop_all(self) -> None:
        live = [c for c in self.children.values() if c.popen is not None]
        for child in live:
            assert child.popen is not None
            child.transition(ChildState.STOPPING)
            _signal(child.popen, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and any(c.popen.poll() is None for c in live if c.popen):
            time.sleep(TICK / 2)
        for child in live:
            assert child.popen is not None
            if child.popen.poll() is None:
                log.error("! worker %s (pid %d) did not stop in %.0fs: killing it",
                          child.group, child.popen.pid, self.stop_timeout)  # fmt: skip
                _signal(child.popen, signal.SIGKILL)
                child.popen.wait(5)
                self._forget_health(child.group)  # it could not delete its own key
            child.transition(ChildState.STOPPED)
        for child in self.children.values():
            if child.state is not ChildState.STOPPED:
                child.transition(ChildState.STOPPED)
        log.info("= supervisor stopped")

    def _forget_health(self, group: str) -> None:
        """Delete a killed worker's health keys so that it is not reported alive."""
        key = health_key(self.config["redis.prefix"], group)
        try:
            if self._redis is None:
                self._redis = connect_redis(self.config["redis.url"], socket_timeout=1)
            self._redis.delete(key, f"{key}:streams")
        except redis.RedisError as exc:
            log.warning("! could not delete %s (%s); it expires on its own", key, exc)

    def _event(self, kind: str, **fields: Any) -> None:
        """Best effort: an entry on the events stream (Redis may be down; the log has it)."""
        try:
            if self._redis is None:
                self._redis = connect_redis(self.config["redis.url"], socket_timeout=1)
            data = {"type": kind, "ts": int(time.time() * 1000), "source": "supervisor"}
            data.update({k: str(v) for k, v in fields.items()})
            self._redis.xadd(f"{self.config['redis.prefix']}:events", data,  # type: ignore[arg-type]
                             maxlen=EVENTS_MAXLEN, approximate=True)  # fmt: skip
        except redis.RedisError as exc:
            log.debug("events stream not written: %s", exc)


def _child_setup(parent: int) -> None:
    """In the child before exec: default signal handlers; die with the supervisor."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    os.setpgrp()  # Ctrl-C in a terminal reaches the supervisor only; it stops workers in order
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM if the supervisor dies
        if os.getppid() != parent:  # it died before prctl took effect
            os._exit(1)


def _signal(popen: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        popen.send_signal(signum)


def _describe(code: int) -> str:
    if code < 0:
        return f"on signal {signal.Signals(-code).name}"
    return f"with code {code}"
