"""One client connection of the emulator: the request handlers and the sending discipline.

Everything a connection sends goes through :meth:`EmuConnection._emit` (data arrays) or
:meth:`EmuConnection._send_event` (event objects), under the connection's lock: assign the
sequence number, build the text, append it to the emulator's log, hand it to the socket.
The log order therefore equals the wire order of the connection, whichever thread sends
(the connection's own handler thread answers requests; the market thread delivers ticks
and heartbeats).

Fault hooks live here too: :meth:`~EmuConnection.abort`, :meth:`~EmuConnection.close`,
:meth:`~EmuConnection.send_raw`, :meth:`~EmuConnection.silence`,
:meth:`~EmuConnection.silence_all`, :meth:`~EmuConnection.corrupt_checksums`,
:meth:`~EmuConnection.skip_seq` and :meth:`~EmuConnection.set_hook`. They are the bare
mechanism and log nothing; the named, logged faults are the
:class:`~bridge.emulator.faults.Faults` methods of the emulator, built on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.sync.server import ServerConnection

from bridge.emulator.channels import (
    ChannelInfo,
    SubscribeError,
    error_fields,
    parse_subscribe,
    stream_name,
    subscribed_fields,
)
from bridge.emulator.feeds import Batch
from bridge.emulator.market import Market
from bridge.emulator.wire import BULK_UPDATES, OB_CHECKSUM, SEQ_ALL, TIMESTAMP, Wire, encode, frame

if TYPE_CHECKING:
    from bridge.emulator.auth import Accounts

__all__ = ["INFO_MESSAGES", "BodyHook", "EmuConnection", "Host"]

INFO_MESSAGES = {
    20051: "Stopping. Please try to reconnect",
    20060: "Entering in Maintenance mode. Please pause any activity and resume after "
    "receiving the info message 20061 (it should take 120 seconds at most).",
    20061: "Maintenance ended. You can resume normal activity. It is advised to "
    "unsubscribe/subscribe again all channels.",
}

BodyHook = Callable[[int, str], str | None]
"""``hook(chan_id, body) -> body | None``: rewrite or drop (None) an outgoing data body."""


class Host(Protocol):
    """What a connection needs from its emulator."""

    market: Market
    accounts: Accounts  # auth requests and channel 0 (bridge.emulator.auth)
    heartbeat_interval: float
    channel_limit: int
    unknown_symbols: frozenset[str]

    @property
    def maintenance(self) -> bool:
        """True between 20060 and 20061: new connections are told ``platform.status`` 0."""
        ...

    def next_chan_id(self) -> int:
        """A chanId never used before by any connection of this emulator."""
        ...

    def record(self, conn_id: int, text: str, direction: str) -> None:
        """Append a frame to the emulator's log."""
        ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EmuConnection:
    """The server side of one WebSocket client.

    Attributes:
        conn_id: this connection's number, as in :class:`~bridge.emulator.SentFrame`.
    """

    def __init__(self, conn_id: int, ws: ServerConnection, host: Host) -> None:
        self.conn_id = conn_id
        self._ws = ws
        self._host = host
        self._lock = threading.RLock()
        self._flags = 0
        self._seq = 0
        self._channels: dict[int, ChannelInfo] = {}
        self._heartbeat_due: dict[int, float] = {}
        self._silenced: set[int] = set()
        self._silent = False
        self._corrupt: dict[int, int] = {}  # chanId -> cs frames still to send wrong
        self._hook: BodyHook | None = None
        self._dead = False
        self._mute_pongs(ws)

    # -- inspection and fault hooks --------------------------------------------------

    def channels(self) -> dict[int, ChannelInfo]:
        """chanId -> what was subscribed on it, for the channels currently subscribed."""
        with self._lock:
            return dict(self._channels)

    @property
    def flags(self) -> int:
        """The flag set of the last ``conf`` (0 before any)."""
        return self._flags

    def abort(self) -> None:
        """Drop the TCP connection with a reset: no close frame, no FIN (SO_LINGER 0).

        The socket is closed before websockets learns of it: told first, its reader thread
        may half-close the socket (a FIN) just before the reset.
        """
        self._dead = True
        with contextlib.suppress(OSError):  # already closed
            self._ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._ws.socket.close()
        self._ws.close_socket()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame carrying ``code``; waits briefly for the client's reply."""
        self._ws.close(code, reason)

    def send_raw(self, text: str, *, with_seq: bool = False) -> None:
        """Send ``text`` as is (logged like any frame), even when the connection is silent.

        With ``with_seq`` and an array ``text``, the connection's trailing fields
        (sequence number, timestamp) are appended as for any data message.
        """
        with self._lock:
            if with_seq and text.startswith("[") and text.endswith("]"):
                seq, mts = self._trailer()
                text = text[:-1] + "".join(f",{x}" for x in (seq, mts) if x is not None) + "]"
            self._send(text)

    def silence(self, chan_id: int, silent: bool = True) -> None:
        """Stop (or resume) sending anything on ``chan_id``, heartbeats included."""
        with self._lock:
            if silent:
                self._silenced.add(chan_id)
            else:
                self._silenced.discard(chan_id)

    def silence_all(self, silent: bool = True) -> None:
        """Stop (or resume) sending anything at all: no data, no events, no ``pong`` event
        and no WebSocket pong frame either (see :meth:`_mute_pongs`)."""
        with self._lock:
            self._silent = silent

    def corrupt_checksums(self, chan_id: int, count: int = 1) -> None:
        """Send the next ``count`` ``cs`` frames of ``chan_id`` with a wrong value: ``~crc``,
        still a signed int32 and never the right one. The book and its updates stay right."""
        with self._lock:
            self._corrupt[chan_id] = self._corrupt.get(chan_id, 0) + count

    def describe(self) -> dict[str, Any]:
        """This connection's state as JSON-ready data (the control API's ``/connections``)."""
        with self._lock:
            channels = [
                {"chanId": chan_id, **dataclasses.asdict(info), "stream": stream_name(info),
                 "silenced": chan_id in self._silenced,
                 "corrupt_pending": self._corrupt.get(chan_id, 0)}
                for chan_id, info in self._channels.items()
            ]  # fmt: skip
            state = {"conn": self.conn_id, "flags": self._flags, "seq": self._seq}
            return {**state, "silent": self._silent, "channels": channels}

    def skip_seq(self, count: int = 1) -> None:
        """Advance the sequence counter without sending: the client sees a gap."""
        with self._lock:
            self._seq += count

    def set_hook(self, hook: BodyHook | None) -> None:
        """Install (or remove) a hook that may rewrite or drop each outgoing data body."""
        with self._lock:
            self._hook = hook

    # -- pre-framed sending (bridge.emulator.burst) ----------------------------------

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the send lock: no tick, heartbeat or event goes out until the block ends, so
        the caller may number and write frames itself (:meth:`reserve_seq`,
        :meth:`write_frames`)."""
        with self._lock:
            yield

    def reserve_seq(self, count: int) -> int | None:
        """Take ``count`` SEQ_ALL numbers for frames the caller sends under :meth:`exclusive`;
        returns the first, or None when SEQ_ALL is off (the frames then carry none)."""
        with self._lock:
            if not self._flags & SEQ_ALL:
                return None
            self._seq += count
            return self._seq - count + 1

    def write_frames(self, data: bytes) -> bool:
        """Write whole, unmasked WebSocket frames as they are, under websockets' own lock so
        that no pong or close frame lands inside one. The caller logs them (host ``record``)
        first. False once the connection is gone."""
        ws = self._ws
        with ws.protocol_mutex:
            if self._dead or ws.protocol.state is not State.OPEN:
                return False
            try:
                ws.socket.sendall(data)
            except OSError:
                self._dead = True
                return False
        return True

    # -- lifecycle (called by the emulator) ------------------------------------------

    def open(self) -> None:
        """Send the info event every connection starts with (§2.1)."""
        self._send_event(
            {
                "event": "info",
                "version": 2,
                "serverId": str(uuid.uuid4()),
                "platform": {"status": 0 if self._host.maintenance else 1},  # §2.1
            }
        )

    def detach(self) -> None:
        """Forget every subscription; the connection is gone."""
        with self._lock:
            self._dead = True
            for chan_id, info in self._channels.items():
                self._host.market.unsubscribe(info, chan_id)
            self._channels.clear()
            self._heartbeat_due.clear()
            self._corrupt.clear()
        self._host.accounts.forget(self)  # outside the send lock: accounts lock first

    def send_info(self, code: int) -> None:
        """Send ``{"event":"info","code":code,"msg":…}`` (§2.2)."""
        self._send_event({"event": "info", "code": code, "msg": INFO_MESSAGES.get(code, "")})

    def deliver(self, chan_id: int, batch: Batch) -> None:
        """Send one tick's batch on ``chan_id`` with this connection's flags (§6)."""
        with self._lock:
            if chan_id not in self._channels:
                return  # unsubscribed after the tick was generated
            if batch.book and self._flags & BULK_UPDATES and len(batch.bodies) > 1:
                self._emit(chan_id, "[" + ",".join(batch.bodies) + "]")
            else:
                for body in batch.bodies:
                    self._emit(chan_id, body)
            if batch.book and self._flags & OB_CHECKSUM:
                assert batch.checksum is not None
                self._emit_checksum(chan_id, batch.checksum)

    def _emit_checksum(self, chan_id: int, crc: int) -> None:
        """Send ``[chanId,"cs",CRC]``, wrong if :meth:`corrupt_checksums` asked for it."""
        pending = self._corrupt.pop(chan_id, 0)
        sent = self._emit(chan_id, f'"cs",{~crc if pending else crc}')
        remaining = pending - 1 if sent and pending else pending  # a silenced cs uses none up
        if remaining:
            self._corrupt[chan_id] = remaining

    def send_heartbeats(self, now: float) -> float:
        """Send ``[chanId,"hb"]`` on every channel that is due; return the next due time."""
        with self._lock:
            for chan_id in sorted(self._heartbeat_due):
                due = self._heartbeat_due[chan_id]
                if due <= now:
                    self._emit(chan_id, '"hb"')
                    due += self._host.heartbeat_interval
                    self._heartbeat_due[chan_id] = due if due > now else now + 0.001
            return min(self._heartbeat_due.values(), default=math.inf)

    # -- requests --------------------------------------------------------------------

    def receive(self, text: str) -> None:
        """Handle one client frame; malformed input gets error 10000, never an exception."""
        self._host.record(self.conn_id, text, "recv")
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self._send_event({"event": "error", "msg": "event: invalid", "code": 10000})
            return
        event = request.get("event")
        handler = self._HANDLERS.get(event) if isinstance(event, str) else None
        if handler is None:
            self._send_event({"event": "error", "msg": "event: invalid", "code": 10000})
        else:
            handler(self, request)

    def _on_conf(self, request: dict[str, Any]) -> None:
        """``conf`` replaces the whole flag set (§3.4); SEQ_ALL starts counting at 1."""
        flags = request.get("flags")
        if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0:
            self._send_event(_error(request, 10050, "conf: invalid"))
            return
        with self._lock:
            if flags & SEQ_ALL and not self._flags & SEQ_ALL:
                self._seq = 0
            self._flags = flags
            self._send_event({"event": "conf", "status": "OK", "flags": flags})

    def _on_subscribe(self, request: dict[str, Any]) -> None:
        """Subscribe, reply ``subscribed`` (§3.1) then the snapshot, or an error (§3.3)."""
        result = parse_subscribe(request, self._host.unknown_symbols)
        with self._lock:
            if isinstance(result, SubscribeError):
                error = result
            elif result in self._channels.values():
                error = SubscribeError(10301, "subscribe: dup")
            elif len(self._channels) >= self._host.channel_limit:
                error = SubscribeError(10305, "subscribe: limit")
            else:
                self._subscribe(result, request.get("subId"))
                return
            self._send_event(error_fields(request, error))

    def _subscribe(self, info: ChannelInfo, sub_id: object) -> None:
        chan_id = self._host.next_chan_id()
        snapshot = self._host.market.subscribe(info, self, chan_id, _now_ms())
        self._channels[chan_id] = info
        self._heartbeat_due[chan_id] = time.monotonic() + self._host.heartbeat_interval
        self._send_event(subscribed_fields(info, chan_id, sub_id))
        self._emit(chan_id, snapshot)

    def _on_unsubscribe(self, request: dict[str, Any]) -> None:
        """``unsubscribe`` -> ``unsubscribed``; 10400 for a bad request, 10401 if unknown."""
        chan_id = request.get("chanId")
        if isinstance(chan_id, bool) or not isinstance(chan_id, int):
            self._send_event(_error(request, 10400, "unsubscribe: invalid"))
            return
        with self._lock:
            info = self._channels.pop(chan_id, None)
            if info is None:
                self._send_event(_error(request, 10401, "unsubscribe: not subscribed"))
                return
            self._host.market.unsubscribe(info, chan_id)
            self._heartbeat_due.pop(chan_id, None)
            self._silenced.discard(chan_id)
            self._corrupt.pop(chan_id, None)
            self._send_event({"event": "unsubscribed", "status": "OK", "chanId": chan_id})

    def _on_ping(self, request: dict[str, Any]) -> None:
        """``ping`` -> ``pong`` with the server time and the echoed ``cid`` (§3.5)."""
        pong: dict[str, Wire] = {"event": "pong", "ts": _now_ms()}
        if "cid" in request:
            pong["cid"] = request["cid"]
        self._send_event(pong)

    def _on_auth(self, request: dict[str, Any]) -> None:
        """``auth`` -> OK and channel 0, or FAILED (§8.2; :mod:`bridge.emulator.auth`)."""
        self._host.accounts.authenticate(self, request)

    _HANDLERS: ClassVar[dict[str, Callable[[EmuConnection, dict[str, Any]], None]]] = {
        "conf": _on_conf,
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
        "ping": _on_ping,
        "auth": _on_auth,
    }

    # -- sending ---------------------------------------------------------------------

    def send_event(self, event: dict[str, Any]) -> None:
        """Send an event object unless the connection is silent."""
        self._send_event(event)

    def send_account(self, body: str, *, pub: bool, auth_seq: int) -> bool:
        """Send ``[0,body,PUB?,AUTH?,MTS?]``: channel 0's trailers (§6). ``pub`` False for
        ``*-req`` notifications, which carry no public sequence number."""
        with self._lock:
            if self._silent or 0 in self._silenced:
                return False
            if self._hook is not None:
                hooked = self._hook(0, body)
                if hooked is None:
                    return False
                body = hooked
            trailer = []
            if self._flags & SEQ_ALL:
                if pub:
                    self._seq += 1
                trailer = [self._seq, auth_seq] if pub else [auth_seq]
            if self._flags & TIMESTAMP:
                trailer.append(_now_ms())
            self._send("[0," + body + "".join(f",{x}" for x in trailer) + "]")
            return True

    def beat(self, chan_id: int) -> None:
        """Start sending heartbeats on ``chan_id`` (channel 0 once authenticated)."""
        with self._lock:
            self._heartbeat_due[chan_id] = time.monotonic() + self._host.heartbeat_interval

    def _trailer(self) -> tuple[int | None, int | None]:
        """The next sequence number and the timestamp, each if its flag is on (§6)."""
        seq = None
        if self._flags & SEQ_ALL:
            self._seq += 1
            seq = self._seq
        return seq, (_now_ms() if self._flags & TIMESTAMP else None)

    def _emit(self, chan_id: int, body: str) -> bool:
        """Send one data array on ``chan_id`` unless silenced (a silenced frame uses no seq).

        Returns False when the frame was silenced or dropped by the hook.
        """
        with self._lock:
            if self._silent or chan_id in self._silenced:
                return False
            if self._hook is not None:
                hooked = self._hook(chan_id, body)
                if hooked is None:
                    return False
                body = hooked
            self._send(frame(chan_id, body, *self._trailer()))
            return True

    def _send_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            if not self._silent:
                self._send(encode(event))

    def _mute_pongs(self, ws: ServerConnection) -> None:
        """Make websockets' automatic answer to a ping frame obey :meth:`silence_all`.

        A silent connection sends "nothing at all, not even a pong" (issue 5, fault 3).
        websockets pongs inside its sans-I/O ``Protocol``, whose ``send_frame`` is the only
        seam: it is wrapped on this instance. tests/test_emulator_faults.py checks it.
        """
        send_frame = ws.protocol.send_frame

        def filtered(f: Frame) -> None:
            if not (self._silent and f.opcode is Opcode.PONG):
                send_frame(f)

        ws.protocol.send_frame = filtered  # type: ignore[method-assign,assignment]

    def _send(self, text: str) -> None:
        """Log then write one frame. Logged first, so whatever a client read is in the log;
        a frame logged just before the connection died may never have reached the peer."""
        if self._dead or self._ws.protocol.state is not State.OPEN:
            return
        self._host.record(self.conn_id, text, "sent")
        try:
            self._ws.send(text)
        except (ConnectionClosed, OSError):
            self._dead = True


def _error(request: dict[str, Any], code: int, msg: str) -> dict[str, Any]:
    """An error event echoing the request's fields (§3.3)."""
    return error_fields(request, SubscribeError(code, msg))
