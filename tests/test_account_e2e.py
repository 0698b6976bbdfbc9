"""End to end for ``[[accounts]]``: a worker subprocess, the emulator's accounts over real
WebSockets, the real redis-server (SPEC §7, §8).

The account streams are checked entry by entry against the channel-0 frames the emulator
logged; a wrong secret, a drop and restarts are injected and their traces read back from
the worker's log, the events stream, the health hash, ``status --json`` and every Redis key.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from bridge.account_records import ABBREVIATIONS, SNAPSHOTTED, STREAMS, record
from bridge.credentials import Secret
from bridge.emulator import Emulator
from bridge.nonce import nonce_key
from tests.conftest import REDIS_URL, ROOT, Proc, wait_until
from tests.feedcheck import (
    assert_stream_faithful,
    assert_well_formed,
    caught_up,
    epochs,
    read_stream,
)

KEY = "e2eKey" + uuid.uuid4().hex
SECRET = "e2eSecret" + uuid.uuid4().hex
NAMES = [f"account:main:{kind}" for kind in STREAMS]
Epochs = dict[str, list[list[tuple[str, Any]]]]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """An emulator that knows the test account; fast ticks, 1 s heartbeats."""
    emulator = Emulator(port=0, heartbeat_interval=1.0, tick_interval=0.02, seed=11,
                        connect_limit=None, accounts={KEY: SECRET})  # fmt: skip
    emulator.start()
    yield emulator
    emulator.stop()


class Bridge:
    """A worker for group ``g`` (one ticker) and account ``main``, and what to read back."""

    def __init__(
        self, r: redis.Redis, prefix: str, emu: Emulator, spawn: Callable[..., Proc], tmp: Path
    ) -> None:
        self.r, self.prefix, self.emu, self.spawn = r, prefix, emu, spawn
        self.path = tmp / "bridge.toml"
        self.path.write_text(
            f'[bitfinex]\nurl = "{emu.url}"\nauth_url = "{emu.url}"\nchannel_timeout = 3.0\n'
            f"connection_timeout = 2.0\nping_interval = 0.5\n\n"
            f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{prefix}"\n\n[health]\ninterval = 0.5\n\n'
            '[[groups]]\nname = "g"\nsymbols = ["tBTCUSD"]\nchannels = ["ticker"]\n\n'
            '[[accounts]]\nname = "main"\ngroup = "g"\napi_key_env = "BFX_T_KEY"\n'
            'api_secret_env = "BFX_T_SECRET"\n'
        )
        self.env = {"BFX_T_KEY": KEY, "BFX_T_SECRET": SECRET}
        self.worker: Proc | None = None

    def start(self, secret: str = SECRET) -> Proc:
        self.env["BFX_T_SECRET"] = secret
        self.worker = self.spawn("worker", "-c", str(self.path), "--group", "g", env=self.env)
        return self.worker

    def stream(self, name: str) -> list[dict[str, Any]]:
        return read_stream(self.r, f"{self.prefix}:{name}")

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in read_stream(self.r, f"{self.prefix}:events") if e["type"] == kind]

    def health(self) -> dict[str, str]:
        raw: Any = self.r.hgetall(f"{self.prefix}:health:g")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def wait_epochs(self, count: int, what: str) -> None:
        wait_until(lambda: all(len(epochs(self.stream(n))) >= count for n in NAMES), 30, what)

    def settle(self) -> Epochs:
        """Pause the emulator; wait until Redis holds all it sent on channel 0."""
        self.emu.pause()
        sent = expected_epochs(self.emu.sent_frames())

        def done() -> bool:
            return all(caught_up(self.r, f"{self.prefix}:{n}", sent[n]) for n in NAMES)

        wait_until(done, 30, "Redis to hold every account message the emulator sent")
        return sent

    def everything_in_redis(self) -> bytes:
        """Every key under the prefix and every value, as one blob to grep."""
        blob = b""
        for key in self.r.scan_iter(f"{self.prefix}:*"):
            kind = self.r.type(key)
            value: Any
            if kind == b"stream":
                value = self.r.xrange(key)
            elif kind == b"hash":
                value = self.r.hgetall(key)
            elif kind == b"zset":  # connection pacing
                value = self.r.zrange(key, 0, -1, withscores=True)
            else:
                value = self.r.get(key)
            blob += key + b"\n" + repr(value).encode() + b"\n"
        return blob


@pytest.fixture
def bridge(
    r: redis.Redis, prefix: str, emu: Emulator, spawn: Callable[..., Proc], tmp_path: Path
) -> Bridge:
    """The worker harness of one test (its prefix, its emulator)."""
    return Bridge(r, prefix, emu, spawn, tmp_path)


def expected_epochs(frames: list[Any]) -> Epochs:
    """Per account stream, one list of (kind, data) per auth session, as the emulator sent
    them: on OK an empty snapshot of each stream Bitfinex does not snapshot; a server
    snapshot starts its stream's epoch; each later message is one update with ``event``."""
    out: Epochs = defaultdict(list)
    current: dict[tuple[int, str], list[tuple[str, Any]]] = {}
    authed: set[int] = set()

    def start(conn: int, kind: str, records: list[Any]) -> None:
        current[(conn, kind)] = [("snapshot", records)]
        out[f"account:main:{kind}"].append(current[(conn, kind)])

    for frame in frames:
        msg = orjson.loads(frame.text) if frame.text[:1] in "[{" else None
        if isinstance(msg, dict) and msg.get("event") == "auth" and msg.get("status") == "OK":
            authed.add(frame.conn_id)
            for kind in STREAMS:
                if kind not in SNAPSHOTTED:
                    start(frame.conn_id, kind, [])
        elif isinstance(msg, list) and msg[0] == 0 and frame.conn_id in authed:
            if msg[1] not in ABBREVIATIONS:
                continue
            kind, is_snapshot = ABBREVIATIONS[msg[1]]
            if is_snapshot:
                start(frame.conn_id, kind, [record(kind, e) for e in msg[2]])
            else:
                current[(frame.conn_id, kind)].append(
                    ("update", {"event": msg[1], **record(kind, msg[2])})
                )
    return dict(out)


