"""The emulator's accounts: ``auth`` checks, channel-0 snapshots and the scripted updates.

Accounts are API key/secret pairs given to the emulator (``Emulator(accounts={key:
secret})``, ``bfx-bridge emulator --account KEY:SECRET``). An ``auth`` request is checked as
Bitfinex does (bitfinex-ws-v2.md §8.1, §8.2, checklist §12 item 11):

* an unknown key, or a signature that is not the HMAC-SHA384 of ``authPayload`` with the
  key's secret: ``FAILED`` 10100 (``apikey: invalid`` / ``apikey: digest invalid``);
* a nonce not larger than the last one accepted for the key, on any connection, before or
  since: ``FAILED`` 10114 ``nonce: small``;
* a second ``auth`` on one connection: ``FAILED`` 10100 ``auth: dup``.

On success the connection gets ``OK`` (``chanId`` 0, ``userId``, ``caps``), then the
``ps, ws, os, fos, fcs, fls`` snapshots the filter allows (auth seq 0), then heartbeats
``[0,"hb"]`` and, on every market tick, the next message of the account's
:class:`~bridge.emulator.ledger.Ledger` script. ``dms: 4`` is honoured: when that connection
closes, every open order of the account is cancelled (``oc`` to its other connections).

Trailers follow §6: data ``[0,T,D,PUB,AUTH]``, ``*-req`` notifications ``[0,"n",N,AUTH]``
(the auth seq not advanced), each plus ``MTS`` with TIMESTAMP. Locks: the accounts lock is
taken before a connection's send lock, never after, and never under the market lock.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.emulator.ledger import Ledger, Message
from bridge.emulator.market import Market
from bridge.emulator.wire import encode

if TYPE_CHECKING:
    from bridge.emulator.connection import EmuConnection

__all__ = ["Accounts"]

PRICE_SYMBOL = "tBTCUSD"
CAPS = {
    name: {"read": 1, "write": int(name not in ("account", "history", "withdraw"))}
    for name in ("orders", "account", "funding", "history", "wallets", "withdraw", "positions")
}


@dataclass(slots=True)
class _Session:
    """One authenticated connection."""

    conn: EmuConnection
    key: str
    filter: tuple[str, ...]
    dms: bool
    auth_seq: int = 0

    def allows(self, message: Message) -> bool:
        """Whether the auth filter lets ``message`` through (no filter: everything)."""
        if not self.filter:
            return True
        family = message.category
        return family in self.filter or f"{family}-{message.scope}" in self.filter


@dataclass(slots=True)
class _Account:
    secret: str
    user_id: int
    ledger: Ledger
    last_nonce: int = 0
    sessions: dict[int, _Session] = field(default_factory=dict)  # conn_id -> session


class Accounts:
    """Every account of one emulator (thread-safe).

    Args:
        credentials: API key -> API secret.
        market: the emulator's market, for the price the script trades at.
    """

    def __init__(self, credentials: Mapping[str, str], market: Market) -> None:
        self._market = market
        self._lock = threading.Lock()
        now = _now_ms()
        self._accounts = {
            key: _Account(secret, 100_000 + zlib.crc32(key.encode()) % 900_000,
                          Ledger(now, 1_000_000 + 10_000_000 * i))
            for i, (key, secret) in enumerate(credentials.items())
        }  # fmt: skip

    def keys(self) -> list[str]:
        """The API keys this emulator accepts."""
        return list(self._accounts)

    def last_nonce(self, key: str) -> int:
        """The largest nonce accepted for ``key`` so far (0 before any)."""
        with self._lock:
            return self._accounts[key].last_nonce

    def sessions(self, key: str) -> list[int]:
        """The connections (``conn_id``) authenticated with ``key`` now, oldest first."""
        with self._lock:
            return list(self._accounts[key].sessions)

    def use_nonce(self, key: str, nonce: int) -> None:
        """As if another client had authenticated ``key`` with ``nonce``: a later auth must
        send a larger one (tests of 10114 and of the bridge's persisted nonce)."""
        with self._lock:
            account = self._accounts[key]
            account.last_nonce = max(account.last_nonce, nonce)

    # -- requests (a connection's handler thread) -------------------------------------

    def authenticate(self, conn: EmuConnection, request: dict[str, Any]) -> None:
        """Answer one ``auth`` request on ``conn``."""
        with self._lock:
            key = request.get("apiKey")
            account = self._accounts.get(key) if isinstance(key, str) else None
            failure = self._check(conn, request, account)
            if failure is not None:
                code, msg = failure
                conn.send_event({"event": "auth", "status": "FAILED", "chanId": 0,
                                 "code": code, "msg": msg})  # fmt: skip
                return
            assert account is not None and isinstance(key, str)
            account.last_nonce = _nonce(request.get("authNonce")) or 0
            filters = request.get("filter")
            if not isinstance(filters, list):
                filters = []
            allowed = tuple(f for f in filters if isinstance(f, str))
            session = _Session(conn, key, allowed, request.get("dms") == 4)
            conn.send_event({"event": "auth", "status": "OK", "chanId": 0,
                             "userId": account.user_id, "auth_id": str(uuid.uuid4()),
                             "caps": CAPS})  # fmt: skip
            for message in account.ledger.snapshots():
                if session.allows(message):
                    conn.send_account(f'"{message.abbr}",{encode(message.payload)}',
                                      pub=True, auth_seq=0)  # fmt: skip
            account.sessions[conn.conn_id] = session
            conn.beat(0)

    def _check(
        self, conn: EmuConnection, request: dict[str, Any], account: _Account | None
    ) -> tuple[int, str] | None:
        """The (code, msg) of a refused auth, or None when it is accepted."""
        if any(conn.conn_id in a.sessions for a in self._accounts.values()):
            return 10100, "auth: dup"
        if account is None:
            return 10100, "apikey: invalid"
        payload, sig = request.get("authPayload"), request.get("authSig")
        if not isinstance(payload, str) or not isinstance(sig, str):
            return 10100, "apikey: digest invalid"
        expected = hmac.new(account.secret.encode(), payload.encode(), hashlib.sha384)
        if not hmac.compare_digest(expected.hexdigest(), sig.lower()):
            return 10100, "apikey: digest invalid"
        nonce = _nonce(request.get("authNonce"))
        if nonce is None or nonce <= account.last_nonce:
            return 10114, "nonce: small"
        return None

    def forget(self, conn: EmuConnection) -> None:
        """``conn`` closed: end its session; with ``dms`` cancel the account's orders."""
        with self._lock:
            for account in self._accounts.values():
                session = account.sessions.pop(conn.conn_id, None)
                if session is not None and session.dms:
                    self._deliver(account, account.ledger.cancel_all(_now_ms()))

    # -- the market thread --------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Advance every account that has a session by one scripted step."""
        with self._lock:
            live = [a for a in self._accounts.values() if a.sessions]
            if not live:
                return
            with self._market.lock:
                price = self._market.instrument(PRICE_SYMBOL).price()
            for account in live:
                self._deliver(account, account.ledger.step(now_ms, price))

    def _deliver(self, account: _Account, messages: list[Message]) -> None:
        """Send ``messages`` to every session of ``account`` its filter allows (locked)."""
        for session in list(account.sessions.values()):
            for message in messages:
                if not session.allows(message):
                    continue
                if not message.req:
                    session.auth_seq += 1
                body = f'"{message.abbr}",{encode(message.payload)}'
                session.conn.send_account(body, pub=not message.req, auth_seq=session.auth_seq)


def _nonce(value: object) -> int | None:
    """``authNonce`` as a number: clients send a number, the doc says a string (§8.1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
