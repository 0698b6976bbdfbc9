"""What an account connection reports besides stream data, and how its streams are named.

:class:`AccountFeed` gives each account stream the shape of a
:class:`~bridge.subscription.Subscription` (a stream name), so that the worker's stream
bookkeeping, the publisher's lost-entries path and the protocol events
(:class:`~bridge.events.Snapshot`, :class:`~bridge.events.Update`,
:class:`~bridge.events.Interrupted`) serve public and account streams alike.
:class:`Authenticated` and :class:`AuthFailed` are the auth outcomes; :func:`advice` is the
one place that says what an operator can do about a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.account_config import Account
from bridge.errors import LocalProtocolError
from bridge.events import Event
from bridge.subscription import Subscription

__all__ = ["AccountFeed", "AuthFailed", "Authenticated", "advice"]


@dataclass(frozen=True, slots=True)
class AccountFeed(Subscription):
    """One account stream, addressed like a subscription: ``account:{account}:{kind}``."""

    account: str = ""
    kind: str = ""

    @property
    def name(self) -> str:
        """The stream name without prefix (SPEC §8)."""
        return f"account:{self.account}:{self.kind}"

    def request(self) -> dict[str, Any]:
        """Account streams are never subscribed one by one: they come with the auth."""
        raise LocalProtocolError(f"{self.name} has no subscribe request")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    """Bitfinex accepted the auth; ``caps`` are the key's permissions."""

    account: str
    user_id: int | None
    caps: dict[str, Any]

    def __str__(self) -> str:
        readable = sorted(k for k, v in self.caps.items() if isinstance(v, dict) and v.get("read"))
        return f"account {self.account} authenticated (user {self.user_id}, reads {readable})"


@dataclass(frozen=True, slots=True)
class AuthFailed(Event):
    """Bitfinex refused the auth (``FAILED``); :attr:`fix` says what the operator can do."""

    account: str
    code: int | None
    msg: str
    fix: str

    def __str__(self) -> str:
        return f"account {self.account}: auth refused: {self.code} {self.msg}. Fix: {self.fix}"


def advice(account: Account, code: int | None, msg: str) -> str:
    """What an operator can do about a refused auth."""
    if code == 10114 or "nonce" in msg:
        return (
            "another client used this API key with a larger nonce (Bitfinex wants one "
            "nonce source per key): give bfx-bridge an API key of its own; the bridge "
            "retries with a larger nonce"
        )
    if code == 10100 or "apikey" in msg:
        return (
            f"check the API key ({account.key_source}) and secret "
            f"({account.secret_source}) of account {account.name}: they must be a pair, "
            "enabled, with read permissions; the bridge retries with backoff"
        )
    return "see Bitfinex's message; the bridge retries with backoff"
