"""What the sans-I/O protocol core reports: slotted event classes, frozen but for Update.

:meth:`bridge.protocol.Protocol.feed` turns each frame into a list of these; the worker turns
them into stream entries, health counters and log lines. The core never raises on what the
server sends: bad frames become :class:`Malformed` events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.subscription import Subscription

__all__ = [
    "EntriesLost",
    "Event",
    "Interrupted",
    "Maintenance",
    "Malformed",
    "Reconnect",
    "ServerError",
    "ServerInfo",
    "Snapshot",
    "SubscribeFailed",
    "Subscribed",
    "Unsubscribed",
    "Update",
]

Record = dict[str, Any]


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ServerInfo(Event):
    """The ``info`` event sent on connect (version, platform status)."""

    version: int | None
    platform_status: int | None
    server_id: str

    def __str__(self) -> str:
        return f"info v{self.version} platform={self.platform_status} server={self.server_id}"


@dataclass(frozen=True, slots=True)
class Subscribed(Event):
    """Bitfinex acknowledged a subscription with ``chan_id``."""

    sub: Subscription
    chan_id: int

    def __str__(self) -> str:
        return f"subscribed {self.sub} as {self.chan_id}"


@dataclass(frozen=True, slots=True)
class Unsubscribed(Event):
    """Bitfinex acknowledged an unsubscribe."""

    sub: Subscription

    def __str__(self) -> str:
        return f"unsubscribed {self.sub}"


@dataclass(frozen=True, slots=True)
class SubscribeFailed(Event):
    """Bitfinex refused a subscribe (10300 unknown symbol, 10305 channel limit, …)."""

    sub: Subscription
    code: int
    msg: str
    retry_in: float

    @property
    def advice(self) -> str:
        """What an operator can do about it."""
        return _ADVICE.get(self.code, "see the Bitfinex error code")

    def __str__(self) -> str:
        return (
            f"subscribe {self.sub} refused: {self.code} {self.msg} ({self.advice}; "
            f"retrying in {self.retry_in:.0f}s)"
        )


_ADVICE = {
    10300: "check the symbol exists on Bitfinex",
    10301: "Bitfinex thinks it is subscribed already; the connection is reopened",
    10302: "check the channel name",
    10305: "too many channels on one connection, lower bitfinex.channel_limit",
    10011: "check the book precision",
    10012: "check the book length",
}


@dataclass(frozen=True, slots=True)
class Snapshot(Event):
    """The first data of a subscription: a list of records (a new epoch starts)."""

    sub: Subscription
    records: list[Record]
    mts: int | float | None


@dataclass(slots=True)
class Update(Event):
    """One record that changes a subscription's state after its snapshot.

    The one event not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, three times the cost of a plain one, and an Update is made for
    every message (the hot path). Nothing changes one after it is made."""

    sub: Subscription
    record: Record
    mts: int | float | None


@dataclass(frozen=True, slots=True)
class Interrupted(Event):
    """The bridge can no longer vouch for a stream: it needs a ``reset`` entry.

    Emitted for a channel that had data when it goes stale, fails its checksum, is
    resubscribed after maintenance, or loses its connection.
    """

    sub: Subscription
    reason: str

    def __str__(self) -> str:
        return f"{self.sub} interrupted: {self.reason}"


@dataclass(frozen=True, slots=True)
class EntriesLost(Event):
    """Entries of this stream never reached Redis: it needs a ``reset`` even if it just had
    one, and a fresh snapshot (raised by the connection for the publisher, not the core)."""

    sub: Subscription
    reason: str

    def __str__(self) -> str:
        return f"{self.sub}: entries lost ({self.reason})"


@dataclass(frozen=True, slots=True)
class Reconnect(Event):
    """The connection must be dropped and reopened (20051, sequence gap, silence)."""

    reason: str

    def __str__(self) -> str:
        return f"reconnecting: {self.reason}"


@dataclass(frozen=True, slots=True)
class Maintenance(Event):
    """Info 20060 (``active``) or 20061 (maintenance over)."""

    active: bool

    def __str__(self) -> str:
        return "maintenance started (20060)" if self.active else "maintenance ended (20061)"


@dataclass(frozen=True, slots=True)
class ServerError(Event):
    """An ``error`` event that does not belong to one of our subscriptions."""

    code: int
    msg: str

    def __str__(self) -> str:
        return f"server error {self.code}: {self.msg}"


@dataclass(frozen=True, slots=True)
class Malformed(Event):
    """A frame the core could not use; counted and logged, never fatal."""

    reason: str
    frame: str

    def __str__(self) -> str:
        return f"malformed frame ({self.reason}): {self.frame[:200]}"
