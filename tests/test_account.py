"""Tests of bridge.account: the sans-I/O core of an authenticated account connection.

Literal channel-0 frames (bitfinex-ws-v2.md §6, §8) go in with explicit ``now=`` values;
events and the decoded frames the core wants to send come out. :class:`Server` plays the
server's side: it numbers data with the public and the auth sequence and appends the
timestamp, as Bitfinex does with SEQ_ALL + TIMESTAMP.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from typing import Any

import orjson
import pytest

from bridge.account import TRANSITIONS, AccountProtocol, State, sign
from bridge.account_config import Account
from bridge.account_events import AccountFeed, Authenticated, AuthFailed
from bridge.account_records import STREAMS
from bridge.credentials import Secret
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
    Update,
)

KEY, SECRET = (
    "Kq9fZ0xkey0000000000000000000000000000000aa",
    "Sx7secret00000000000000000000000000000000bb",
)
MTS0 = 1_700_000_000_000
NONCE0 = 1_700_000_000_000_000
OK = {
    "event": "auth",
    "status": "OK",
    "chanId": 0,
    "userId": 269499,
    "caps": {
        "orders": {"read": 1, "write": 0},
        "positions": {"read": 1, "write": 0},
        "wallets": {"read": 1, "write": 0},
        "funding": {"read": 1, "write": 0},
    },
}
ORDER = [
    1185815098, None, 1612288608, "tBTCUSD", 1612288608983, 1612288608988, 0.0001, 0.0001,
    "EXCHANGE LIMIT", None, None, None, 0, "ACTIVE", None, None, 33100, 0, 0, 0, None, None,
    None, 0, 0, None, None, None, "API>BFX", None, None, {},
]  # fmt: skip
ORDER_RECORD = {
    "id": 1185815098, "cid": 1612288608, "symbol": "tBTCUSD", "mts_create": 1612288608983,
    "mts_update": 1612288608988, "amount": 0.0001, "amount_orig": 0.0001,
    "order_type": "EXCHANGE LIMIT", "flags": 0, "order_status": "ACTIVE", "price": 33100,
    "price_avg": 0, "price_trailing": 0, "price_aux_limit": 0, "notify": 0, "hidden": 0,
    "routing": "API>BFX", "meta": {},
}  # fmt: skip
# bitfinex-ws-v2.md §8.4, the TRADE example (a `tu`, fee filled).
TU = [738045455, "tTESTBTC:TESTUSD", 1622169615771, 66635385225, 0.001, 38175,
      "EXCHANGE LIMIT", 39000, -1, -0.000002, "TESTBTC", 1622169615685]  # fmt: skip
TE = [*TU[:9], None, None, *TU[11:]]
SNAPSHOTTED = {"orders", "positions", "wallets", "funding_offers", "funding_credits",
               "funding_loans"}  # fmt: skip


def account(**options: Any) -> Account:
    fields: dict[str, Any] = {
        "name": "main",
        "group": "g",
        "api_key": Secret(KEY),
        "api_secret": Secret(SECRET),
        "key_source": "$BFX_KEY",
        "secret_source": "$BFX_SECRET",
    }
    return Account(**{**fields, **options})


class Server:
    """An :class:`AccountProtocol` connected at ``now=0`` and the server's side of the wire."""

    def __init__(self, **options: Any) -> None:
        nonces = itertools.count(NONCE0)
        self.core = AccountProtocol(
            account(**options),
            nonces.__next__,
            channel_timeout=30,
            connection_timeout=20,
            ping_interval=10,
        )
        self.core.connect(0.0)
        self.pub = 0
        self.auth = 0

    def sent(self) -> list[dict[str, Any]]:
        return [orjson.loads(f) for f in self.core.data_to_send()]

    def event(self, event: dict[str, Any], now: float = 1.0) -> list[Event]:
        return self.core.feed(orjson.dumps(event), now)

    def data(self, abbr: str, payload: Any, now: float = 1.0, *, snapshot: bool = False) -> Any:
        """``[0, abbr, payload, PUB, AUTH, MTS]``; snapshots carry auth seq 0 (§6)."""
        self.pub += 1
        if not snapshot:
            self.auth += 1
        frame = [0, abbr, payload, self.pub, 0 if snapshot else self.auth, MTS0 + self.pub]
        return self.core.feed(orjson.dumps(frame), now)

    def hb(self, now: float) -> list[Event]:
        self.pub += 1
        return self.core.feed(orjson.dumps([0, "hb", self.pub]), now)

    def live(self) -> list[Event]:
        """Answer OK and send every server snapshot empty; the events of the OK."""
        self.sent()
        events = self.event(OK)
        for abbr in ("ps", "ws", "os", "fos", "fcs", "fls"):
            self.data(abbr, [], snapshot=True)
        return events


