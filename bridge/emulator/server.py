"""The emulator: a Bitfinex-compatible WebSocket v2 server on a background thread.

Threads: websockets' sync server accepts connections on one thread and runs each
connection's handler (:meth:`Emulator._handle`, reading requests) on its own thread; one
market thread ticks the feeds every ``tick_interval`` and sends heartbeats every
``heartbeat_interval``. Each connection serialises its own sends (see
:mod:`bridge.emulator.connection`), so the market thread may send on any of them.

Every frame sent and received is kept in memory in one log, in global order, for tests
to compare against what reached Redis. Nothing is trimmed: that suits short tests; long
runs (the CLI, demos) pass ``log_frames=False`` and, if they want a record, a
``frame_sink``.

Accounts given as ``accounts={key: secret}`` answer ``auth`` on any connection and get
channel 0: snapshots, then the scripted updates of :mod:`bridge.emulator.ledger`, advanced
by the same tick (:mod:`bridge.emulator.auth`).

Faults (drops, silence, bad checksums, malformed frames, maintenance, refused handshakes)
come from :class:`~bridge.emulator.faults.Faults`; with ``control_port`` they can also be
injected over HTTP (:mod:`bridge.emulator.control`).
"""

from __future__ import annotations

import collections
import http
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from bridge.emulator.auth import Accounts
from bridge.emulator.channels import SubscribeError, parse_subscribe
from bridge.emulator.connection import EmuConnection
from bridge.emulator.control import ControlServer
from bridge.emulator.faults import Faults
from bridge.emulator.market import Market

__all__ = ["Emulator", "SentFrame"]

logger = logging.getLogger(__name__)