def auth_requests(emu: Emulator) -> list[dict[str, Any]]:
    """Every auth event the emulator received, in order."""
    received = [orjson.loads(f.text) for f in emu.received_frames() if '"auth"' in f.text]
    return [m for m in received if m.get("event") == "auth"]


def auth_answers(emu: Emulator) -> list[dict[str, Any]]:
    sent = [orjson.loads(f.text) for f in emu.sent_frames() if f.text.startswith('{"event":"auth"')]
    return sent


def test_snapshots_and_updates_land_as_the_emulator_sent_them(bridge: Bridge) -> None:
    """Every account stream: reset, then one epoch equal to what channel 0 carried."""
    # Given a worker with one account, when the account script has run a few rounds
    worker = bridge.start()
    bridge.wait_epochs(1, "a snapshot on every account stream")
    wait_until(lambda: len(bridge.stream("account:main:orders")) > 30, 30, "order updates")
    sent = bridge.settle()
    # Then each stream is: worker-started reset, snapshot, updates, exactly as sent
    for name in NAMES:
        entries = bridge.stream(name)
        assert entries[0]["kind"] == "reset" and entries[0]["data"] == {"reason": "worker started"}
        assert_well_formed(entries)
        (epoch,) = epochs(entries)
        assert [(e["kind"], e["data"]) for e in epoch] == sent[name][0], name
        assert all("mts" in e for e in epoch[1:]), name
    # And the values are the ledger's: the resting order, te then tu with its fee
    (snapshot, *updates) = epochs(bridge.stream("account:main:orders"))[0]
    resting = snapshot["data"][0]
    assert {k: resting[k] for k in ("symbol", "amount", "price", "order_status")} == {
        "symbol": "tBTCUSD", "amount": -0.5, "price": 99000, "order_status": "ACTIVE"}  # fmt: skip
    assert {u["data"]["event"] for u in updates} == {"on", "ou", "oc"}
    trades = [e["data"] for e in epochs(bridge.stream("account:main:trades"))[0][1:]]
    assert [t["event"] for t in trades[:2]] == ["te", "tu"] and trades[0]["id"] == trades[1]["id"]
    assert "fee" not in trades[0] and trades[1]["fee"] < 0 and trades[1]["fee_currency"]
    assert bridge.stream("account:main:funding_trades")[1]["data"] == []
    # And health counts the account, with nothing refused
    wait_until(lambda: bridge.health().get("accounts") == "1/1", 10, "accounts 1/1")
    assert bridge.health()["auth_failures"] == "0" and bridge.health()["status"] == "ok"
    assert worker.popen.poll() is None, worker.output()