def feed(kind: str) -> AccountFeed:
    return AccountFeed("account", account="main", kind=kind)


def test_connect_sends_conf_then_a_signed_auth_with_a_microsecond_nonce() -> None:
    """conf (SEQ_ALL + TIMESTAMP), then auth: key, AUTH{nonce}, HMAC-SHA384 hex, no dms."""
    conf, auth = Server().sent()
    assert conf == {"event": "conf", "flags": 65536 + 32768}
    payload = f"AUTH{NONCE0}"
    digest = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    assert auth == {
        "event": "auth",
        "apiKey": KEY,
        "authSig": digest,
        "authNonce": NONCE0,
        "authPayload": payload,
    }
    assert sign(SECRET, payload) == digest and len(digest) == 96


def test_dms_and_filter_are_sent_only_when_configured() -> None:
    """dms: 4 and the filter list appear in the auth event when the account asks for them."""
    _, auth = Server(dms=True, filter=("trading", "wallet")).sent()
    assert auth["dms"] == 4 and auth["filter"] == ["trading", "wallet"]


def test_every_reconnect_uses_a_larger_nonce() -> None:
    """Each connect signs a new, larger nonce; a nonce source that goes back is a bug."""
    server = Server()
    first = server.sent()[1]["authNonce"]
    server.core.connection_lost("gone")
    server.core.connect(5.0)
    second = server.sent()[1]["authNonce"]
    assert second == first + 1
    server.core.connection_lost("gone")
    server.core.nonce = lambda: first
    with pytest.raises(LocalProtocolError, match="not increasing"):
        server.core.connect(9.0)


def test_ok_snapshots_every_stream_bitfinex_does_not_snapshot_at_once() -> None:
    """On OK: Authenticated, then an empty snapshot for each stream without a server snapshot."""
    server = Server()
    server.sent()
    events = server.event(OK)
    assert events[0] == Authenticated("main", 269499, OK["caps"])
    empty = [e.sub.kind for e in events[1:] if isinstance(e, Snapshot) and e.records == []]
    assert empty == [k for k in STREAMS if k not in SNAPSHOTTED]
    assert server.core.subscribed_count() == 1 and server.core.answered_count() == 1


def test_server_snapshots_start_their_streams_with_records() -> None:
    """os with one order -> a snapshot of its record, mts from the trailer."""
    server = Server()
    server.live()
    (event,) = server.data("os", [ORDER], snapshot=True)
    assert event == Snapshot(feed("orders"), [ORDER_RECORD], MTS0 + server.pub)


def test_each_update_is_one_record_with_its_event() -> None:
    """on/ou/oc, wu, pu, bu: one Update each, the abbreviation under ``event``."""
    server = Server()
    server.live()
    (on,) = server.data("on", ORDER)
    assert on == Update(feed("orders"), {"event": "on", **ORDER_RECORD}, MTS0 + server.pub)
    wallet = [
        "exchange",
        "BTC",
        1.61169184,
        0,
        None,
        "Exchange 0.01 BTC for USD @ 7804.6",
        {"reason": "TRADE", "order_id": 1},
    ]
    (wu,) = server.data("wu", wallet)
    assert wu.record == {  # type: ignore[attr-defined]
        "event": "wu", "wallet_type": "exchange", "currency": "BTC", "balance": 1.61169184,
        "unsettled_interest": 0, "description": "Exchange 0.01 BTC for USD @ 7804.6",
        "meta": {"reason": "TRADE", "order_id": 1},
    }  # fmt: skip
    (bu,) = server.data("bu", [1234.5, 1200.1])
    assert bu == Update(
        feed("balance"), {"event": "bu", "aum": 1234.5, "aum_net": 1200.1}, MTS0 + server.pub
    )


