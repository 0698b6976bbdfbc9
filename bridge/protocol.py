"""Sans-I/O Bitfinex WS v2 client core: frames in, events out, time passed in.

One :class:`Protocol` serves one connection. The I/O layer (``connection.py``) calls
:meth:`Protocol.connect` when a socket opens, sends what :meth:`Protocol.data_to_send`
returns, passes every received text frame to :meth:`Protocol.feed` with the current monotonic
time, and calls :meth:`Protocol.check_timeouts` whenever :meth:`Protocol.next_deadline` has
passed. Nothing here reads a clock or touches a socket.

Each subscription moves through the states of :data:`TRANSITIONS`. Remote faults (bad JSON,
unknown channels, checksum mismatches, sequence gaps) are reported as events and never
raised; :class:`~bridge.errors.LocalProtocolError` is raised only for our own bugs.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from bridge import records
from bridge.book import Book, number_tokens
from bridge.errors import LocalProtocolError
from bridge.events import (
    Event,
    Interrupted,
    Maintenance,
    Malformed,
    Reconnect,
    ServerError,
    ServerInfo,
    Snapshot,
    Subscribed,
    SubscribeFailed,
    Unsubscribed,
    Update,
)
from bridge.subscription import Subscription, identity_of

__all__ = ["FLAGS", "TRANSITIONS", "FrameCore", "Protocol", "State", "info_events"]

# bitfinex-ws-v2.md §3.4: one conf with the sum of the flags (a second conf replaces it).
SEQ_ALL = 65536
TIMESTAMP = 32768
OB_CHECKSUM = 131072
BULK_UPDATES = 536870912
FLAGS = SEQ_ALL | TIMESTAMP | OB_CHECKSUM | BULK_UPDATES

SUBSCRIBE_ACK_TIMEOUT = 60.0  # acks may come ~13 s late (§3.1); beyond a minute, reconnect
RETRY_MIN, RETRY_MAX = 5.0, 300.0  # spacing of retries after a subscribe error
TRADE_IDS_KEPT = 4096  # trade ids remembered per epoch to publish each trade once
CHURN_LIMIT, CHURN_WINDOW = 3, 60.0  # resubscribes within the window before they are spaced
GONE_KEPT = 1024  # unsubscribed chanIds remembered (their late data is ignored quietly)


class State(enum.Enum):
    """Where one subscription stands on this connection."""

    IDLE = "idle"
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    LIVE = "live"
    UNSUBSCRIBING = "unsubscribing"
    FAILED = "failed"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    # IDLE -> PENDING because connect() sent the subscribe.
    S.IDLE: frozenset({S.PENDING}),
    # PENDING -> SUBSCRIBED because `subscribed` arrived; -> FAILED because `error` arrived;
    # -> IDLE because the connection was lost.
    S.PENDING: frozenset({S.SUBSCRIBED, S.FAILED, S.IDLE}),
    # SUBSCRIBED -> LIVE because the snapshot arrived; -> UNSUBSCRIBING because it went stale.
    S.SUBSCRIBED: frozenset({S.LIVE, S.UNSUBSCRIBING, S.IDLE}),
    # LIVE -> UNSUBSCRIBING because it went stale, failed a checksum, or maintenance ended.
    S.LIVE: frozenset({S.UNSUBSCRIBING, S.IDLE}),
    # UNSUBSCRIBING -> PENDING because `unsubscribed` (or 10401 "not subscribed") arrived;
    # -> FAILED because it was resubscribed too often lately: it waits before the subscribe.
    S.UNSUBSCRIBING: frozenset({S.PENDING, S.FAILED, S.IDLE}),
    # FAILED -> PENDING because its retry time came.
    S.FAILED: frozenset({S.PENDING, S.IDLE}),
}


class Channel:
    """One subscription's state on this connection."""

    __slots__ = ("book", "chan_id", "churn", "funding", "handler", "last_seen", "retries",
                 "retry_at", "state", "sub", "to_record", "trade_ids", "trade_order")  # fmt: skip

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.funding = sub.funding  # read per message: kept, not recomputed
        self.to_record = records.raw_order if sub.raw else records.book_level  # book channels
        self.state = State.IDLE
        self.chan_id: int | None = None
        self.last_seen = 0.0
        self.retry_at = 0.0
        self.retries = 0
        self.book: Book | None = None
        self.churn: deque[float] = deque(maxlen=CHURN_LIMIT + 4)  # times it was resubscribed
        self.trade_ids: set[int] = set()  # published in this epoch (the newest ones)
        self.trade_order: deque[int] = deque()
        self.handler: Callable[..., list[Event]]


