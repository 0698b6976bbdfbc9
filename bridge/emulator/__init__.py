"""A local Bitfinex WebSocket v2 server with synthetic, consistent market data.

Used by tests, demos and benchmarks in place of ``wss://api-pub.bitfinex.com/ws/2``::

    emu = Emulator(heartbeat_interval=0.2, seed=1)
    emu.start()
    ...  # connect to emu.url, compare emu.sent_frames() with what reached Redis
    emu.stop()

Modules: :mod:`~bridge.emulator.server` (threads, handshakes, the frame log),
:mod:`~bridge.emulator.faults` (named fault injections and the fault log),
:mod:`~bridge.emulator.control` (the HTTP control API for them),
:mod:`~bridge.emulator.connection` (requests, flags, sending, fault hooks),
:mod:`~bridge.emulator.market` (shared feeds and the tick), :mod:`~bridge.emulator.feeds`
and :mod:`~bridge.emulator.books` (the data), :mod:`~bridge.emulator.wire` (frame text and
checksums), :mod:`~bridge.emulator.cli` (``bfx-bridge emulator`` and ``bfx-bridge fault``).
"""

from bridge.emulator.channels import ChannelInfo
from bridge.emulator.cli import configure_fault_parser, configure_parser, run, run_fault
from bridge.emulator.connection import EmuConnection
from bridge.emulator.faults import MALFORMED_KINDS, FaultError
from bridge.emulator.server import Emulator, SentFrame

__all__ = [
    "MALFORMED_KINDS",
    "ChannelInfo",
    "EmuConnection",
    "Emulator",
    "FaultError",
    "SentFrame",
    "configure_fault_parser",
    "configure_parser",
    "run",
    "run_fault",
]