def test_te_and_tu_are_both_published_the_fee_only_in_tu() -> None:
    """An own trade: te (no fee) then tu (fee, fee_currency), two updates of trades."""
    server = Server()
    server.live()
    (te,) = server.data("te", TE)
    (tu,) = server.data("tu", TU)
    assert isinstance(te, Update) and isinstance(tu, Update)
    assert te.record["event"] == "te" and "fee" not in te.record
    assert tu.record == {
        "event": "tu", "id": 738045455, "symbol": "tTESTBTC:TESTUSD",
        "mts_create": 1622169615771, "order_id": 66635385225, "exec_amount": 0.001,
        "exec_price": 38175, "order_type": "EXCHANGE LIMIT", "order_price": 39000, "maker": -1,
        "fee": -0.000002, "fee_currency": "TESTBTC", "cid": 1622169615685,
    }  # fmt: skip


def test_an_update_before_its_snapshot_is_dropped_the_snapshot_contains_it() -> None:
    """ou before os: no event (counted); the os that follows is the state."""
    server = Server()
    server.sent()
    server.event(OK)
    assert server.data("ou", ORDER) == []
    assert server.core.early_updates == 1
    assert server.data("os", [ORDER], snapshot=True)[0].records == [ORDER_RECORD]  # type: ignore[attr-defined]


def test_trailers_are_parsed_tolerantly() -> None:
    """[PUB,AUTH,MTS], [AUTH,MTS] for *-req, [PUB] for hb, [PUB,AUTH], none at all."""
    server = Server()
    server.live()
    pub = server.pub
    note = [MTS0, "on-req", None, None, ORDER, None, "SUCCESS", "Submitting order"]
    (event,) = server.core.feed(orjson.dumps([0, "n", note, 7, MTS0 + 5]), 2.0)
    assert event == Update(
        feed("notifications"),
        {
            "event": "n",
            "mts": MTS0,
            "type": "on-req",
            "notify_info": ORDER,
            "status": "SUCCESS",
            "text": "Submitting order",
        },
        MTS0 + 5,
    )
    assert server.core.feed(orjson.dumps([0, "hb", pub + 1]), 2.0) == []
    (plain,) = server.core.feed(orjson.dumps([0, "bu", [1, 2], pub + 2, 8]), 2.0)
    assert plain.mts is None  # type: ignore[attr-defined]
    (bare,) = server.core.feed(orjson.dumps([0, "bu", [3, 4]]), 2.0)
    assert bare.record == {"event": "bu", "aum": 3, "aum_net": 4}  # type: ignore[attr-defined]


def test_a_public_sequence_gap_reconnects() -> None:
    """A skipped public sequence number on channel 0 means lost data: reconnect."""
    server = Server()
    server.live()
    server.pub += 1
    (event,) = server.data("bu", [1, 2])
    assert event == Reconnect(
        f"sequence gap on the account channel: expected {server.pub - 1}, got {server.pub}"
    )


def test_failed_auth_reports_what_to_do_and_reconnects() -> None:
    """FAILED 10100 -> AuthFailed naming where the key and secret come from, then Reconnect."""
    server = Server()
    server.sent()
    failed = {
        "event": "auth",
        "status": "FAILED",
        "chanId": 0,
        "code": 10100,
        "msg": "apikey: digest invalid",
    }
    refused, reconnect = server.event(failed)
    assert isinstance(refused, AuthFailed) and refused.code == 10100
    assert "$BFX_KEY" in refused.fix and "$BFX_SECRET" in refused.fix
    assert isinstance(reconnect, Reconnect) and "10100 apikey: digest invalid" in reconnect.reason
    assert server.core.state is State.FAILED and server.core.auth_failures == 1
    assert server.core.answered_count() == 1 and server.core.subscribed_count() == 0
    assert server.core.connection_lost("authentication failed") == []
    assert server.core.answered_count() == 1  # stays answered: the worker is degraded


def test_nonce_small_advice_says_one_nonce_source_per_key() -> None:
    """FAILED 10114 nonce: small -> the fix says to give the bridge its own API key."""
    server = Server()
    server.sent()
    failed = {"event": "auth", "status": "FAILED", "code": 10114, "msg": "nonce: small"}
    refused, _ = server.event(failed)
    assert "API key of its own" in refused.fix  # type: ignore[attr-defined]


