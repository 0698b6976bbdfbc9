"""One symbol group: shards → connections → streams → publisher.

:class:`Worker` wires the pieces: it plans the group's subscriptions into connections of at
most ``bitfinex.channel_limit`` channels, gives each a :class:`~bridge.connection.Connection`,
turns the protocol events of every connection into stream entries, and hands them to the one
:class:`~bridge.publisher.Publisher`. Each ``[[accounts]]`` entry of the group gets a
connection of its own to ``bitfinex.auth_url``, driven by an
:class:`~bridge.account.AccountProtocol`, whose streams are handled like the public ones
(SPEC §8). It stops in order: stop reading, unsubscribe, write a ``reset`` on every live
stream, flush to Redis, close.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

import redis

from bridge import __version__
from bridge.account import AccountProtocol
from bridge.account_config import Account
from bridge.account_events import Authenticated, AuthFailed
from bridge.config import Config, Group
from bridge.connection import RECV_TIMEOUT, Connection, Core
from bridge.errors import BridgeError
from bridge.events import (
    EntriesLost,
    Event,
    Interrupted,
    Maintenance,
    Malformed,
    ServerError,
    ServerInfo,
    Snapshot,
    Subscribed,
    SubscribeFailed,
    Update,
)
from bridge.health import HealthReporter, Vitals, health_key, status_of
from bridge.log import redact
from bridge.nonce import NonceSource, nonce_key
from bridge.pacing import HostPacer, SharedPacer
from bridge.protocol import Protocol
from bridge.publisher import Publisher, connect_redis
from bridge.readloop import ReadLoop
from bridge.resp import RespWriter
from bridge.shards import plan
from bridge.streams import EVENTS_MAXLEN, Entry, EpochSource, Stream
from bridge.subscription import Subscription

__all__ = ["Worker"]

log = logging.getLogger(__name__)

STOP_JOIN_TIMEOUT = 3.0
STOP_FLUSH_TIMEOUT = 4.0
MALFORMED_LOGGED = 20  # then one line per thousand
GC_THRESHOLDS = (100_000, 50, 100)  # see tune_gc
FULL_GC_EVERY = 300.0  # seconds: cycles (a dropped connection's traceback) are freed anyway
AUTH_CONNECTS, AUTH_WINDOW = 5, 15.0  # new connections to the auth domain (ws-v2.md §1.2)


class Worker:
    """Runs one group until :meth:`request_stop` (or SIGTERM/SIGINT in :meth:`run`)."""

    def __init__(self, config: Config, group: Group, client: redis.Redis | None = None) -> None:
        self.config = config
        self.group = group
        self.prefix: str = config["redis.prefix"]
        self.stopping = threading.Event()
        self.run_id = secrets.token_hex(4)
        self.redis = client or connect_redis(config["redis.url"])
        self.publisher = Publisher(
            self.redis,
            maxlen=config["redis.maxlen"],
            batch=config["redis.batch"],
            buffer=config["redis.buffer"],
            on_lost=self._on_lost,
            writer=RespWriter(config["redis.url"]) if client is None else None,
        )
        epochs = EpochSource(self.run_id)
        self.streams = {
            sub: Stream(f"{self.prefix}:{sub.name}", epochs, config["redis.maxlen"])
            for sub in group.subscriptions
        }
        self._owner: dict[str, tuple[Subscription, Connection]] = {}
        self.counters = {"malformed": 0, "subscribe_errors": 0,
                         "auth_failures": 0}  # fmt: skip
        self.started_ms = _now_ms()
        self._ever_ready = False
        self._rate_mark = (time.monotonic(), 0)
        self._msg_rate = 0.0
        self.health = HealthReporter(
            connect_redis(config["redis.url"], socket_timeout=2),
            health_key(self.prefix, group.name),
            config["health.interval"],
            self.collect,
        )
        self.metrics_server: Any = None
        per_minute = config["bitfinex.connections_per_minute"]
        pacing_client = connect_redis(config["redis.url"], socket_timeout=1,
                                      socket_connect_timeout=1)  # fmt: skip
        host = HostPacer(pacing_client, self.prefix, per_minute, 60.0)  # shared by the host
        pacer = SharedPacer(per_minute, 60.0, host)
        self.read_loop = ReadLoop(RECV_TIMEOUT)  # one thread reads every connection
        self.connections: list[Connection] = []
        for index, shard in enumerate(plan(group.subscriptions, config["bitfinex.channel_limit"])):
            protocol = Protocol(
                shard,
                verify_checksums=config["bitfinex.verify_checksums"],
                trades_tu=group.trades_tu,
                **self._timeouts(),
            )
            conn = self._connection(f"{index + 1}", config["bitfinex.url"], protocol, pacer)
            self.connections.append(conn)
            for sub in shard:
                self._owner[self.streams[sub].key] = (sub, conn)
        self._nonces: redis.Redis | None = None
        self._auth_pacer = SharedPacer(AUTH_CONNECTS, AUTH_WINDOW)
        self.accounts = config.accounts_of(group.name)
        self.account_connections = [self._account_connection(a, epochs) for a in self.accounts]

    def _account_connection(self, account: Account, epochs: EpochSource) -> Connection:
        """The connection of one ``[[accounts]]`` entry, and its streams (SPEC §8)."""
        config = self.config
        if self._nonces is None:
            self._nonces = connect_redis(config["redis.url"])
        nonce = NonceSource(self._nonces, nonce_key(self.prefix, account.api_key))
        core = AccountProtocol(account, nonce, **self._timeouts())
        url = config["bitfinex.auth_url"]
        conn = self._connection(f"account:{account.name}", url, core, self._auth_pacer)
        for feed in core.feeds.values():
            stream = Stream(f"{self.prefix}:{feed.name}", epochs, config["redis.maxlen"])
            self.streams[feed] = stream
            self._owner[stream.key] = (feed, conn)
        return conn

    def _timeouts(self) -> dict[str, float]:
        """The silence and ping settings every core of this worker is made with."""
        config = self.config
        return {"channel_timeout": config["bitfinex.channel_timeout"],
                "connection_timeout": config["bitfinex.connection_timeout"],
                "ping_interval": config["bitfinex.ping_interval"]}  # fmt: skip

    def _connection(self, name: str, url: str, core: Core, pacer: SharedPacer) -> Connection:
        """A connection of this worker (``GROUP/name``), read by its read loop."""
        return Connection(
            f"{self.group.name}/{name}",
            url,
            core,
            on_events=self._on_events,
            pacer=pacer,
            stopping=self.stopping,
            report=self._event,
            throttle_wait=self.config["bitfinex.throttle_wait"],
            loop=self.read_loop,
        )

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run in the foreground until SIGTERM/SIGINT; return the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        tune_gc()
        self.start()
        collected = time.monotonic()
        while not self.stopping.wait(1.0):
            if time.monotonic() - collected > FULL_GC_EVERY:  # see tune_gc
                gc.collect()
                collected = time.monotonic()
        self.stop()
        return 0

    def start(self) -> None:
        """Announce the new run on every stream, then connect."""
        log.info(
            "= worker %s (pid %d) starting: %d streams over %d connections, %d accounts, "
            "Redis %s", self.group.name, os.getpid(), len(self.streams), len(self.connections),
            len(self.accounts), redact(self.config["redis.url"]),
        )  # fmt: skip
        self.publisher.start()
        self.health.start()
        if self.config["metrics.port"]:
            self._serve_metrics()
        ts = _now_ms()
        for stream in self.streams.values():
            entry = stream.reset("worker started", ts)
            if entry is not None:
                self.publisher.put(entry)
        self._event("worker_start", pid=os.getpid(), host=socket.gethostname())
        for conn in self.connections + self.account_connections:
            conn.start()

    def metrics_port(self) -> int:
        """``[metrics] port`` plus the group's index in the config, so that the workers of
        one supervisor never compete for one port."""
        index = [g.name for g in self.config.groups].index(self.group.name)
        port: int = self.config["metrics.port"] + index
        return port

    def _serve_metrics(self) -> None:
        from bridge.metrics import serve_metrics

        host, port = self.config["metrics.host"], self.metrics_port()
        try:
            self.metrics_server = serve_metrics(self, host, port)
        except OSError as exc:
            raise BridgeError(
                f"cannot serve metrics on {host}:{port} ({exc}); free the port or change "
                "[metrics] port (each group uses port + its index in the config)"
            ) from exc
        log.info("= metrics for %s on http://%s:%d/metrics", self.group.name, host, port)

    def request_stop(self) -> None:
        """Ask every thread to stop (safe from any thread); readers notice within 0.25 s."""
        self.stopping.set()
        self.publisher.release()

    def stop(self) -> None:
        """Stop in order: connections (unsubscribe, resets), then flush Redis."""
        self.request_stop()
        deadline = time.monotonic() + STOP_JOIN_TIMEOUT  # one deadline for all, not each
        for conn in self.connections + self.account_connections:
            conn.join(max(0.1, deadline - time.monotonic()))
        self.read_loop.close(timeout=0.5)  # instant unless a handler is stuck: keep the budget
        self._event("worker_stop", pid=os.getpid())
        self.publisher.stop(STOP_FLUSH_TIMEOUT)
        self.health.stop(delete=True)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        log.info(
            "= worker %s stopped (%d entries written)", self.group.name, self.publisher.written
        )

    # -- health (on the health thread) --------------------------------------------------------

    def collect(self, measure_rate: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """The health hash fields and the per-stream detail, as of now.

        The message rate is measured between the health thread's calls; other readers
        (metrics) pass ``measure_rate=False`` and get the last measured value.
        """
        conns = self.connections + self.account_connections
        expected = len(self.group.subscriptions)
        if not self._ever_ready:
            answered = sum(c.protocol.answered_count() for c in conns)
            self._ever_ready = answered == expected + len(self.accounts)
        subscribed = sum(c.protocol.subscribed_count() for c in self.connections)
        vitals = Vitals(
            ever_ready=self._ever_ready,
            # from the live protocol state: a reconnect ends maintenance even when its 20061
            # never arrived (bitfinex-ws-v2.md §2.2 says it may not)
            maintenance=any(c.protocol.maintenance for c in conns),
            connections=sum(c.connected for c in conns),
            shards=len(conns),
            subscribed=subscribed,
            expected=expected,
            redis_ok=self.publisher.available,
            buffered=self.publisher.buffered,
            buffer_limit=self.publisher.buffer,
            accounts=sum(c.protocol.subscribed_count() for c in self.account_connections),
            accounts_expected=len(self.accounts),
        )
        msgs = sum(c.msgs for c in conns)
        if measure_rate:
            now = time.monotonic()
            then, before = self._rate_mark
            self._msg_rate = (msgs - before) / (now - then) if now > then else 0.0
            self._rate_mark = (now, msgs)
        fields = {
            "status": status_of(vitals),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "updated": _now_ms(),
            "started": self.started_ms,
            "connections": vitals.connections,
            "subscribed": subscribed,
            "expected": expected,
            "msgs": msgs,
            "msg_rate": round(self._msg_rate, 1),
            "reconnects": sum(c.reconnects for c in conns),
            "checksum_errors": sum(c.protocol.checksum_errors for c in conns),
            "malformed": self.counters["malformed"],
            "subscribe_errors": self.counters["subscribe_errors"],
            "accounts": f"{vitals.accounts}/{vitals.accounts_expected}",
            "auth_failures": self.counters["auth_failures"],
            "last_msg": int(max((c.last_msg for c in conns), default=0.0) * 1000),
            "buffered": vitals.buffered,
            "dropped": self.publisher.dropped,
            "written": self.publisher.written,
            "backpressure": self.publisher.stalls,
            "redis": "ok" if vitals.redis_ok else "unavailable",
            "run_id": self.run_id,
            "version": __version__,
        }
        streams = {
            sub.name: {"state": st.state.value, "epoch": st.epoch, "seq": st.seq,
                       "last_ts": st.last_ts, "entries": st.entries}
            for sub, st in self.streams.items()
        }  # fmt: skip
        return fields, streams

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()  # only record it; the main loop acts

    # -- events -> entries (on the read loop's thread; resets also on connection threads) -----

    def _on_events(self, conn: Connection, events: list[Event]) -> None:
        ts = _now_ms()
        streams = self.streams
        batch: list[Entry] = []  # handed to the writer at once, in order
        for event in events:
            kind = type(event)
            if kind is Update:
                entry = streams[event.sub].update(event.record, ts, event.mts)  # type: ignore[attr-defined]
                if entry is not None:
                    batch.append(entry)
            elif kind is Snapshot:
                snap: Any = event
                batch += streams[snap.sub].snapshot(snap.records, ts, snap.mts)
            else:
                if batch:
                    self.publisher.put_all(batch)
                    batch = []
                self._on_control(conn, event, ts)
        if batch:
            self.publisher.put_all(batch)

    def _on_control(self, conn: Connection, event: Event, ts: int) -> None:
        if isinstance(event, Interrupted | EntriesLost):
            forced = isinstance(event, EntriesLost)
            entry = self.streams[event.sub].reset(event.reason, ts, force=forced)
            if entry is not None:
                self.publisher.put(entry)
            level = logging.INFO if event.reason == "worker stopped" else logging.WARNING
            log.log(level, "! %s: %s", conn.name, event)
            self._event("reset", stream=self.streams[event.sub].key, reason=event.reason)
        elif isinstance(event, Subscribed):
            log.debug("= %s: %s", conn.name, event)
        elif isinstance(event, SubscribeFailed):
            self.counters["subscribe_errors"] += 1
            log.warning("! %s: %s", conn.name, event)
            self._event("subscribe_error", stream=self.streams[event.sub].key,
                        code=event.code, msg=event.msg, advice=event.advice,
                        retry_in=round(event.retry_in))  # fmt: skip
        elif isinstance(event, Malformed):
            self.counters["malformed"] += 1
            count = self.counters["malformed"]
            if count <= MALFORMED_LOGGED or count % 1000 == 0:  # a flood must not flood the log
                log.warning("! %s: %s (%d malformed so far)", conn.name, event, count)
        elif isinstance(event, Maintenance):
            log.warning("= %s: %s", conn.name, event)
            self._event("maintenance", active=int(event.active), connection=conn.name)
        elif isinstance(event, ServerInfo | ServerError):
            log.info("< %s: %s", conn.name, event)
        elif isinstance(event, Authenticated | AuthFailed):
            self._on_auth(conn, event)
        else:
            log.info("= %s: %s", conn.name, event)

    def _on_auth(self, conn: Connection, event: Authenticated | AuthFailed) -> None:
        """An account's auth outcome: health, a log line and an event (never a credential)."""
        if isinstance(event, Authenticated):
            log.info("= %s: %s", conn.name, event)
            self._event("authenticated", account=event.account, connection=conn.name)
            return
        self.counters["auth_failures"] += 1
        log.warning("! %s: %s", conn.name, event)
        self._event("auth_failed", account=event.account, connection=conn.name,
                    code=event.code, msg=event.msg, fix=event.fix)  # fmt: skip

    def _on_lost(self, streams: set[str]) -> None:
        """Entries of ``streams`` were dropped: reset and resubscribe each (writer thread)."""
        for key in streams:
            owner = self._owner.get(key)
            if owner is not None:
                owner[1].report_lost(owner[0], "entries lost while Redis was unavailable")

    def _event(self, kind: str, **fields: Any) -> None:
        data = {"type": kind, "group": self.group.name, "ts": _now_ms(), "source": "worker"}
        data.update({k: str(v) for k, v in fields.items()})
        self.publisher.put(Entry(f"{self.prefix}:events", data, EVENTS_MAXLEN))  # type: ignore[arg-type]


def tune_gc() -> None:
    """Collect cycles less often in a worker process.

    Every message allocates a handful of short-lived containers (the parsed frame, its
    record, the entry), and entries wait in the writer's queue long enough to survive young
    collections, so with the default thresholds (700, 10, 10) the cycle collector ran every
    ~70 messages and kept re-walking every long-lived object: 20–25 % of the worker's time
    under bursts (docs/BENCHMARKS.md). The bridge creates almost no reference cycles;
    reference counting frees nearly everything, so collecting rarely costs little memory
    (P5 measures it). What exists at start is frozen out of full collections, and
    :meth:`Worker.run` still collects everything every FULL_GC_EVERY seconds, so that the
    cycles there are (an exception's traceback after a dropped connection) never pile up."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])


def _now_ms() -> int:
    return int(time.time() * 1000)
