"""Sans-I/O core of one authenticated account connection: auth, channel 0, deadlines.

:class:`AccountProtocol` has the interface :class:`~bridge.connection.Connection` drives
(:class:`~bridge.connection.Core`: ``connect``, ``feed``, ``data_to_send``,
``next_deadline``, ``check_timeouts``, ``connection_lost``, ``resubscribe``, ``credit``,
``subscribed_count``, ``answered_count``, ``channels``), so an account connection is an
ordinary connection with a different core. Nothing here reads a clock, touches a socket or
talks to Redis: the nonce comes from an injected callable (:mod:`bridge.nonce` in
production, a counter in tests).

The session moves through :data:`TRANSITIONS`. On connect the core sends ``conf`` and the
``auth`` event (bitfinex-ws-v2.md §8.1: µs nonce, ``AUTH{nonce}`` signed with HMAC-SHA384,
``dms: 4`` only if configured, the filter if any). Channel-0 trailers (§6: ``[PUB]
[AUTH] [MTS]``, partly inferred, §13) are read tolerantly: a trailing number of timestamp
size is ``mts``; heartbeats carry PUB, ``*-req`` notifications AUTH, other data PUB then
AUTH; a skipped PUB is lost data, so the connection is reopened. On ``OK`` every account
stream gets a
snapshot that starts a new epoch: the streams Bitfinex snapshots (orders, positions,
wallets, funding offers/credits/loans) when their ``os``/``ps``/``ws``/``fos``/``fcs``/``fls``
arrives; the others, and those the filter or the key's permissions exclude, at once with an
empty list. Every later channel-0 message is one :class:`~bridge.events.Update` whose record
carries ``event`` (the abbreviation). An update that comes before its stream's snapshot is
dropped: the snapshot, sent later, already contains it.

``FAILED`` (10100 bad key or signature, 10114 ``nonce: small``) gives :class:`AuthFailed`
and a :class:`~bridge.events.Reconnect`: the connection backs off and tries again with a
new nonce. A lost connection interrupts every live stream (a ``reset``); the next ``OK``
snapshots them all again. Remote faults are events, never exceptions, and no event or
message carries the key or the secret (:meth:`AccountProtocol._scrub`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson

from bridge.account_config import Account
from bridge.account_events import AccountFeed, Authenticated, AuthFailed, advice
from bridge.account_records import ABBREVIATIONS, IGNORED, SNAPSHOTTED, STREAMS, record
from bridge.errors import LocalProtocolError
from bridge.events import (
    Event,
    Interrupted,
    Reconnect,
    ServerError,
    Snapshot,
    Update,
)
from bridge.protocol import FrameCore, info_events
from bridge.subscription import Subscription

__all__ = ["TRANSITIONS", "AccountProtocol", "State", "sign"]

SEQ_ALL, TIMESTAMP = 65536, 32768  # §3.4; chan-0 trailers are [PUB] [AUTH] [MTS] (§6)
AUTH_TIMEOUT = 30.0  # no answer to `auth` in this long: reconnect
MAX_NONCE = 9007199254740991  # §8.1
MTS_FLOOR = 1e11  # a trailing number this large is a timestamp (ms), not a sequence number


class State(enum.Enum):
    """Where the auth of this connection stands."""

    IDLE = "idle"
    AUTHENTICATING = "authenticating"
    LIVE = "live"
    FAILED = "failed"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    # IDLE -> AUTHENTICATING because connect() sent the auth event.
    S.IDLE: frozenset({S.AUTHENTICATING}),
    # AUTHENTICATING -> LIVE because `OK` came; -> FAILED because `FAILED` came; -> IDLE
    # because the connection was lost first.
    S.AUTHENTICATING: frozenset({S.LIVE, S.FAILED, S.IDLE}),
    # LIVE -> IDLE because the connection was lost (or dropped for fresh snapshots).
    S.LIVE: frozenset({S.IDLE}),
    # FAILED -> IDLE because the connection is dropped to retry with a new nonce.
    S.FAILED: frozenset({S.IDLE}),
}


def sign(secret: str, payload: str) -> str:
    """Lower-case hex HMAC-SHA384 of ``payload`` keyed with the API secret (§8.1)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha384).hexdigest()


