"""Named fault injections of the emulator, and the log that proves them.

Each fault the bridge must survive (issue 5; bitfinex-ws-v2.md §12 item 12) is one method
of :class:`Faults`, which :class:`~bridge.emulator.Emulator` inherits. The HTTP control API
(:mod:`bridge.emulator.control`) and ``bfx-bridge fault`` call the same methods, so a fault
injected by hand and one injected by a test behave alike.

==========================  ==============================================================
method                      what the client sees
==========================  ==============================================================
``drop(conn)``              a TCP reset: no close frame, no FIN (one connection or all)
``silence_channel(chan)``   nothing more on that chanId, heartbeats included
``silence_connection(c)``   nothing at all: no data, events, ``pong`` event nor pong frame
``corrupt_checksum(chan)``  the next ``count`` ``cs`` values are wrong; the book is right
``send_malformed(kind)``    one frame of :data:`MALFORMED_KINDS`
``skip_seq(conn)``          a SEQ_ALL gap: ``count`` numbers never sent
``maintenance_start()``     info 20060, then silence (no data, no heartbeats)
``maintenance_end()``       info 20061, then data and heartbeats again
``send_info(code)``         ``{"event":"info","code":…}`` on every connection
``reject_handshakes(s, n)`` the next ``n`` handshakes refused with HTTP ``s``
``pause()`` / ``resume()``  no market data (heartbeats go on) / data again
==========================  ==============================================================

Every call appends one entry to :meth:`Faults.fault_log`, *after* the fault took effect:
every frame in the emulator's frame log with a later ``t`` was sent under it. Bad
arguments (an unknown connection or chanId, a count below 1…) raise :class:`FaultError`
and log nothing. :class:`~bridge.emulator.connection.EmuConnection`'s own hooks are the
unlogged mechanism underneath.

During maintenance the market keeps moving while nothing is delivered, as the trading
engine does while the feed is down: a client that does not resubscribe after 20061 (as
§2.2 advises) ends up with wrong books and sees checksum mismatches.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from bridge.emulator.channels import stream_name
from bridge.emulator.connection import EmuConnection

__all__ = ["MALFORMED_KINDS", "FaultError", "FaultLog", "Faults"]

logger = logging.getLogger(__name__)

MALFORMED_KINDS: dict[str, tuple[str, bool]] = {
    # kind: (frame text, carries SEQ_ALL/TIMESTAMP trailers). ``{chan}`` becomes a chanId
    # no channel ever had. A real server numbers every array it sends (§6), so the two
    # frames on an unknown chanId take the next sequence number, as a hb would: a client
    # counting every array sees no gap. ``[]`` cannot carry a trailer and takes none.
    "invalid_json": ('{"event":"info","version":2,"serverId":"', False),  # cut short
    "unknown_event": ('{"event":"emulator-unknown","msg":"an event no client knows"}', False),
    "unknown_chan": ("[{chan},[60000,1,0.5]]", True),
    "garbage": ("\x00\x7f\ufffd<<not JSON at all>>", False),
    "empty_array": ("[]", False),
    "hb_unknown_chan": ('[{chan},"hb"]', True),
}


class FaultError(ValueError):
    """A fault asked with bad arguments; the message says what is wrong and what to use."""


class FaultLog:
    """Every injected fault, in order, with the time it took effect. Thread-safe."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def record(self, name: str, args: dict[str, Any], **effect: Any) -> dict[str, Any]:
        """Append ``{"n", "monotonic", "unix", "name", "args", "effect"}``; return it."""
        with self._lock:
            entry = {
                "n": len(self._entries) + 1,
                "monotonic": time.monotonic(),
                "unix": time.time(),
                "name": name,
                "args": args,
                "effect": effect,
            }
            self._entries.append(entry)
        captured: list[dict[str, Any]] | None = getattr(self._local, "captured", None)
        if captured is not None:
            captured.append(copy.deepcopy(entry))
        logger.info("! emulator fault %s %s -> %s", name, args, effect)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """A deep copy of every entry, oldest first."""
        with self._lock:
            return copy.deepcopy(self._entries)

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[dict[str, Any]]]:
        """Collect the entries this thread records inside the ``with`` block."""
        captured: list[dict[str, Any]] = []
        self._local.captured = captured
        try:
            yield captured
        finally:
            self._local.captured = None


def _check_count(count: int, what: str = "count") -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise FaultError(f"{what} must be a whole number >= 1, not {count!r}")


def _query_tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[\s:]+", text.strip()) if t]


