"""The emulator's accounts (bridge.emulator.auth, ledger) over real WebSockets.

A plain websocket-client plays the Bitfinex client: it authenticates, and the test reads
exactly what the emulator answers (bitfinex-ws-v2.md §8.1-§8.4, §6 channel-0 trailers,
checklist §12 item 11).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import websocket

from bridge.account import sign
from bridge.emulator import Emulator
from bridge.emulator.cli import configure_parser
from tests.conftest import wait_until

KEY, SECRET = (
    "emuKey0123456789emuKey0123456789emuKey01234",
    "emuSecret0123456789emuSecret0123456789emuS",
)
OTHER_KEY, OTHER_SECRET = "otherKey", "otherSecret"
SEQ_TS = 65536 + 32768


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """An emulator with two accounts, fast ticks and heartbeats."""
    accounts = {KEY: SECRET, OTHER_KEY: OTHER_SECRET}
    emulator = Emulator(port=0, heartbeat_interval=0.3, tick_interval=0.02, seed=3,
                        connect_limit=None, accounts=accounts)  # fmt: skip
    emulator.start()
    yield emulator
    emulator.stop()


class Client:
    """One WebSocket client of the emulator."""

    def __init__(self, emu: Emulator, flags: int = SEQ_TS) -> None:
        self.ws = websocket.create_connection(emu.url, timeout=5)
        assert self.recv()["event"] == "info"
        if flags:
            self.send({"event": "conf", "flags": flags})
            assert self.recv() == {"event": "conf", "status": "OK", "flags": flags}

    def send(self, event: dict[str, Any]) -> None:
        self.ws.send(orjson.dumps(event).decode())

    def recv(self) -> Any:
        return orjson.loads(self.ws.recv())

    def auth(self, key: str = KEY, secret: str = SECRET, nonce: int | None = None,
             **extra: Any) -> dict[str, Any]:  # fmt: skip
        """Send a correctly signed auth (unless told otherwise); return the answer."""
        nonce = nonce or time.time_ns() // 1000
        payload = f"AUTH{nonce}"
        self.send({"event": "auth", "apiKey": key, "authSig": sign(secret, payload),
                   "authNonce": nonce, "authPayload": payload, **extra})  # fmt: skip
        answer: dict[str, Any] = self.recv()
        return answer

    def until(self, done: Callable[[Any], bool], limit: int = 2000) -> list[Any]:
        """Frames up to and including the first for which ``done`` is true."""
        frames = []
        for _ in range(limit):
            frames.append(self.recv())
            if done(frames[-1]):
                return frames
        raise AssertionError(f"not seen in {limit} frames: {frames[-5:]}")

    def close(self) -> None:
        self.ws.close()


def test_ok_then_snapshots_then_updates_with_both_sequences(emu: Emulator) -> None:
    """OK (chanId 0, userId, caps); ps ws os fos fcs fls with auth seq 0; then updates with
    [PUB, AUTH, MTS]; on-req notifications [AUTH, MTS]; heartbeats [0,"hb",PUB,MTS]."""
    client = Client(emu)
    ok = client.auth()
    assert (ok["event"], ok["status"], ok["chanId"]) == ("auth", "OK", 0)
    assert isinstance(ok["userId"], int) and ok["caps"]["orders"]["read"] == 1
    snapshots = [client.recv() for _ in range(6)]
    assert [s[1] for s in snapshots] == ["ps", "ws", "os", "fos", "fcs", "fls"]
    assert [len(s) for s in snapshots] == [6] * 6 and all(s[4] == 0 for s in snapshots)
    pubs = [s[3] for s in snapshots]
    assert pubs == list(range(pubs[0], pubs[0] + 6))
    assert len(snapshots[2][2][0]) == 32 and snapshots[2][2][0][13] == "ACTIVE"  # the order
    frames = client.until(lambda f: f[1] == "miu")
    assert [f[1] for f in frames if f[1] != "hb"] == [
        "on", "n", "ou", "te", "tu", "wu", "wu", "pu", "oc", "bu", "miu"]  # fmt: skip
    auth = [f[-2] for f in frames if f[1] not in ("hb", "n")]
    assert auth == list(range(1, len(auth) + 1))
    note = next(f for f in frames if f[1] == "n")
    assert len(note) == 5 and note[2][1] == "on-req"  # [0,"n",N,AUTH,MTS]: no PUB
    assert note[3] == 1 and note[4] > 1e12  # the auth seq of the `on` before: not advanced
    te, tu = (next(f[2] for f in frames if f[1] == k) for k in ("te", "tu"))
    assert te[9:11] == [None, None] and tu[:9] == te[:9] and tu[9] < 0 and tu[10] in ("BTC", "USD")
    hb = client.until(lambda f: f[1] == "hb")[-1]
    assert len(hb) == 4 and hb[3] > 1e12
    client.close()


def test_bad_key_bad_signature_and_small_nonce_are_refused(emu: Emulator) -> None:
    """10100 apikey: invalid / digest invalid; 10114 nonce: small (any connection)."""
    client = Client(emu, flags=0)
    assert client.auth(key="nobody") == {"event": "auth", "status": "FAILED", "chanId": 0,
                                         "code": 10100, "msg": "apikey: invalid"}  # fmt: skip
    assert client.auth(secret="wrong")["msg"] == "apikey: digest invalid"
    nonce = time.time_ns() // 1000
    assert client.auth(nonce=nonce)["status"] == "OK"
    assert emu.accounts.last_nonce(KEY) == nonce
    again = Client(emu, flags=0)
    refused = again.auth(nonce=nonce)
    assert (refused["code"], refused["msg"]) == (10114, "nonce: small")
    assert again.auth(nonce=nonce + 1)["status"] == "OK"
    client.close()
    again.close()


def test_a_second_auth_on_one_connection_is_refused(emu: Emulator) -> None:
    """Only one auth per connection (§8.1)."""
    client = Client(emu, flags=0)
    assert client.auth()["status"] == "OK"
    client.send({"event": "auth", "apiKey": KEY, "authSig": "x", "authNonce": 1,
                 "authPayload": "AUTH1"})  # fmt: skip
    refused = client.until(lambda f: isinstance(f, dict))[-1]
    assert (refused["status"], refused["msg"]) == ("FAILED", "auth: dup")
    client.close()


def test_a_string_nonce_and_a_filter_are_honoured(emu: Emulator) -> None:
    """authNonce as a string (the doc's type); filter=[wallet]: only ws and wu arrive."""
    client = Client(emu)
    nonce = str(time.time_ns() // 1000)
    payload = f"AUTH{nonce}"
    client.send({"event": "auth", "apiKey": OTHER_KEY, "authSig": sign(OTHER_SECRET, payload),
                 "authNonce": nonce, "authPayload": payload, "filter": ["wallet"]})  # fmt: skip
    assert client.recv()["status"] == "OK"
    frames = client.until(lambda f: f[1] == "wu") + client.until(lambda f: f[1] == "wu")
    assert {f[1] for f in frames} <= {"ws", "wu", "hb"} and frames[0][1] == "ws"
    client.close()


def test_dms_cancels_every_open_order_when_its_connection_closes(emu: Emulator) -> None:
    """dms: 4 on one connection; it closes; the account's other connection gets an oc
    (CANCELED) for each open order, and a new session's os has none left."""
    watcher = Client(emu, flags=0)
    assert watcher.auth()["status"] == "OK"
    emu.pause()
    dms = Client(emu, flags=0)
    assert dms.auth(dms=4)["status"] == "OK"
    open_ids = {o[0] for o in [dms.recv() for _ in range(6)][2][2]}
    assert open_ids, "the ledger starts with a resting order"
    dms.close()
    frames = watcher.until(lambda f: f[1] == "oc" and f[2][13] == "CANCELED")
    frames += watcher.until(lambda f: f[1] == "oc") if len(open_ids) > 1 else []
    cancelled = {f[2][0] for f in frames if f[1] == "oc" and f[2][13] == "CANCELED"}
    assert cancelled == open_ids
    fresh = Client(emu, flags=0)
    assert fresh.auth()["status"] == "OK"
    assert [fresh.recv() for _ in range(6)][2] == [0, "os", []]
    emu.resume()
    for client in (watcher, fresh):
        client.close()


def test_fault_controls_reach_auth_connections(emu: Emulator) -> None:
    """drop() resets an authenticated connection; silence_connection() mutes channel 0."""
    client = Client(emu, flags=0)
    assert client.auth()["status"] == "OK"
    (conn_id,) = emu.accounts.sessions(KEY)
    emu.silence_connection(conn_id)
    client.ws.settimeout(0.8)
    for _ in range(200):  # drain what was sent before the silence took effect
        try:
            client.recv()
        except websocket.WebSocketTimeoutException:
            break
    with pytest.raises(websocket.WebSocketTimeoutException):
        client.recv()
    emu.silence_connection(conn_id, on=False)
    assert client.recv()[0] == 0
    emu.drop(conn_id)
    with pytest.raises((websocket.WebSocketException, OSError)):
        for _ in range(10_000):
            client.recv()
    wait_until(lambda: emu.accounts.sessions(KEY) == [], 5, "the session to end")


def test_cli_takes_accounts_as_key_colon_secret() -> None:
    """--account KEY:SECRET (repeatable); a malformed one is refused without echoing it."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--account", "k1:s:1", "--account", "k2:s2"])
    assert dict(args.account) == {"k1": "s:1", "k2": "s2"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--account", "justakey"])