class AccountProtocol(FrameCore):
    """The Bitfinex side of one authenticated connection (see the module docstring).

    Args:
        account: the account, with its credentials.
        nonce: returns the next nonce (µs, strictly increasing per key across restarts).
        channel_timeout: channel 0 silent this long (no data, no ``hb``) -> reconnect.
        connection_timeout: a connection silent this long is dropped.
        ping_interval: a ``ping`` event is sent this often.
    """

    def __init__(
        self,
        account: Account,
        nonce: Callable[[], int],
        *,
        channel_timeout: float = 30.0,
        connection_timeout: float = 20.0,
        ping_interval: float = 10.0,
    ) -> None:
        self.account = account
        self.nonce = nonce
        self.channel_timeout = channel_timeout
        self.connection_timeout = connection_timeout
        self.ping_interval = ping_interval
        self.feeds = {
            kind: AccountFeed("account", account=account.name, kind=kind) for kind in STREAMS
        }
        self.channels: dict[Subscription, Any] = {}  # no public channels on this connection
        self.state = State.IDLE
        self.maintenance = False
        self.malformed = 0
        self.auth_failures = 0
        self.early_updates = 0  # updates dropped because their stream's snapshot was pending
        self.last_nonce = 0
        self.answered = False  # Bitfinex answered an auth at least once
        self._live: set[str] = set()  # streams with a snapshot in this session
        self._outgoing: list[bytes] = []
        self._seq: int | None = None
        self._auth_seq: int | None = None
        self._last_recv = self._last_ping = self._last_seen = self._auth_sent = 0.0
        self._ping_cid = 0

    # -- driving the connection ------------------------------------------------------------

    def connect(self, now: float) -> None:
        """A socket just opened: send conf and the auth event with a fresh nonce."""
        self._transition(S.AUTHENTICATING)
        self._seq = self._auth_seq = None
        self._live.clear()
        self._outgoing.clear()
        self.maintenance = False
        self._last_recv = self._last_ping = self._last_seen = self._auth_sent = now
        self._send({"event": "conf", "flags": SEQ_ALL | TIMESTAMP})
        nonce = self.nonce()
        if not self.last_nonce < nonce <= MAX_NONCE:
            raise LocalProtocolError(f"nonce {nonce} after {self.last_nonce}: not increasing")
        self.last_nonce = nonce
        payload = f"AUTH{nonce}"
        auth: dict[str, Any] = {
            "event": "auth",
            "apiKey": self.account.api_key.reveal(),
            "authSig": sign(self.account.api_secret.reveal(), payload),
            "authNonce": nonce,
            "authPayload": payload,
        }
        if self.account.dms:
            auth["dms"] = 4
        if self.account.filter:
            auth["filter"] = list(self.account.filter)
        self._send(auth)

    def connection_lost(self, reason: str) -> list[Event]:
        """The socket is gone: every stream that had data this session is interrupted."""
        events: list[Event] = [
            Interrupted(self.feeds[k], reason) for k in STREAMS if k in self._live
        ]
        self._live.clear()
        self._outgoing.clear()
        if self.state is not S.IDLE:
            self._transition(S.IDLE)
        return events

    def data_to_send(self) -> list[bytes]:
        """Frames to send now, in order; the queue is emptied."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_deadline(self) -> float:
        """The monotonic time at which :meth:`check_timeouts` has work to do."""
        deadline = min(
            self._last_ping + self.ping_interval, self._last_recv + self.connection_timeout
        )
        if self.state is S.AUTHENTICATING:
            deadline = min(deadline, self._auth_sent + AUTH_TIMEOUT)
        elif self.state is S.LIVE and not self.maintenance:
            deadline = min(deadline, self._last_seen + self.channel_timeout)
        return deadline

    def check_timeouts(self, now: float) -> list[Event]:
        """Send pings; reconnect when the connection, the auth or channel 0 went silent."""
        if now - self._last_recv > self.connection_timeout:
            return [Reconnect(f"nothing received for {now - self._last_recv:.1f}s")]
        if self.state is S.AUTHENTICATING and now - self._auth_sent > AUTH_TIMEOUT:
            return [Reconnect(f"no answer to auth in {AUTH_TIMEOUT:.0f}s")]
        silent = now - self._last_seen
        if self.state is S.LIVE and not self.maintenance and silent > self.channel_timeout:
            return [Reconnect(f"account channel silent for {silent:.1f}s")]
        if now - self._last_ping >= self.ping_interval:
            self._ping_cid += 1
            self._last_ping = now
            self._send({"event": "ping", "cid": self._ping_cid})
        return []

    def resubscribe(self, sub: Subscription, reason: str, now: float) -> list[Event]:
        """Fresh snapshots of an account stream need a new auth: drop the connection."""
        if self.state is not S.LIVE:
            return []
        return [Reconnect(f"{sub}: {reason}; authenticating again for fresh snapshots")]

    def credit(self, seconds: float) -> None:
        """The reader was blocked ``seconds`` (Redis back-pressure): not silence, so every
        silence deadline moves forward by it."""
        self._last_recv += seconds
        self._last_seen += seconds
        self._auth_sent += seconds

    def subscribed_count(self) -> int:
        """1 while authenticated, else 0."""
        return int(self.state is S.LIVE)

    def answered_count(self) -> int:
        """1 once Bitfinex has answered an auth (OK or FAILED) on this core, else 0: a
        refused account makes the worker ``degraded``, not ``starting`` forever."""
        return int(self.answered)

    # -- frames in ---------------------------------------------------------------------------

    def _on_array(self, msg: list[Any], frame: bytes | str, now: float) -> list[Event]:
        if len(msg) < 2 or msg[0] != 0 or type(msg[0]) is not int or type(msg[1]) is not str:
            return [self._malformed("not a channel-0 message [0, TYPE, …]", frame)]
        abbr = msg[1]
        payload = msg[2] if len(msg) > 2 and abbr != "hb" else None
        trailer = msg[2:] if abbr == "hb" else msg[3:]
        if not all(type(x) in (int, float) for x in trailer):
            return [self._malformed("trailing fields are not numbers", frame)]
        mts = trailer.pop() if trailer and trailer[-1] >= MTS_FLOOR else None
        kind_of_n = payload[1] if abbr == "n" and type(payload) is list and payload[1:] else ""
        req = type(kind_of_n) is str and kind_of_n.endswith("-req")
        gap = self._check_seq(trailer, hb=abbr == "hb", req=req)
        if gap is not None:
            return [Reconnect(gap)]
        self._last_seen = now
        if abbr == "hb" or abbr in IGNORED:
            return []
        if abbr not in ABBREVIATIONS:
            return [self._malformed(f"unknown account message {abbr!r}", frame)]
        if self.state is not S.LIVE:
            return [self._malformed(f"account message {abbr!r} before auth", frame)]
        kind, is_snapshot = ABBREVIATIONS[abbr]
        try:
            if is_snapshot:
                if type(payload) is not list:
                    raise TypeError("snapshot is not an array")
                self._live.add(kind)
                return [Snapshot(self.feeds[kind], [record(kind, e) for e in payload], mts)]
            rec = {"event": abbr, **record(kind, payload)}
        except (TypeError, ValueError, IndexError) as exc:
            # Account data is lost: announce it (reset) and get fresh snapshots (new auth).
            reason = f"unusable {abbr!r} payload ({exc})"
            again = f"{self.feeds[kind]}: {reason}; authenticating again for fresh snapshots"
            return [self._malformed(reason, frame), Reconnect(again)]
        if kind not in self._live:
            self.early_updates += 1
            return []
        return [Update(self.feeds[kind], rec, mts)]

    def _check_seq(self, numbers: list[Any], *, hb: bool, req: bool) -> str | None:
        """Follow the public and auth sequence numbers (§6); a reason if the public one
        skipped. Heartbeats carry only PUB, ``*-req`` notifications only AUTH, other data
        PUB then AUTH; a layout with fewer numbers is accepted as it comes."""
        pub = None if req else (numbers[0] if numbers else None)
        if not hb and len(numbers) > (0 if req else 1):
            self._auth_seq = int(numbers[-1])
        if pub is None:
            return None
        expected = None if self._seq is None else self._seq + 1
        self._seq = int(pub)
        if expected is not None and pub != expected:
            return f"sequence gap on the account channel: expected {expected}, got {pub}"
        return None

    # -- events ---------------------------------------------------------------------------

    def _on_event(self, msg: dict[str, Any], frame: bytes | str, now: float) -> list[Event]:
        name = msg.get("event")
        if name == "auth":
            return self._on_auth(msg, frame, now)
        if name == "info":
            return self._on_info(msg)
        if name == "error":
            code = msg.get("code")
            return [ServerError(code if type(code) is int else 0, self._scrub(str(msg.get("msg"))))]
        if name in ("pong", "conf"):
            if name == "conf" and msg.get("status") != "OK":
                return [ServerError(10050, self._scrub(f"conf refused: {msg}"))]
            return []
        return [self._malformed(f"unknown event {name!r}", frame)]

    def _on_auth(self, msg: dict[str, Any], frame: bytes | str, now: float) -> list[Event]:
        if self.state is not S.AUTHENTICATING:
            return [self._malformed("auth event without a pending auth", frame)]
        self.answered = True
        if msg.get("status") != "OK":
            self._transition(S.FAILED)
            self.auth_failures += 1
            code = msg.get("code") if type(msg.get("code")) is int else None
            text = self._scrub(str(msg.get("msg", "")))
            fix = advice(self.account, code, text)
            reason = f"authentication failed ({code} {text}); retrying with backoff"
            return [AuthFailed(self.account.name, code, text, fix), Reconnect(reason)]
        self._transition(S.LIVE)
        self._last_seen = now
        caps: dict[str, Any] = msg["caps"] if isinstance(msg.get("caps"), dict) else {}
        user = msg.get("userId")
        events: list[Event] = [
            Authenticated(self.account.name, user if type(user) is int else None, caps)
        ]
        for kind in STREAMS:
            if not self._server_snapshots(kind, caps):
                self._live.add(kind)
                events.append(Snapshot(self.feeds[kind], [], None))
        return events

    def _server_snapshots(self, kind: str, caps: dict[str, Any]) -> bool:
        """Whether Bitfinex will send a snapshot of ``kind`` on this connection: it does for
        orders, positions, wallets and funding books, unless the filter leaves them out or
        the key may not read them."""
        if kind not in SNAPSHOTTED:
            return False
        category, cap = SNAPSHOTTED[kind]
        if self.account.filter and not any(
            f == category or f.startswith(f"{category}-") for f in self.account.filter
        ):
            return False
        perms = caps.get(cap)
        return not isinstance(perms, dict) or bool(perms.get("read", 1))

    def _on_info(self, msg: dict[str, Any]) -> list[Event]:
        events, self.maintenance = info_events(msg, self.maintenance, self._scrub)
        if msg.get("code") == 20061:  # maintenance over: authenticate afresh
            events.append(Reconnect("maintenance ended (20061)"))
        return events

    # -- helpers ----------------------------------------------------------------------------

    def _transition(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise LocalProtocolError(
                f"account {self.account.name}: {self.state.value} -> {new.value}"
            )
        self.state = new

    def _send(self, event: dict[str, Any]) -> None:
        self._outgoing.append(orjson.dumps(event))

    def _scrub(self, text: str) -> str:
        """``text`` with the key and the secret masked, should the server ever echo them."""
        for secret in (self.account.api_key, self.account.api_secret):
            if secret:
                text = text.replace(secret.reveal(), "***")
        return text

    def _shown(self, text: str) -> str:
        return self._scrub(text)