class Faults:
    """The fault methods of :class:`~bridge.emulator.Emulator` (a mixin; see the module doc).

    The emulator calls :meth:`_init_faults` and provides :meth:`connections` and
    :meth:`next_chan_id`; its market thread honours :attr:`paused` and
    :attr:`maintenance` under ``_tick_lock``.
    """

    def _init_faults(self) -> None:
        self._fault_log = FaultLog()
        self._tick_lock = threading.Lock()  # held while a tick or a heartbeat round is sent
        self._paused = False
        self._maintenance = False
        self._rejections: collections.deque[int] = collections.deque()
        self._rejections_lock = threading.Lock()

    def connections(self) -> list[EmuConnection]:
        """The live connections, oldest first (provided by the emulator)."""
        raise NotImplementedError

    def next_chan_id(self) -> int:
        """A chanId never used before (provided by the emulator)."""
        raise NotImplementedError

    # -- inspection ------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    @property
    def maintenance(self) -> bool:
        """True between :meth:`maintenance_start` and :meth:`maintenance_end`."""
        return self._maintenance

    def fault_log(self) -> list[dict[str, Any]]:
        """Every fault injected so far, oldest first.

        Each entry: ``n`` (1, 2, …), ``monotonic`` and ``unix`` (seconds, when the fault
        had taken effect), ``name`` (the method's), ``args`` (its arguments) and
        ``effect`` (what it touched, e.g. ``{"connections": [1, 2]}``).
        """
        return self._fault_log.entries()

    def capture_faults(self) -> contextlib.AbstractContextManager[list[dict[str, Any]]]:
        """``with emu.capture_faults() as entries:`` collects the entries this thread logs."""
        return self._fault_log.capture()

    def channel_ids(self, query: str = "", conn_id: int | None = None) -> list[int]:
        """The chanIds whose stream name starts with ``query``, ascending.

        Stream names are the bridge's (SPEC §3): ``book:tBTCUSD:P0``, ``ticker:fUSD``,
        ``candles:tBTCUSD:1m``, ``status:liq:global``. The query is matched token by
        token (``:`` or spaces separate them), so ``"book tBTCUSD P0"`` finds that book,
        ``"book:tBTCUSD"`` every book of tBTCUSD and ``""`` every channel. ``conn_id``
        limits the search to one connection.
        """
        wanted = _query_tokens(query)
        found = []
        for conn in self._targets(conn_id):
            for chan_id, info in conn.channels().items():
                if stream_name(info).split(":")[: len(wanted)] == wanted:
                    found.append(chan_id)
        return sorted(found)

    def channel_id(self, query: str, conn_id: int | None = None) -> int:
        """The one chanId :meth:`channel_ids` finds; FaultError for none or several."""
        found = self.channel_ids(query, conn_id)
        if len(found) != 1:
            where = "" if conn_id is None else f" on connection {conn_id}"
            raise FaultError(f"{len(found)} channels match {query!r}{where}: {found}")
        return found[0]

    # -- market ----------------------------------------------------------------------

    def pause(self) -> None:
        """Stop generating market data; heartbeats continue.

        When this returns, the tick in progress (if any) has been fully sent.
        """
        with self._tick_lock:
            self._paused = True
        self._fault_log.record("pause", {})

    def resume(self) -> None:
        """Generate market data again."""
        with self._tick_lock:
            self._paused = False
        self._fault_log.record("resume", {})

    def maintenance_start(self) -> int:
        """Send info 20060 everywhere, then silence: no data and no heartbeats (§2.2).

        Events are still answered (a ``ping`` gets its ``pong``), new connections are
        accepted with ``platform.status`` 0, and the market keeps moving unseen.
        Returns the number of connections told.
        """
        with self._tick_lock:  # no tick or heartbeat is half sent when the flag turns
            self._maintenance = True
            told = self._broadcast_info(20060)
        self._fault_log.record("maintenance_start", {}, connections=told)
        return len(told)

    def maintenance_end(self) -> int:
        """Send info 20061 everywhere, then data and heartbeats again (§2.2)."""
        with self._tick_lock:  # 20061 goes out before any data
            told = self._broadcast_info(20061)
            self._maintenance = False
        self._fault_log.record("maintenance_end", {}, connections=told)
        return len(told)

    # -- connections -----------------------------------------------------------------

    def send_info(self, code: int) -> int:
        """Send ``{"event":"info","code":code,"msg":…}`` on every connection (§2.2).

        Returns the number of connections it was sent on.
        """
        if isinstance(code, bool) or not isinstance(code, int):
            raise FaultError(f"an info code is an integer such as 20051, not {code!r}")
        told = self._broadcast_info(code)
        self._fault_log.record("send_info", {"code": code}, connections=told)
        return len(told)

    def reject_handshakes(self, status: int, count: int = 1) -> None:
        """Refuse the next ``count`` handshakes with HTTP ``status`` (429, 503, 408…)."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError(f"status must be an HTTP error status 400-599, not {status!r}")
        _check_count(count)
        with self._rejections_lock:
            self._rejections.extend([status] * count)
        self._fault_log.record("reject_handshakes", {"status": status, "count": count})

    def drop(self, conn_id: int | None = None) -> int:
        """Reset one connection (or all) abruptly: no close frame (fault 1). Returns how many."""
        targets = self._targets(conn_id)
        for conn in targets:
            conn.abort()
        dropped = [c.conn_id for c in targets]
        self._fault_log.record("drop", {"conn": conn_id}, connections=dropped)
        return len(targets)

    def silence_connection(self, conn_id: int, on: bool = True) -> None:
        """Send nothing at all on ``conn_id`` (fault 3), or resume with ``on=False``.

        Not even a ``pong`` event or a WebSocket pong frame; requests are still read and
        applied. SEQ_ALL numbers are not used up while silent.
        """
        (conn,) = self._targets(conn_id)
        conn.silence_all(on)
        self._fault_log.record(
            "silence_connection", {"conn": conn_id, "on": on}, connections=[conn_id]
        )

    def silence_channel(self, chan_id: int, on: bool = True) -> None:
        """Send nothing on ``chan_id``, heartbeats included (fault 2), or resume (``on=False``)."""
        conn = self._owner(chan_id)
        conn.silence(chan_id, on)
        self._fault_log.record(
            "silence_channel", {"chan": chan_id, "on": on}, connections=[conn.conn_id]
        )

    def corrupt_checksum(self, chan_id: int, count: int = 1) -> None:
        """Make the next ``count`` ``cs`` frames of book ``chan_id`` wrong (fault 5).

        The value sent is the complement of the right checksum; the book's updates stay
        right, so a client that resubscribes gets a consistent book again. Without the
        OB_CHECKSUM flag no ``cs`` is sent and the count waits.
        """
        _check_count(count)
        conn = self._owner(chan_id)
        info = conn.channels()[chan_id]
        if info.channel != "book":
            raise FaultError(
                f"chanId {chan_id} is {stream_name(info)}: only book channels have checksums"
            )
        conn.corrupt_checksums(chan_id, count)
        self._fault_log.record(
            "corrupt_checksum",
            {"chan": chan_id, "count": count},
            connections=[conn.conn_id],
            stream=stream_name(info),
        )

    def send_malformed(self, kind: str, conn_id: int | None = None) -> int:
        """Send one malformed frame of ``kind`` (:data:`MALFORMED_KINDS`) on one or every
        connection (fault 7). Returns the number of connections; the log has the texts."""
        if kind not in MALFORMED_KINDS:
            raise FaultError(f"unknown kind {kind!r}; kinds: {', '.join(MALFORMED_KINDS)}")
        template, with_seq = MALFORMED_KINDS[kind]
        text = template.replace("{chan}", str(self.next_chan_id()))
        targets = self._targets(conn_id)
        for conn in targets:
            conn.send_raw(text, with_seq=with_seq)
        self._fault_log.record(
            "send_malformed",
            {"kind": kind, "conn": conn_id},
            connections=[c.conn_id for c in targets],
            text=text,
            with_seq=with_seq,
        )
        return len(targets)

    def skip_seq(self, conn_id: int | None = None, count: int = 1) -> int:
        """Leave ``count`` SEQ_ALL numbers unsent on one or every connection: a gap (§6)."""
        _check_count(count)
        targets = self._targets(conn_id)
        for conn in targets:
            conn.skip_seq(count)
        self._fault_log.record(
            "skip_seq", {"conn": conn_id, "count": count}, connections=[c.conn_id for c in targets]
        )
        return len(targets)

    # -- helpers ---------------------------------------------------------------------

    def _take_rejection(self) -> int | None:
        """The status of the next scripted handshake refusal, if any."""
        with self._rejections_lock:
            return self._rejections.popleft() if self._rejections else None

    def _broadcast_info(self, code: int) -> list[int]:
        conns = self.connections()
        for conn in conns:
            conn.send_info(code)
        return [c.conn_id for c in conns]

    def _targets(self, conn_id: int | None) -> list[EmuConnection]:
        """Every live connection, or the one numbered ``conn_id`` (FaultError if gone)."""
        conns = self.connections()
        if conn_id is None:
            return conns
        for conn in conns:
            if conn.conn_id == conn_id:
                return [conn]
        live = [c.conn_id for c in conns]
        raise FaultError(f"no live connection {conn_id!r}; live connections: {live}")

    def _owner(self, chan_id: int) -> EmuConnection:
        """The connection that has ``chan_id`` subscribed (FaultError if none)."""
        for conn in self.connections():
            if chan_id in conn.channels():
                return conn
        raise FaultError(
            f"no live connection has chanId {chan_id!r} subscribed; "
            "see Emulator.channel_ids() or GET /connections"
        )