def test_a_lost_connection_interrupts_the_live_streams_only() -> None:
    """Only streams that got a snapshot this session are interrupted (then reset)."""
    server = Server()
    server.sent()
    server.event(OK)
    server.data("os", [], snapshot=True)
    events = server.core.connection_lost("receive: reset")
    kinds = [e.sub.kind for e in events if isinstance(e, Interrupted)]  # type: ignore[attr-defined]
    assert kinds == [k for k in STREAMS if k not in SNAPSHOTTED or k == "orders"]
    assert server.core.state is State.IDLE and server.core.subscribed_count() == 0


def test_filter_and_permissions_give_empty_snapshots_for_what_bitfinex_will_not_send() -> None:
    """filter=[wallet]: orders/positions/funding get [] at once; caps funding read 0 too."""
    server = Server(filter=("wallet",))
    server.sent()
    empty = {e.sub.kind for e in server.event(OK) if isinstance(e, Snapshot)}  # type: ignore[attr-defined]
    assert empty == set(STREAMS) - {"wallets"}
    server = Server()
    server.sent()
    caps = {**OK["caps"], "funding": {"read": 0, "write": 0}}  # type: ignore[dict-item]
    empty = {e.sub.kind for e in server.event({**OK, "caps": caps}) if isinstance(e, Snapshot)}  # type: ignore[attr-defined]
    assert {"funding_offers", "funding_credits", "funding_loans"} <= empty
    assert "orders" not in empty


def test_timeouts_ping_then_reconnect_on_silence() -> None:
    """A ping every interval; no auth answer, a silent channel 0 or connection -> Reconnect."""
    server = Server()
    server.sent()
    assert server.core.next_deadline() == 10.0
    assert server.core.check_timeouts(10.0) == [] and server.sent() == [{"event": "ping", "cid": 1}]
    server.core.feed(b'{"event":"pong","cid":1}', 15.0)
    (late,) = server.core.check_timeouts(31.0)
    assert late == Reconnect("no answer to auth in 30s")
    server = Server()
    server.live()
    assert server.core.check_timeouts(20.0) == [] and server.sent()[0]["event"] == "ping"
    server.core.feed(b'{"event":"pong","cid":1}', 25.0)
    assert server.core.next_deadline() == 30.0
    (silent,) = server.core.check_timeouts(31.5)
    assert silent == Reconnect("account channel silent for 30.5s")
    (gone,) = server.core.check_timeouts(46.0)
    assert gone == Reconnect("nothing received for 21.0s")


def test_credit_moves_every_silence_deadline() -> None:
    """Time blocked on Redis back-pressure is not silence."""
    server = Server()
    server.live()
    server.core.credit(100.0)
    assert server.core.check_timeouts(110.0) == []
    assert [e["event"] for e in server.sent()] == ["ping"]


def test_maintenance_pauses_the_silence_watch_and_its_end_reauthenticates() -> None:
    """20060: no silence timeout; 20061: reconnect for fresh snapshots; 20051: reconnect."""
    server = Server()
    server.live()
    assert server.event({"event": "info", "code": 20060}) == [Maintenance(True)]
    server.core.feed(b'{"event":"pong","cid":1}', 40.0)
    assert not any(isinstance(e, Reconnect) for e in server.core.check_timeouts(45.0))
    assert server.event({"event": "info", "code": 20061}, 46.0) == [
        Maintenance(False),
        Reconnect("maintenance ended (20061)"),
    ]
    assert server.event({"event": "info", "code": 20051}) == [
        Reconnect("server restarting (info 20051)")
    ]
    info = {"event": "info", "version": 2, "serverId": "x", "platform": {"status": 0}}
    assert server.event(info) == [ServerInfo(2, 0, "x"), Maintenance(True)]


def test_remote_faults_are_events_and_never_carry_the_credentials() -> None:
    """Bad frames are Malformed (counted); echoed key or secret are masked everywhere."""
    server = Server()
    server.live()
    echo = orjson.dumps({"event": "who", "apiKey": KEY, "secret": SECRET})
    (bad,) = server.core.feed(echo, 2.0)
    assert isinstance(bad, Malformed) and KEY not in bad.frame and SECRET not in bad.frame
    (error,) = server.event({"event": "error", "code": 10100, "msg": f"bad key {KEY}"})
    assert error == ServerError(10100, "bad key ***")
    for frame in (b"nope", b"[1,2]", b'[0,"zz",[]]', b'[0,"os",{}]', b'[0,"bu",[1],"x"]', b"7"):
        assert isinstance(server.core.feed(frame, 2.0)[0], Malformed), frame
    assert server.core.feed(b'[0,"ats",[]]', 2.0) == []  # undocumented, ignored
    (_, again) = server.core.feed(b'[0,"wu","not a wallet"]', 2.0)  # account data lost:
    assert again == Reconnect(  # reset, and fresh snapshots from a new auth
        "account:main:wallets: unusable 'wu' payload (wallets entry is not an array); "
        "authenticating again for fresh snapshots"
    )
    assert server.core.malformed == 8