_SEND_TIMEOUT = 10.0  # a client that reads nothing for this long is dropped
_CLOSE_TIMEOUT = 1.0
_FIRST_CHAN_ID = 100_001  # chanIds are large and unique across all connections (§3.1)


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One frame in the emulator's log.

    Attributes:
        conn_id: the connection it was sent on or received from.
        text: the frame's exact text.
        t: ``time.monotonic()`` when it was handed to the socket (or received).
        direction: ``"sent"`` (server to client) or ``"recv"`` (client to server).
    """

    conn_id: int
    text: str
    t: float
    direction: str


class Emulator(Faults):
    """A Bitfinex WS v2 server with synthetic, consistent data for any symbol.

    The fault methods (``drop``, ``silence_channel``, ``corrupt_checksum``,
    ``send_malformed``, ``maintenance_start``, ``fault_log``, ``channel_ids``…) are
    documented in :class:`~bridge.emulator.faults.Faults`.

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        heartbeat_interval: seconds between ``[chanId,"hb"]`` on each channel (§4).
        tick_interval: seconds between market ticks.
        channel_limit: channels per connection before error 10305 (§1.2).
        connect_limit: ``(connections, seconds)`` accepted per sliding window before
            handshakes are refused with HTTP 429 (§1.3); None for no limit.
        seed: makes the data reproducible; None for fresh randomness.
        unknown_symbols: well-formed symbols to refuse with 10300 ``symbol: invalid``.
        updates_per_tick: inclusive range of book updates (and new trades) per tick.
        log_frames: keep every frame in memory for :meth:`sent_frames` (unbounded).
        frame_sink: called with every frame logged, under the log lock.
        control_port: serve the HTTP control API (:mod:`bridge.emulator.control`) on
            127.0.0.1 at this port, 0 for a free one (see :attr:`control_url`); None for
            no control server.
        accounts: API key -> secret of the accounts ``auth`` accepts (see
            :mod:`bridge.emulator.auth`); their state is in :attr:`accounts`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat_interval: float = 15.0,
        tick_interval: float = 0.1,
        channel_limit: int = 25,
        connect_limit: tuple[int, float] | None = (20, 60.0),
        seed: int | None = None,
        unknown_symbols: frozenset[str] = frozenset(),
        updates_per_tick: tuple[int, int] = (1, 3),
        log_frames: bool = True,
        frame_sink: Callable[[SentFrame], None] | None = None,
        control_port: int | None = None,
        accounts: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.tick_interval = tick_interval
        self.channel_limit = channel_limit
        self.connect_limit = connect_limit
        self.unknown_symbols = frozenset(unknown_symbols)
        self.market = Market(
            seed=seed, tick_interval=tick_interval, updates_per_tick=updates_per_tick
        )
        self.accounts = Accounts(accounts or {}, self.market)
        self._log_frames = log_frames
        self._frame_sink = frame_sink
        self._log: list[SentFrame] = []
        self._log_lock = threading.Lock()
        self._lock = threading.Lock()  # connections, ids, handshake bookkeeping
        self._connections: dict[int, EmuConnection] = {}
        self._conn_ids = itertools.count(1)
        self._chan_ids = itertools.count(_FIRST_CHAN_ID)
        self._admitted: collections.deque[float] = collections.deque()
        self._init_faults()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._control_port = control_port
        self._control: ControlServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/ws/2``."""
        return f"ws://{self.host}:{self.port}/ws/2"

    @property
    def control_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of the control API once started; None without one."""
        return None if self._control is None else self._control.url

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Listen and serve on background threads; returns once the socket is listening."""
        if self._server is not None:
            return
        if self._control_port is not None:  # bound first: it is the cheaper to undo
            self._control = ControlServer(self, self._control_port)
        try:
            self._server = serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._process_request,
                compression=None,
                ping_interval=None,
                close_timeout=_CLOSE_TIMEOUT,
                server_header=None,
            )
        except BaseException:
            if self._control is not None:
                self._control.stop()
                self._control = None
            raise
        self.port = self._server.socket.getsockname()[1]
        for target, name in ((self._server.serve_forever, "serve"), (self._run_market, "market")):
            thread = threading.Thread(target=target, name=f"emulator-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self._control is not None:
            self._control.start()

    def stop(self) -> None:
        """Close every connection (close code 1001) and the server. Idempotent."""
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()
        if self._control is not None:
            self._control.stop()
        self._server.shutdown()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------

    def connections(self) -> list[EmuConnection]:
        """The live connections, oldest first."""
        with self._lock:
            return list(self._connections.values())

    def sent_frames(self) -> list[SentFrame]:
        """A copy of the log of frames sent to clients, in global send order."""
        with self._log_lock:
            return [f for f in self._log if f.direction == "sent"]

    def received_frames(self) -> list[SentFrame]:
        """A copy of the log of frames received from clients, in arrival order."""
        with self._log_lock:
            return [f for f in self._log if f.direction == "recv"]

    def book(
        self, symbol: str, prec: str = "P0", length: int = 25, freq: str = "F0"
    ) -> list[list[float | int]]:
        """The current book of that channel in wire layout, as a fresh snapshot would send it.

        Bids best first, then asks best first (R0: by price, then order id, §5.4). A book no
        one subscribed to yet is created, and later subscribers continue from it.

        Raises:
            ValueError: the arguments name no valid book (bad symbol, prec, freq or len).
        """
        request = {"channel": "book", "symbol": symbol, "prec": prec, "freq": freq, "len": length}
        info = parse_subscribe(request, frozenset())
        if isinstance(info, SubscribeError):
            raise ValueError(f"no such book {request}: {info.msg}")
        return self.market.book(info, time.time_ns() // 1_000_000)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` every 10 ms until it is true (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- Host protocol, used by connections ------------------------------------------

    def next_chan_id(self) -> int:
        """A chanId no connection of this emulator has had."""
        with self._lock:
            return next(self._chan_ids)

    def record(self, conn_id: int, text: str, direction: str) -> None:
        """Append one frame to the log (and hand it to the frame sink)."""
        entry = SentFrame(conn_id, text, time.monotonic(), direction)
        with self._log_lock:
            if self._log_frames:
                self._log.append(entry)
            if self._frame_sink is not None:
                self._frame_sink(entry)

    # -- threads ---------------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake that was scripted to fail or exceeds the connect limit."""
        now = time.monotonic()
        scripted = self._take_rejection()
        with self._lock:
            if scripted is not None:
                status = scripted
            elif self.connect_limit is None:
                return None
            else:
                count, window = self.connect_limit
                while self._admitted and self._admitted[0] <= now - window:
                    self._admitted.popleft()
                if len(self._admitted) < count:
                    self._admitted.append(now)
                    return None
                status = 429
        return ws.respond(status, http.HTTPStatus(status).phrase + "\n")

    def _handle(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes (runs on its own thread)."""
        ws.socket.settimeout(_SEND_TIMEOUT)
        with self._lock:
            conn = EmuConnection(next(self._conn_ids), ws, self)
        try:
            conn.open()  # info first: only then may broadcasts and faults reach it
            with self._lock:
                self._connections[conn.conn_id] = conn
            for message in ws:
                conn.receive(
                    message if isinstance(message, str) else message.decode(errors="replace")
                )
        except ConnectionClosed:
            pass
        finally:
            conn.detach()
            with self._lock:
                self._connections.pop(conn.conn_id, None)

    def _run_market(self) -> None:
        """Tick every ``tick_interval`` and send due heartbeats until stopped.

        An unexpected error is logged and the loop goes on: one bad tick must not silence
        every connection for the rest of a test.
        """
        next_tick = time.monotonic() + self.tick_interval
        while True:
            now = time.monotonic()
            next_beat = now + 1.0
            try:
                if now >= next_tick:
                    self._tick()
                    next_tick += self.tick_interval
                    if next_tick < now:  # fell behind: skip rather than burst
                        next_tick = now + self.tick_interval
                next_beat = min(next_beat, self._heartbeats(now))
            except Exception:
                logger.exception("! emulator market tick failed")
            timeout = min(next_tick, next_beat) - time.monotonic()
            if self._stopping.wait(max(0.0, timeout)):
                return

    def _heartbeats(self, now: float) -> float:
        """Send the due heartbeats (none in maintenance); return the next due time."""
        with self._tick_lock:
            if self._maintenance:
                return now + 1.0
            return min((c.send_heartbeats(now) for c in self.connections()), default=now + 1.0)

    def _tick(self) -> None:
        with self._tick_lock:
            if self._paused:
                return
            deliveries = self.market.tick(time.time_ns() // 1_000_000)
            if self._maintenance:
                return  # the market moves on unseen (see bridge.emulator.faults)
            for subscribers, batch in deliveries:
                for subscriber, chan_id in subscribers:
                    subscriber.deliver(chan_id, batch)
            self.accounts.tick(time.time_ns() // 1_000_000)