class FrameCore:
    """What every sans-I/O core does with a frame: parse it once, then hand arrays and event
    objects to the subclass; anything else is a counted :class:`Malformed`, never raised."""

    malformed: int
    checksum_errors = 0  # book checksum mismatches (only public cores have books)
    _last_recv: float

    def feed(self, frame: bytes | str, now: float) -> list[Event]:
        """Handle one received text frame; return what it means."""
        self._last_recv = now
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return [self._malformed("invalid JSON", frame)]
        if type(msg) is list:
            return self._on_array(msg, frame, now)
        if type(msg) is dict:
            return self._on_event(msg, frame, now)
        return [self._malformed("neither an array nor an event object", frame)]

    def _on_array(self, msg: list[Any], frame: bytes | str, now: float) -> list[Event]:
        raise NotImplementedError

    def _on_event(self, msg: dict[str, Any], frame: bytes | str, now: float) -> list[Event]:
        raise NotImplementedError

    def _malformed(self, reason: str, frame: bytes | str) -> Malformed:
        self.malformed += 1
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        return Malformed(reason, self._shown(text))

    def _shown(self, text: str) -> str:
        """The frame text as it may be reported (a subclass may scrub secrets)."""
        return text


class Protocol(FrameCore):
    """The Bitfinex side of one connection.

    Args:
        subscriptions: the channels this connection carries.
        verify_checksums: compare every book with the server's ``cs`` (§7).
        trades_tu: publish ``tu``/``ftu`` as well as ``te``/``fte`` (SPEC §3 group option).
        channel_timeout: a channel silent this long (no data, no ``hb``) is resubscribed.
        connection_timeout: a connection silent this long is dropped.
        ping_interval: a ``ping`` event is sent this often.
    """

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        *,
        verify_checksums: bool = True,
        trades_tu: bool = False,
        channel_timeout: float = 30.0,
        connection_timeout: float = 20.0,
        ping_interval: float = 10.0,
    ) -> None:
        self.channels = {sub: Channel(sub) for sub in subscriptions}
        self.verify_checksums = verify_checksums
        self.trades_tu = trades_tu
        self.channel_timeout = channel_timeout
        self.connection_timeout = connection_timeout
        self.ping_interval = ping_interval
        self.maintenance = False
        self.malformed = 0
        self.checksum_errors = 0
        self._by_id: dict[int, Channel] = {}
        self._by_sub_id = {sub.name: ch for sub, ch in self.channels.items()}
        self._by_identity = {sub.identity(): ch for sub, ch in self.channels.items()}
        self._gone: set[int] = set()  # chanIds unsubscribed: late data is expected, ignored
        self._gone_order: deque[int] = deque()
        self._outgoing: list[bytes] = []
        self._seq: int | None = None
        self._last_recv = 0.0
        self._last_ping = 0.0
        self._ping_cid = 0

    # -- driving the connection ------------------------------------------------------------

    def connect(self, now: float) -> None:
        """A socket just opened: send conf and subscribe everything."""
        self._reset_connection(now)
        self._send({"event": "conf", "flags": FLAGS})
        for channel in self.channels.values():
            self._subscribe(channel, now)

    def connection_lost(self, reason: str) -> list[Event]:
        """The socket is gone: every channel that had data is interrupted."""
        events: list[Event] = [
            Interrupted(ch.sub, reason) for ch in self.channels.values() if ch.state is S.LIVE
        ]
        for channel in self.channels.values():
            if channel.state is not S.IDLE:
                self._transition(channel, S.IDLE)
        self._by_id.clear()
        self._outgoing.clear()
        return events

    def data_to_send(self) -> list[bytes]:
        """Frames to send now, in order; the queue is emptied."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_deadline(self) -> float:
        """The monotonic time at which :meth:`check_timeouts` has work to do."""
        deadline = min(self._last_ping + self.ping_interval,
                       self._last_recv + self.connection_timeout)  # fmt: skip
        for ch in self.channels.values():
            if ch.state is S.FAILED:
                deadline = min(deadline, ch.retry_at)
            elif ch.state in (S.SUBSCRIBED, S.LIVE) and not self.maintenance:
                deadline = min(deadline, ch.last_seen + self.channel_timeout)
            elif ch.state in (S.PENDING, S.UNSUBSCRIBING):
                deadline = min(deadline, ch.last_seen + SUBSCRIBE_ACK_TIMEOUT)
        return deadline

    def check_timeouts(self, now: float) -> list[Event]:
        """Send pings, retry failed subscribes, resubscribe stale channels, detect silence."""
        if now - self._last_recv > self.connection_timeout:
            return [Reconnect(f"nothing received for {now - self._last_recv:.1f}s")]
        if now - self._last_ping >= self.ping_interval:
            self._ping_cid += 1
            self._last_ping = now
            self._send({"event": "ping", "cid": self._ping_cid})
        events: list[Event] = []
        for ch in self.channels.values():
            if ch.state is S.FAILED and now >= ch.retry_at:
                self._subscribe(ch, now)
            elif ch.state in (S.PENDING, S.UNSUBSCRIBING):
                if now - ch.last_seen > SUBSCRIBE_ACK_TIMEOUT:
                    return [*events, Reconnect(f"no answer to {ch.state.value} {ch.sub} in time")]
            elif (
                ch.state in (S.SUBSCRIBED, S.LIVE)
                and not self.maintenance
                and now - ch.last_seen > self.channel_timeout
            ):
                silent = now - ch.last_seen
                events += self.resubscribe(ch.sub, f"channel silent for {silent:.1f}s", now)
        return events

    def resubscribe(self, sub: Subscription, reason: str, now: float) -> list[Event]:
        """Unsubscribe then subscribe ``sub`` again; its stream is interrupted."""
        channel = self.channels[sub]
        if channel.state not in (S.SUBSCRIBED, S.LIVE):
            return []
        events: list[Event] = [Interrupted(sub, reason)] if channel.state is S.LIVE else []
        self._transition(channel, S.UNSUBSCRIBING)
        channel.last_seen = now
        self._send({"event": "unsubscribe", "chanId": channel.chan_id})
        return events

    def credit(self, seconds: float) -> None:
        """The reader could not read for ``seconds`` (it waited on Redis back-pressure): that
        time is not silence, so every silence deadline moves forward by it."""
        self._last_recv += seconds
        for channel in self.channels.values():
            channel.last_seen += seconds

    def subscribed_count(self) -> int:
        """Channels acknowledged by the server."""
        return sum(ch.state in (S.SUBSCRIBED, S.LIVE) for ch in self.channels.values())

    def answered_count(self) -> int:
        """Channels the server has answered (acknowledged or refused)."""
        return sum(ch.state not in (S.IDLE, S.PENDING) for ch in self.channels.values())

    # -- frames in ---------------------------------------------------------------------------

    def _on_array(self, msg: list[Any], frame: bytes | str, now: float) -> list[Event]:
        size = len(msg)
        if size < 2 or type(msg[0]) is not int:
            return [self._malformed("array without a channel id and payload", frame)]
        kind: str | None = None
        payload: Any = msg[1]
        if type(payload) is str:  # [chanId, "te"|"cs"|…, payload, SEQ, MTS] or [chanId, "hb", …]
            kind = payload
            if kind == "hb":
                payload, first = None, 2
            else:
                payload, first = (msg[2] if size > 2 else None), 3
        else:
            first = 2
        # Trailing [SEQ, MTS] from SEQ_ALL + TIMESTAMP (§6).
        seq = msg[first] if size > first else None
        mts = msg[first + 1] if size > first + 1 else None
        if seq is not None:
            if type(seq) is not int:
                return [self._malformed("sequence number is not an integer", frame)]
            expected = 1 if self._seq is None else self._seq + 1
            self._seq = seq
            if seq != expected:
                return [Reconnect(f"sequence gap: expected {expected}, got {seq}")]
        if mts is not None and type(mts) is not int and type(mts) is not float:
            mts = None
        channel = self._by_id.get(msg[0])
        if channel is None:
            if msg[0] in self._gone:
                return []
            return [self._malformed(f"message for unknown channel {msg[0]}", frame)]
        channel.last_seen = now
        if kind == "hb" or channel.state is S.UNSUBSCRIBING:
            return []
        if kind == "cs":
            return self._on_checksum(channel, payload, frame, now)
        if type(payload) is not list:
            return self._unusable(channel, "payload is not an array", frame, now)
        try:
            return channel.handler(self, channel, kind, payload, frame, mts)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            return self._unusable(channel, f"unusable payload ({exc!r})", frame, now)

    def _unusable(
        self, channel: Channel, reason: str, frame: bytes | str, now: float
    ) -> list[Event]:
        """A data frame of a subscribed channel that we cannot use: count it, and since its
        data is lost, resubscribe the channel so that the gap is announced (reset)."""
        events: list[Event] = [self._malformed(f"{channel.sub}: {reason}", frame)]
        return events + self.resubscribe(channel.sub, f"unusable frame ({reason})", now)

    # -- per-channel data -------------------------------------------------------------------

    def _first(self, channel: Channel, recs: list[records.Record], mts: Any) -> list[Event]:
        self._transition(channel, S.LIVE)
        return [Snapshot(channel.sub, recs, mts)]

    def _ticker(
        self, ch: Channel, kind: str | None, payload: Any, frame: Any, mts: Any
    ) -> list[Event]:
        record = records.ticker(payload, ch.funding)
        if ch.state is S.SUBSCRIBED:
            return self._first(ch, [record], mts)
        return [Update(ch.sub, record, mts)]

    def _status(
        self, ch: Channel, kind: str | None, payload: Any, frame: Any, mts: Any
    ) -> list[Event]:
        if ch.sub.key.startswith("liq:"):
            recs = [records.liquidation(e) for e in payload]
        else:
            recs = [records.deriv_status(payload)]
        if ch.state is S.SUBSCRIBED:
            return self._first(ch, recs, mts)
        return [Update(ch.sub, r, mts) for r in recs]

    def _candles(
        self, ch: Channel, kind: str | None, payload: Any, frame: Any, mts: Any
    ) -> list[Event]:
        nested = not payload or type(payload[0]) is list
        recs = [records.candle(c) for c in payload] if nested else [records.candle(payload)]
        if ch.state is S.SUBSCRIBED:
            return self._first(ch, recs, mts)
        return [Update(ch.sub, r, mts) for r in recs]

    def _trades(
        self, ch: Channel, kind: str | None, payload: Any, frame: Any, mts: Any
    ) -> list[Event]:
        funding = ch.funding
        if kind is None:
            if ch.state is not S.SUBSCRIBED:
                return [self._malformed(f"{ch.sub}: second trades snapshot", frame)]
            recs = [records.trade(t, funding) for t in payload]
            for r in recs:
                self._remember_trade(ch, r["id"])
            return self._first(ch, recs, mts)
        if ch.state is not S.LIVE:
            return [self._malformed(f"{ch.sub}: trade before the snapshot", frame)]
        if kind in ("te", "fte"):
            record = records.trade(payload, funding)
            if record["id"] in ch.trade_ids:
                return []  # already published in this epoch (snapshot overlap)
            self._remember_trade(ch, record["id"])
            if self.trades_tu:
                record["event"] = kind
            return [Update(ch.sub, record, mts)]
        if kind in ("tu", "ftu"):
            if not self.trades_tu:
                return []  # the `tu` that follows a `te` is not a second trade (§5.2)
            record = records.trade(payload, funding)
            record["event"] = kind
            return [Update(ch.sub, record, mts)]
        return [self._malformed(f"{ch.sub}: unknown trade event {kind!r}", frame)]

    @staticmethod
    def _remember_trade(ch: Channel, trade_id: int) -> None:
        # A set for lookups and a FIFO to forget the oldest: O(1) both (an ordered dict
        # with deletions at its head makes next(iter()) scan dead slots).
        ch.trade_ids.add(trade_id)
        ch.trade_order.append(trade_id)
        if len(ch.trade_order) > TRADE_IDS_KEPT:
            ch.trade_ids.discard(ch.trade_order.popleft())

    def _book(
        self, ch: Channel, kind: str | None, payload: Any, frame: Any, mts: Any
    ) -> list[Event]:
        book = ch.book
        assert book is not None
        to_record = ch.to_record
        funding = ch.funding
        nested = not payload or type(payload[0]) is list
        entries = payload if nested else [payload]
        if self.verify_checksums:
            width = len(entries[0]) if entries else 0
            tokens = number_tokens(frame)
            if len(tokens) < 1 + width * len(entries):
                return [self._malformed(f"{ch.sub}: book entry is not all numbers", frame)]
            if ch.state is S.SUBSCRIBED:
                book.clear()
            for i, entry in enumerate(entries):
                book.apply(entry, tokens[1 + i * width : 1 + (i + 1) * width])
        recs = [to_record(e, funding) for e in entries]
        if ch.state is S.SUBSCRIBED:
            return self._first(ch, recs, mts)
        return [Update(ch.sub, r, mts) for r in recs]

    def _on_checksum(self, ch: Channel, value: Any, frame: bytes | str, now: float) -> list[Event]:
        if ch.book is None or type(value) is not int:
            return [self._malformed(f"{ch.sub}: unexpected checksum", frame)]
        if not self.verify_checksums or ch.state is not S.LIVE:
            return []
        actual = ch.book.checksum()
        if (actual - value) % (1 << 32) == 0:
            return []
        self.checksum_errors += 1
        reason = f"checksum mismatch: book {actual} != server {value}"
        return self.resubscribe(ch.sub, reason, now)

    # -- events ---------------------------------------------------------------------------

    def _on_event(self, msg: dict[str, Any], frame: bytes | str, now: float) -> list[Event]:
        name = msg.get("event")
        if name == "subscribed":
            return self._on_subscribed(msg, frame, now)
        if name == "unsubscribed":
            return self._on_unsubscribed(msg, frame, now)
        if name == "error":
            return self._on_error(msg, now)
        if name == "info":
            return self._on_info(msg, now)
        if name in ("pong", "conf"):
            if name == "conf" and msg.get("status") != "OK":
                return [ServerError(_int(msg.get("code")) or 10050, f"conf refused: {msg}")]
            return []
        return [self._malformed(f"unknown event {name!r}", frame)]

    def _find(self, msg: dict[str, Any]) -> Channel | None:
        channel = self._by_sub_id.get(str(msg.get("subId", "")))
        return channel or self._by_identity.get(identity_of(msg))

    def _on_subscribed(self, msg: dict[str, Any], frame: bytes | str, now: float) -> list[Event]:
        channel, chan_id = self._find(msg), msg.get("chanId")
        if channel is None or type(chan_id) is not int or channel.state is not S.PENDING:
            return [self._malformed("subscribed event for no pending subscription", frame)]
        self._transition(channel, S.SUBSCRIBED)
        channel.chan_id, channel.last_seen, channel.retries = chan_id, now, 0
        self._by_id[chan_id] = channel
        return [Subscribed(channel.sub, chan_id)]

    def _on_unsubscribed(self, msg: dict[str, Any], frame: bytes | str, now: float) -> list[Event]:
        channel = self._by_id.get(_int(msg.get("chanId")) or -1)
        if channel is None or channel.state is not S.UNSUBSCRIBING:
            return [self._malformed("unsubscribed event for no channel we left", frame)]
        self._forget(channel)
        self._resubscribe_after_unsubscribe(channel, now)
        return [Unsubscribed(channel.sub)]

    def _resubscribe_after_unsubscribe(self, channel: Channel, now: float) -> None:
        """Subscribe again at once, unless the channel keeps being resubscribed (a book whose
        checksum keeps failing, a channel that keeps going silent): then wait, 5 s doubling
        to 5 min, so that one bad channel cannot hammer Bitfinex."""
        channel.churn.append(now)
        recent = sum(1 for t in channel.churn if now - t <= CHURN_WINDOW)
        if recent <= CHURN_LIMIT:
            self._subscribe(channel, now)
            return
        self._transition(channel, S.FAILED)
        channel.retry_at = now + min(RETRY_MAX, RETRY_MIN * 2 ** (recent - CHURN_LIMIT - 1))

    def _on_error(self, msg: dict[str, Any], now: float) -> list[Event]:
        code, text = _int(msg.get("code")), str(msg.get("msg", ""))
        if code is None:
            return [self._malformed("error event without a numeric code", orjson.dumps(msg))]
        if code in (10400, 10401):  # unsubscribe failed: the channel is gone anyway
            chan_id = _int(msg.get("chanId"))
            if chan_id is None and "chanId" in msg:
                return [self._malformed("error event with a bad chanId", orjson.dumps(msg))]
            channel = self._by_id.get(chan_id or -1)
            if channel is not None and channel.state is S.UNSUBSCRIBING:
                self._forget(channel)
                self._subscribe(channel, now)
                return [Unsubscribed(channel.sub)]
        channel = self._find(msg)
        if channel is None or channel.state is not S.PENDING:
            return [ServerError(code, text)]
        self._transition(channel, S.FAILED)
        channel.retries += 1
        delay = min(RETRY_MAX, RETRY_MIN * 2 ** (channel.retries - 1))
        channel.retry_at = now + delay
        failed = SubscribeFailed(channel.sub, code, text, delay)
        if code == 10301:  # the server holds a channel we lost track of: start clean
            return [failed, Reconnect(f"{channel.sub}: server says already subscribed (10301)")]
        return [failed]

    def _on_info(self, msg: dict[str, Any], now: float) -> list[Event]:
        events, self.maintenance = info_events(msg, self.maintenance)
        if msg.get("code") == 20061:  # maintenance over: resubscribe every channel (§2.2)
            for channel in self.channels.values():
                channel.last_seen = now
                events += self.resubscribe(channel.sub, "maintenance ended (20061)", now)
        if events and type(events[0]) is Malformed:
            self.malformed += 1
        return events

    # -- helpers ----------------------------------------------------------------------------

    def _subscribe(self, channel: Channel, now: float) -> None:
        self._transition(channel, S.PENDING)
        channel.last_seen = now
        channel.trade_ids, channel.trade_order = set(), deque()
        sub = channel.sub
        if sub.channel == "book":
            channel.book = Book(funding=sub.funding, raw=sub.raw)
        channel.handler = _HANDLERS[sub.channel]
        self._send(sub.request())

    def _forget(self, channel: Channel) -> None:
        if channel.chan_id is not None:
            self._by_id.pop(channel.chan_id, None)
            self._gone.add(channel.chan_id)
            self._gone_order.append(channel.chan_id)
            if len(self._gone_order) > GONE_KEPT:
                self._gone.discard(self._gone_order.popleft())
        channel.chan_id = None

    def _transition(self, channel: Channel, new: State) -> None:
        if new not in TRANSITIONS[channel.state]:
            raise LocalProtocolError(f"{channel.sub}: {channel.state.value} -> {new.value}")
        channel.state = new

    def _reset_connection(self, now: float) -> None:
        self._seq = None
        self._last_recv = self._last_ping = now
        self.maintenance = False
        self._by_id.clear()
        self._gone.clear()
        self._gone_order.clear()
        self._outgoing.clear()

    def _send(self, event: dict[str, Any]) -> None:
        self._outgoing.append(orjson.dumps(event))


def info_events(
    msg: dict[str, Any], maintenance: bool, text: Callable[[str], str] = str
) -> tuple[list[Event], bool]:
    """What an ``info`` event means on any connection, public or authenticated, and whether
    maintenance is on afterwards (bitfinex-ws-v2.md §2). On 20061 the caller adds its own way
    of resuming; ``text`` may scrub the server's message before it is reported."""
    code = msg.get("code")
    if code is None:
        platform = msg.get("platform")
        status = platform.get("status") if isinstance(platform, dict) else None
        info = ServerInfo(msg.get("version"), status, str(msg.get("serverId", "")))
        if msg.get("version") not in (2, None):
            return [info, Reconnect(f"server speaks API version {msg.get('version')}, not 2")], (
                maintenance
            )
        if status == 0 and not maintenance:
            return [info, Maintenance(True)], True
        return [info], maintenance
    if code == 20051:
        return [Reconnect("server restarting (info 20051)")], maintenance
    if code == 20060:
        return [Maintenance(True)], True
    if code == 20061:
        return [Maintenance(False)], False
    if type(code) is not int:
        frame = orjson.dumps(msg).decode()
        return [Malformed(f"info code {code!r} is not a number", text(frame))], maintenance
    return [ServerError(code, text(str(msg.get("msg", ""))))], maintenance


def _int(value: Any) -> int | None:
    """``value`` if it is an int (not a bool), else None: fields from the wire are untrusted."""
    return value if type(value) is int else None


_HANDLERS: dict[str, Callable[..., list[Event]]] = {
    "ticker": Protocol._ticker,
    "trades": Protocol._trades,
    "book": Protocol._book,
    "candles": Protocol._candles,
    "status": Protocol._status,
}