def test_wrong_secret_fails_once_per_backoff_step_and_leaks_nowhere(bridge: Bridge) -> None:
    """FAILED 10100 per attempt, each followed by a backoff; health degraded; the key and the
    secret are in no log line, event, health field, status output or Redis key or value."""
    wrong = "wrongSecret" + uuid.uuid4().hex
    worker = bridge.start(secret=wrong)
    wait_until(lambda: len(bridge.events("auth_failed")) >= 3, 40, "three refused auths")

    def refused() -> dict[str, str] | None:
        health = bridge.health()
        return health if int(health.get("auth_failures", 0)) >= 3 else None

    health = wait_until(refused, 10, "health to count three auth failures")
    assert (health["status"], health["accounts"]) == ("degraded", "0/1")
    assert worker.popen.poll() is None, "the worker keeps running (no crash loop)"
    status = subprocess.run(
        [sys.executable, "-m", "bridge", "status", "-c", str(bridge.path), "--json"],
        capture_output=True,
        cwd=ROOT,
        timeout=30,
        env=dict(os.environ),
    )  # fmt: skip  (no credentials needed)
    assert status.returncode == 1 and b'"accounts": "0/1"' in status.stdout
    redis_while_running = bridge.everything_in_redis()  # the health hash goes at stop
    assert f"{bridge.prefix}:health:g".encode() in redis_while_running
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    # Each attempt: one auth sent, one FAILED back, one event; then a retry with backoff
    failed = bridge.events("auth_failed")
    answers = auth_answers(bridge.emu)
    assert len(auth_requests(bridge.emu)) == len(answers)
    assert len(answers) - len(failed) in (0, 1)  # the last answer may come as the worker stops
    assert {(a["status"], a["code"], a["msg"]) for a in answers} == {
        ("FAILED", 10100, "apikey: digest invalid")}  # fmt: skip
    for event in failed:
        assert (event["account"], event["code"], event["msg"]) == (
            "main", "10100", "apikey: digest invalid")  # fmt: skip
        assert "$BFX_T_SECRET" in event["fix"] and "$BFX_T_KEY" in event["fix"]
    sequence = [e["type"] for e in read_stream(bridge.r, f"{bridge.prefix}:events")
                if e["type"] in ("auth_failed", "connect_failed")
                and e.get("connection") == "g/account:main"]  # fmt: skip
    assert sequence[: 2 * (len(failed) - 1)] == ["auth_failed", "connect_failed"] * (
        len(failed) - 1
    )
    retries = [float(e["retry_in"]) for e in bridge.events("connect_failed")]
    assert retries and all(0 <= delay <= 30 for delay in retries)
    assert "10100 apikey: digest invalid" in worker.output()
    # The key was sent (so looking for it means something), and leaked nowhere
    assert {a["apiKey"] for a in auth_requests(bridge.emu)} == {KEY}
    outputs = {
        "worker log": worker.output().encode(),
        "status --json": status.stdout + status.stderr,
        "redis while running": redis_while_running,
        "redis after the stop": bridge.everything_in_redis(),
    }
    for where, text in outputs.items():
        for credential in (KEY, wrong, SECRET):
            assert credential.encode() not in text, f"a credential in the {where}"


def test_a_drop_gives_reset_and_fresh_snapshots_after_reauth(bridge: Bridge) -> None:
    """The auth connection is reset: every account stream gets a reset and a new epoch, as
    sent by the new session; the public stream is not touched."""
    bridge.start()
    bridge.wait_epochs(1, "first snapshots")
    wait_until(lambda: len(bridge.stream("account:main:orders")) > 10, 30, "order updates")
    (session,) = bridge.emu.accounts.sessions(KEY)
    bridge.emu.drop(session)
    bridge.wait_epochs(2, "a new epoch on every account stream")
    sent = bridge.settle()
    for name in NAMES:
        entries = bridge.stream(name)
        assert_stream_faithful(entries, sent[name], name)
        reasons = [e["data"]["reason"] for e in entries if e["kind"] == "reset"]
        assert reasons[0] == "worker started" and len(reasons) == 2, (name, reasons)
        assert "receive" in reasons[1] or "closed" in reasons[1], reasons
        assert len(epochs(entries)) == 2
    assert len(epochs(bridge.stream("ticker:tBTCUSD"))) == 1
    assert len(auth_requests(bridge.emu)) == 2


def test_restarted_worker_never_sends_a_smaller_nonce(bridge: Bridge) -> None:
    """Nonces strictly increase across a reconnect and a SIGKILL + restart, even when an
    earlier run used nonces ahead of this host's clock (they are kept in Redis)."""
    # Given an earlier run that authenticated with a nonce far ahead of the clock
    ahead = time.time_ns() // 1000 + 10**10
    bridge.r.set(nonce_key(bridge.prefix, Secret(KEY)), ahead)
    bridge.emu.accounts.use_nonce(KEY, ahead)
    # When a worker authenticates, reconnects, is killed, and a new one authenticates
    first = bridge.start()
    wait_until(lambda: len(bridge.events("authenticated")) == 1, 30, "first auth")
    bridge.emu.drop(bridge.emu.accounts.sessions(KEY)[0])
    wait_until(lambda: len(bridge.events("authenticated")) == 2, 30, "auth after the drop")
    first.signal(signal.SIGKILL)
    first.wait(10)
    bridge.start()
    wait_until(lambda: len(bridge.events("authenticated")) == 3, 30, "auth after the restart")
    # Then every nonce sent is larger than the one before, and every auth succeeded
    nonces = [a["authNonce"] for a in auth_requests(bridge.emu)]
    assert len(nonces) == 3 and nonces[0] > ahead
    assert all(a < b for a, b in itertools.pairwise(nonces)), nonces
    assert [a["status"] for a in auth_answers(bridge.emu)] == ["OK"] * 3


def test_nonce_small_is_reported_with_what_to_do(bridge: Bridge) -> None:
    """Another client used the key with larger nonces: FAILED 10114, the fix says to give
    the bridge a key of its own; the worker keeps retrying with backoff."""
    bridge.emu.accounts.use_nonce(KEY, time.time_ns() // 1000 + 10**12)
    worker = bridge.start()
    wait_until(lambda: len(bridge.events("auth_failed")) >= 2, 30, "refused auths")
    event = bridge.events("auth_failed")[0]
    assert (event["code"], event["msg"]) == ("10114", "nonce: small")
    assert "API key of its own" in event["fix"]
    assert "nonce: small" in worker.output() and worker.popen.poll() is None