def test_account_data_before_auth_and_a_second_auth_answer_are_malformed() -> None:
    """Channel-0 data before OK, and an auth event when none is pending, are not used."""
    server = Server()
    server.sent()
    assert isinstance(server.core.feed(b'[0,"bu",[1,2]]', 1.0)[0], Malformed)
    server.live()
    assert isinstance(server.event(OK)[0], Malformed)


def test_lost_entries_of_an_account_stream_reauthenticate() -> None:
    """Fresh snapshots need a new auth: resubscribe() asks for a reconnect while live."""
    server = Server()
    assert server.core.resubscribe(feed("orders"), "entries lost", 1.0) == []
    server.live()
    (event,) = server.core.resubscribe(feed("orders"), "entries lost", 1.0)
    assert isinstance(event, Reconnect) and "account:main:orders: entries lost" in event.reason


def test_every_transition_is_in_the_table() -> None:
    """The state table allows exactly the edges the core takes; others are bugs."""
    assert TRANSITIONS[State.LIVE] == frozenset({State.IDLE})
    server = Server()
    with pytest.raises(LocalProtocolError):
        server.core.connect(1.0)  # AUTHENTICATING -> AUTHENTICATING


def test_account_feed_names_the_stream_and_is_never_subscribed() -> None:
    """account:{name}:{kind}; a feed has no subscribe request."""
    assert str(feed("orders")) == "account:main:orders" == feed("orders").name
    with pytest.raises(LocalProtocolError):
        feed("orders").request()


@pytest.mark.parametrize("module", ["account", "account_records", "account_events", "credentials"])
def test_the_account_core_imports_no_io(module: str) -> None:
    """The sans-I/O account modules, and what they import, use no I/O module (STYLE)."""
    from tests.test_purity import FORBIDDEN, closure

    for name, imports in closure(module).items():
        bad = sorted(i for i in imports if i.split(".")[0] in FORBIDDEN)
        assert bad == [], f"bridge/{name}.py (reached from {module}) imports {bad}"


def test_health_and_metrics_count_accounts() -> None:
    """An account not authenticated makes the worker degraded; metrics carry both counts."""
    import dataclasses
    from types import SimpleNamespace

    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from bridge.health import Vitals, status_of
    from bridge.metrics import WorkerCollector

    vitals = Vitals(ever_ready=True, maintenance=False, connections=2, shards=2, subscribed=1,
                    expected=1, redis_ok=True, buffered=0, buffer_limit=100, accounts=1,
                    accounts_expected=1)  # fmt: skip
    assert status_of(vitals) == "ok"
    assert status_of(dataclasses.replace(vitals, accounts=0)) == "degraded"
    fields: dict[str, Any] = {name: 0 for name in ("msgs", "reconnects", "checksum_errors",
                              "malformed", "subscribe_errors", "written", "dropped",
                              "connections", "subscribed", "expected", "buffered",
                              "last_msg")}  # fmt: skip
    fields.update(status="degraded", accounts="1/2", auth_failures=3)
    worker = SimpleNamespace(collect=lambda measure_rate: (fields, {}),
                             group=SimpleNamespace(name="g"))  # fmt: skip
    families = {f.name: f for f in WorkerCollector(worker).collect()}  # type: ignore[arg-type]
    assert isinstance(families["bfx_bridge_auth_failures"], CounterMetricFamily)
    assert families["bfx_bridge_auth_failures"].samples[0].value == 3.0
    accounts = families["bfx_bridge_accounts"]
    assert isinstance(accounts, GaugeMetricFamily)
    assert {s.labels["state"]: s.value for s in accounts.samples} == {
        "authenticated": 1.0,
        "configured": 2.0,
    }
