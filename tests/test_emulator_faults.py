"""The emulator's fault controls, seen on the wire by a real client (issue 5).

Each fault method is injected into a real server on 127.0.0.1 (port 0) and its effect is
read with websocket-client; then the same faults go through the HTTP control API (urllib)
and the ``bfx-bridge fault`` command function. Waiting for something is always polling.
Absence ("nothing more arrives") is observed over a window measured in another channel's
heartbeats, or, during maintenance when no channel has any, over a bounded read of three
heartbeat intervals; the emulator's own frame log confirms what was (not) sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from bridge.emulator import (
    MALFORMED_KINDS,
    Emulator,
    FaultError,
    configure_fault_parser,
    configure_parser,
    run_fault,
)
from tests.test_emulator import Client, ClientBook, data_frames, raw

SEQ_ALL, OB_CHECKSUM = 65536, 131072
HB = 0.2  # heartbeat interval of these tests' emulators
ROOT = Path(__file__).resolve().parent.parent


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators (fast heartbeats, control API on a free port); stop them all."""
    started: list[Emulator] = []

    def make(**options: Any) -> Emulator:
        options = {"seed": 7, "connect_limit": None, "heartbeat_interval": HB, **options}
        emulator = Emulator("127.0.0.1", 0, control_port=0, **options)
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def clients(emu: Emulator) -> Iterator[Callable[[], tuple[Client, int]]]:
    """Open clients; each comes with its conn id. All are closed after the test."""
    opened: list[Client] = []
    known: set[int] = set()  # conn ids that existed before the client being opened

    def connect() -> tuple[Client, int]:
        known.update(c.conn_id for c in emu.connections())
        client = Client(emu.url)
        opened.append(client)
        client.recv()  # the info event; the emulator registers the connection right after
        assert emu.wait_for(lambda: len(new()) == 1, 5)
        return client, new()[0]

    def new() -> list[int]:
        return [c.conn_id for c in emu.connections() if c.conn_id not in known]

    yield connect
    for client in opened:
        with contextlib.suppress(OSError, websocket.WebSocketException):  # dropped by the test
            client.close()


def heartbeats(client: Client, chan_id: int, count: int) -> list[str]:
    """Read until ``count`` more heartbeats of ``chan_id`` arrived: a clock in frames."""
    hb = f'[{chan_id},"hb"'
    seen: list[str] = []

    def enough(text: str) -> bool:
        seen.append(text)
        return sum(t.startswith(hb) for t in seen) >= count

    return client.read_until(enough)


def sent_after(emu: Emulator, conn_id: int, t: float) -> list[str]:
    """The frames the emulator sent on ``conn_id`` after monotonic time ``t``."""
    return [f.text for f in emu.sent_frames() if f.conn_id == conn_id and f.t > t]


def http(emu: Emulator, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """One control API request; the status and the JSON reply."""
    assert emu.control_url is not None
    data = b"" if method == "POST" else None
    request = urllib.request.Request(emu.control_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def last_fault(emu: Emulator) -> dict[str, Any]:
    return emu.fault_log()[-1]


# -- drop ------------------------------------------------------------------------------


def expect_reset(client: Client) -> None:
    """The connection ends in a TCP reset, and no close frame came before it."""
    client.ws.settimeout(5)
    with pytest.raises(ConnectionResetError):
        while True:
            opcode, _ = client.ws.recv_data(control_frame=True)
            assert opcode != websocket.ABNF.OPCODE_CLOSE, "a drop must not send a close frame"


def test_drop_one_then_all_resets_without_a_close_frame(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """drop(conn) resets that connection only; drop() resets every one; both are logged."""
    # Given three connections with a busy book each
    (a, a_id), (b, b_id), (c, c_id) = clients(), clients(), clients()
    for client in (a, b, c):
        client.subscribe(channel="book", symbol="tBTCUSD")

    # When one is dropped, it gets a reset; the others go on
    assert emu.drop(a_id) == 1
    expect_reset(a)
    assert emu.wait_for(lambda: {x.conn_id for x in emu.connections()} == {b_id, c_id}, 5)
    b.sync()

    # When all are dropped, every one gets a reset
    assert emu.drop() == 2
    expect_reset(b)
    expect_reset(c)
    assert emu.wait_for(lambda: emu.connections() == [], 5)
    assert emu.drop() == 0
    drops = [(f["args"], f["effect"]) for f in emu.fault_log()]
    assert drops == [
        ({"conn": a_id}, {"connections": [a_id]}),
        ({"conn": None}, {"connections": [b_id, c_id]}),
        ({"conn": None}, {"connections": []}),
    ]
    with pytest.raises(FaultError, match=f"no live connection {a_id}"):
        emu.drop(a_id)


# -- silence ---------------------------------------------------------------------------


def test_silence_channel_stops_data_and_heartbeats_of_that_channel_only(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """A silenced channel gets nothing, not even hb, while the others go on; then resumes."""
    client, conn_id = clients()
    book, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    ticker, _ = client.subscribe(channel="ticker", symbol="tETHUSD")

    # When the book is silenced (and everything sent before it has been read)
    emu.silence_channel(book)
    fault = last_fault(emu)
    client.sync()

    # Then during three heartbeat intervals the ticker gets data and hb, the book nothing
    window = heartbeats(client, ticker, 3)
    assert not data_frames(window, book)
    assert any(f[1] != "hb" for f in data_frames(window, ticker))
    later = sent_after(emu, conn_id, fault["monotonic"])
    assert later and not [t for t in later if t.startswith(f"[{book},")]
    assert emu.connections()[0].describe()["channels"][0]["silenced"] is True

    # When the silence ends, the book's updates and heartbeats come back
    emu.silence_channel(book, on=False)
    heartbeats(client, book, 1)
    client.read_until(lambda t: t.startswith(f"[{book},[") or t.startswith(f'[{book},"cs"'))
    log = [(f["name"], f["args"], f["effect"]) for f in emu.fault_log()]
    assert log == [
        ("silence_channel", {"chan": book, "on": True}, {"connections": [conn_id]}),
        ("silence_channel", {"chan": book, "on": False}, {"connections": [conn_id]}),
    ]
    with pytest.raises(FaultError, match="chanId 1 "):
        emu.silence_channel(1)


def test_silence_connection_sends_nothing_not_even_pongs(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """A silent connection answers neither ping events nor ping frames; another goes on."""
    client, conn_id = clients()
    other, _ = clients()
    chan_id, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")
    clock, _ = other.subscribe(channel="ticker", symbol="tBTCUSD")

    # When the connection is silenced
    emu.silence_connection(conn_id)
    fault = last_fault(emu)
    before = [f for f in emu.sent_frames() if f.conn_id == conn_id and f.t <= fault["monotonic"]]
    while len(client.texts) < len(before):  # read what was already on its way
        client.recv()
    client.send(event="ping", cid=77)
    client.ws.ping(b"are you there")

    # Then for three heartbeat intervals it sends nothing at all: no data, no pong of any kind
    heartbeats(other, clock, 3)
    client.ws.settimeout(0.05)
    with pytest.raises(websocket.WebSocketTimeoutException):
        client.ws.recv_data(control_frame=True)
    assert sent_after(emu, conn_id, fault["monotonic"]) == []
    assert client.texts[: len(before)] == [f.text for f in before]

    # When it speaks again, pings are answered and the channel resumes
    emu.silence_connection(conn_id, on=False)
    client.ws.ping(b"again")
    client.ws.settimeout(5)
    opcodes = []
    while websocket.ABNF.OPCODE_PONG not in opcodes:
        opcodes.append(client.ws.recv_data(control_frame=True)[0])
    client.sync()
    heartbeats(client, chan_id, 1)
    assert [f["name"] for f in emu.fault_log()] == ["silence_connection"] * 2
    assert last_fault(emu)["args"] == {"conn": conn_id, "on": False}


# -- checksums -------------------------------------------------------------------------


def test_corrupt_checksum_sends_exactly_count_wrong_values(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """The next `count` cs of that book differ from an independent recomputation, then match."""
    client, _ = clients()
    client.conf(OB_CHECKSUM)
    chan_id, _ = client.subscribe(channel="book", symbol="tETHUSD", len=100)
    other_id, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    books = {chan_id: ClientBook(False, False), other_id: ClientBook(False, False)}
    verdicts: dict[int, list[bool]] = {chan_id: [], other_id: []}  # each cs: right or wrong?

    def feed(text: str) -> None:
        """Rebuild both books from every frame, in order; judge each cs against them."""
        frame = raw(text)
        if not isinstance(frame, list) or int(frame[0]) not in books:
            return
        book = books[int(frame[0])]
        if frame[1] == "cs":
            assert -(2**31) <= int(frame[2]) < 2**31
            verdicts[int(frame[0])].append(int(frame[2]) == book.checksum())
        elif isinstance(frame[1], list):  # the snapshot (a list of entries) or one update
            for entry in frame[1] if isinstance(frame[1][0], list) else [frame[1]]:
                book.apply(entry)

    # When three checksums of one book are corrupted
    emu.corrupt_checksum(chan_id, count=3)

    # Then exactly three consecutive cs of that book are wrong, and every later one is right
    for text in list(client.texts):  # including updates read while subscribing
        feed(text)

    def three_wrong_then_three_right(text: str) -> bool:
        feed(text)
        judged = verdicts[chan_id]
        return False in judged and len(judged) >= judged.index(False) + 6

    client.read_until(three_wrong_then_three_right)
    judged = verdicts[chan_id]
    first_wrong = judged.index(False)
    assert all(judged[:first_wrong])
    assert judged[first_wrong:] == [False] * 3 + [True] * (len(judged) - first_wrong - 3)
    assert verdicts[other_id] and all(verdicts[other_id])
    assert emu.connections()[0].describe()["channels"][0]["corrupt_pending"] == 0
    assert last_fault(emu)["args"] == {"chan": chan_id, "count": 3}
    assert last_fault(emu)["effect"]["stream"] == "book:tETHUSD:P0"


def test_corrupt_checksum_refuses_bad_arguments(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """Only book channels have checksums; the count must be at least 1; nothing is logged."""
    client, _ = clients()
    ticker, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")
    book, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    with pytest.raises(FaultError, match="ticker:tBTCUSD: only book channels"):
        emu.corrupt_checksum(ticker)
    with pytest.raises(FaultError, match="count must be a whole number >= 1"):
        emu.corrupt_checksum(book, 0)
    assert emu.fault_log() == []


# -- malformed frames ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MALFORMED_KINDS))
def test_malformed_frame_arrives_as_specified_without_a_sequence_gap(
    emu: Emulator, clients: Callable[[], tuple[Client, int]], kind: str
) -> None:
    """Each malformed kind arrives verbatim; SEQ_ALL stays contiguous; the connection lives."""
    client, conn_id = clients()
    other, _ = clients()
    client.conf(SEQ_ALL)
    chan_id, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")

    assert emu.send_malformed(kind, conn_id) == 1
    effect = last_fault(emu)["effect"]
    text = effect["text"]

    def is_it(t: str) -> bool:  # with SEQ_ALL, the array kinds get ",SEQ]" appended
        return t.startswith(text[:-1] + ",") if effect["with_seq"] else t == text

    received = client.read_until(is_it)[-1]
    heartbeats(client, chan_id, 1)  # the connection goes on
    client.sync()
    subscribed = set(emu.channel_ids(conn_id=conn_id))
    if kind in ("invalid_json", "garbage"):
        assert received == text
        with pytest.raises(ValueError):
            json.loads(text)
    elif kind == "unknown_event":
        assert json.loads(received) == {
            "event": "emulator-unknown",
            "msg": "an event no client knows",
        }
    elif kind == "empty_array":
        assert received == "[]" and effect["with_seq"] is False
    else:
        frame = json.loads(received)
        assert frame[0] not in subscribed and frame[0] > 100_000 and effect["with_seq"]
        assert frame[1:-1] == (["hb"] if kind == "hb_unknown_chan" else [[60000, 1, 0.5]])
    arrays = [raw(t) for t in client.texts if t.startswith("[") and t != "[]"]
    assert [int(a[-1]) for a in arrays] == list(range(1, len(arrays) + 1))
    other.sync()
    assert not [t for t in other.texts if is_it(t)]  # only the connection asked for
    assert last_fault(emu)["args"] == {"kind": kind, "conn": conn_id}


def test_send_malformed_to_every_connection_and_unknown_kind(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """Without conn_id every connection gets the frame; an unknown kind is refused."""
    (a, a_id), (b, b_id) = clients(), clients()
    assert emu.send_malformed("empty_array") == 2
    for client in (a, b):
        client.read_until(lambda t: t == "[]")
    assert last_fault(emu)["effect"]["connections"] == [a_id, b_id]
    with pytest.raises(FaultError, match="unknown kind 'nope'; kinds: invalid_json"):
        emu.send_malformed("nope")


def test_skip_seq_makes_a_gap(emu: Emulator, clients: Callable[[], tuple[Client, int]]) -> None:
    """skip_seq(conn, 2) leaves two sequence numbers unsent."""
    client, conn_id = clients()
    client.conf(SEQ_ALL)
    chan_id, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")
    client.sync()
    last = int(raw([t for t in client.texts if t.startswith("[")][-1])[-1])
    assert emu.skip_seq(conn_id, 2) == 1
    after = client.read_until(lambda t: t.startswith(f"[{chan_id},"))
    assert int(raw(after[-1])[-1]) == last + 3


# -- maintenance, info and handshakes --------------------------------------------------


def test_maintenance_silences_data_and_heartbeats_until_20061(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """20060, then no data nor hb (pings still answered), then 20061 and data resumes."""
    client, conn_id = clients()
    client.conf(OB_CHECKSUM)
    ticker, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")
    book_id, snapshot = client.subscribe(channel="book", symbol="tBTCUSD")

    # When maintenance starts
    assert emu.maintenance_start() == 1
    start = last_fault(emu)
    info = json.loads(client.read_until(lambda t: '"code":20060' in t)[-1])
    assert info["event"] == "info" and info["code"] == 20060 and "20061" in info["msg"]
    client.sync()  # events are still answered
    book = rebuild_from(client.texts, book_id, snapshot)

    # Then three heartbeat intervals pass with nothing but that pong, and newcomers are told
    # platform status 0; the market moves on unseen
    newcomer = Client(emu.url)
    assert json.loads(newcomer.recv())["platform"] == {"status": 0}
    newcomer.close()
    assert client.read_for(3 * HB) == []
    sent = sent_after(emu, conn_id, start["monotonic"])
    assert len(sent) == 1 and json.loads(sent[0])["event"] == "pong"
    assert emu.maintenance and emu.book("tBTCUSD") != _numbers(book.wire())

    # When maintenance ends, 20061 comes first, then data and heartbeats again
    assert emu.maintenance_end() == 1
    after = client.read_until(lambda t: t.startswith(f"[{ticker},["))
    assert json.loads(after[0])["code"] == 20061
    heartbeats(client, ticker, 1)
    assert not emu.maintenance
    assert [f["name"] for f in emu.fault_log()] == ["maintenance_start", "maintenance_end"]


def rebuild_from(texts: list[str], chan_id: int, snapshot: list[Any]) -> ClientBook:
    book = ClientBook(False, False)
    for entry in snapshot:
        book.apply(entry)
    for frame in data_frames(texts, chan_id)[1:]:
        if frame[1] not in ("hb", "cs"):
            book.apply(frame[1])
    return book


def _numbers(entries: list[list[str]]) -> list[list[Any]]:
    return [[json.loads(x) for x in e] for e in entries]


def test_send_info_and_reject_handshakes_are_logged(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """send_info reaches every connection; reject_handshakes refuses with the status given."""
    client, _ = clients()
    assert emu.send_info(20051) == 1
    assert json.loads(client.read_until(lambda t: '"code"' in t)[-1])["code"] == 20051
    emu.reject_handshakes(503, count=2)
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            Client(emu.url)
        assert refused.value.status_code == 503
    Client(emu.url).close()
    with pytest.raises(FaultError, match="400-599"):
        emu.reject_handshakes(200)
    log = [(f["name"], f["args"]) for f in emu.fault_log()]
    assert log == [
        ("send_info", {"code": 20051}),
        ("reject_handshakes", {"status": 503, "count": 2}),
    ]


def test_fault_log_times_and_order(emu: Emulator) -> None:
    """Entries are numbered in order with monotonic and unix times of when they took effect."""
    t0, u0 = time.monotonic(), time.time()
    emu.pause()
    emu.resume()
    emu.send_info(20051)
    t1, u1 = time.monotonic(), time.time()
    log = emu.fault_log()
    assert [(f["n"], f["name"]) for f in log] == [(1, "pause"), (2, "resume"), (3, "send_info")]
    assert t0 <= log[0]["monotonic"] <= log[1]["monotonic"] <= log[2]["monotonic"] <= t1
    assert all(u0 <= f["unix"] <= u1 for f in log)
    log[0]["name"] = "changed"
    assert emu.fault_log()[0]["name"] == "pause"  # a copy


def test_channel_ids_find_channels_by_stream_name(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """channel_ids matches stream names token by token, on one connection or all."""
    (a, a_id), (b, b_id) = clients(), clients()
    p0, _ = a.subscribe(channel="book", symbol="tBTCUSD")
    r0, _ = a.subscribe(channel="book", symbol="tBTCUSD", prec="R0")
    candles, _ = a.subscribe(channel="candles", key="trade:1m:fUSD:a30:p2:p30")
    liq, _ = a.subscribe(channel="status", key="liq:global")
    b_p0, _ = b.subscribe(channel="book", symbol="tBTCUSD")
    assert emu.channel_ids("book tBTCUSD P0") == [p0, b_p0]
    assert emu.channel_ids("book:tBTCUSD:P0", conn_id=a_id) == [p0]
    assert emu.channel_id("book:tBTCUSD:P0", conn_id=b_id) == b_p0
    assert emu.channel_ids("book:tBTCUSD", conn_id=a_id) == [p0, r0]
    assert emu.channel_ids("candles:fUSD:1m:a30:p2:p30") == [candles]
    assert emu.channel_ids("status:liq:global") == [liq]
    assert emu.channel_ids() == sorted([p0, r0, candles, liq, b_p0])
    assert emu.channel_ids("book:tETHUSD") == []
    with pytest.raises(FaultError, match="2 channels match"):
        emu.channel_id("book:tBTCUSD:P0")


# -- HTTP control API ------------------------------------------------------------------


def test_http_connections_and_faults(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """GET /connections lists conns and channels; GET /faults returns the fault log."""
    client, conn_id = clients()
    chan_id, _ = client.subscribe(channel="book", symbol="tBTCUSD", prec="P1", len=100)
    status, reply = http(emu, "GET", "/connections")
    assert status == 200 and reply["ok"] and not reply["maintenance"] and not reply["paused"]
    (conn,) = reply["connections"]
    assert conn["conn"] == conn_id and conn["silent"] is False
    assert conn["channels"] == [
        {"chanId": chan_id, "channel": "book", "symbol": "tBTCUSD", "key": None, "prec": "P1",
         "freq": "F0", "len": "100", "stream": "book:tBTCUSD:P1", "silenced": False,
         "corrupt_pending": 0},
    ]  # fmt: skip
    emu.pause()
    status, reply = http(emu, "GET", "/faults")
    assert status == 200 and [f["name"] for f in reply["faults"]] == ["pause"]
    assert reply["faults"] == emu.fault_log()


def test_http_fault_endpoints_reach_the_wire(
    emu: Emulator, clients: Callable[[], tuple[Client, int]]
) -> None:
    """Every POST endpoint injects its fault, visible to the client and in the reply's log."""
    client, conn_id = clients()
    client.conf(OB_CHECKSUM)
    book, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    ticker, _ = client.subscribe(channel="ticker", symbol="tBTCUSD")

    def post(path: str) -> dict[str, Any]:
        status, reply = http(emu, "POST", path)
        assert status == 200 and reply["ok"], reply
        return reply

    reply = post("/info?code=20051")
    assert reply["connections"] == 1 and reply["faults"][0]["name"] == "send_info"
    client.read_until(lambda t: '"code":20051' in t)
    reply = post(f"/malformed?kind=empty_array&conn={conn_id}")
    assert reply["faults"][0]["effect"]["text"] == "[]"
    client.read_until(lambda t: t == "[]")
    reply = post(f"/checksum?chan={book}&count=2")
    assert reply["faults"][0]["args"] == {"chan": book, "count": 2}
    assert post("/checksum?stream=book:tBTCUSD:P0")["faults"][0]["args"]["chan"] == book
    assert emu.connections()[0].describe()["channels"][0]["corrupt_pending"] in (1, 2, 3)
    post(f"/silence?chan={ticker}&on=1")
    assert emu.connections()[0].describe()["channels"][1]["silenced"] is True
    post("/silence?stream=ticker:tBTCUSD&on=0")
    post(f"/silence?conn={conn_id}")
    assert emu.connections()[0].describe()["silent"] is True
    post(f"/silence?conn={conn_id}&on=0")
    post("/pause")
    assert emu.paused
    post("/resume")
    post("/maintenance?on=1")
    client.read_until(lambda t: '"code":20060' in t)
    post("/maintenance?on=0")
    client.read_until(lambda t: '"code":20061' in t)
    post(f"/seqgap?conn={conn_id}&count=2")
    post("/reject?status=429&count=1")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Client(emu.url)
    assert refused.value.status_code == 429
    assert post(f"/drop?conn={conn_id}")["dropped"] == 1
    expect_reset(client)
    names = [f["name"] for f in emu.fault_log()]
    assert names == [
        "send_info", "send_malformed", "corrupt_checksum", "corrupt_checksum",
        "silence_channel", "silence_channel", "silence_connection", "silence_connection",
        "pause", "resume", "maintenance_start", "maintenance_end", "skip_seq",
        "reject_handshakes", "drop",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("POST", "/drop?conn=x", 400, "parameter 'conn' must be an integer, not 'x'"),
        ("POST", "/drop?conn=99", 400, "no live connection 99"),
        ("POST", "/drop?chan=1", 400, "/drop takes no parameter 'chan'; it takes: conn"),
        ("POST", "/silence?on=1", 400, "give exactly one of chan, conn, stream (got 0)"),
        ("POST", "/silence?chan=1&conn=1", 400, "give exactly one of chan, conn, stream"),
        ("POST", "/silence?chan=5&on=maybe", 400, "parameter 'on' must be 1 or 0"),
        ("POST", "/silence?stream=book:tNOPE", 400, "no subscribed channel matches stream"),
        ("POST", "/checksum?chan=5&count=0", 400, "count must be a whole number >= 1"),
        ("POST", "/malformed?kind=bad", 400, "unknown kind 'bad'"),
        ("POST", "/malformed", 400, "parameter 'kind' is required"),
        ("POST", "/info", 400, "parameter 'code' is required"),
        ("POST", "/reject?status=101", 400, "HTTP error status 400-599"),
        ("POST", "/info?code=1&code=2", 400, "parameter 'code' given twice"),
        ("GET", "/drop", 405, "/drop takes POST, not GET"),
        ("POST", "/faults", 405, "/faults takes GET, not POST"),
        ("GET", "/nope", 404, "no endpoint /nope; there are GET /connections"),
    ],
)
def test_http_bad_requests_get_clear_errors(
    emu: Emulator, method: str, path: str, status: int, error: str
) -> None:
    """Bad input: 400 (404 unknown path, 405 wrong method) with a message; nothing logged."""
    got, reply = http(emu, method, path)
    assert got == status and reply["ok"] is False and error in reply["error"]
    assert emu.fault_log() == []


def test_control_server_lives_and_dies_with_the_emulator(
    make_emulator: Callable[..., Emulator],
) -> None:
    """control_url is set once started, refused once stopped; None without control_port."""
    emu = make_emulator()
    assert emu.control_url is not None and emu.control_url.startswith("http://127.0.0.1:")
    assert http(emu, "GET", "/faults") == (200, {"ok": True, "faults": []})
    emu.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(emu.control_url + "/faults", timeout=5)
    plain = Emulator(port=0, connect_limit=None)
    plain.start()
    assert plain.control_url is None
    plain.stop()


# -- bfx-bridge fault ------------------------------------------------------------------


def fault_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bfx-bridge fault")
    configure_fault_parser(parser)
    return parser.parse_args(list(argv))


def test_run_fault_calls_the_control_api_and_prints_its_reply(
    emu: Emulator,
    clients: Callable[[], tuple[Client, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each ACTION maps to its endpoint; the JSON reply is printed; errors exit 1."""
    client, conn_id = clients()
    book, _ = client.subscribe(channel="book", symbol="tBTCUSD")
    assert emu.control_url is not None
    control = ("--control", emu.control_url)
    actions = [
        (["connections"], None),
        (["silence", "--chan", str(book)], ("silence_channel", {"chan": book, "on": True})),
        (["silence", "--stream", "book:tBTCUSD:P0", "--off"],
         ("silence_channel", {"chan": book, "on": False})),
        (["silence", "--conn", str(conn_id)],
         ("silence_connection", {"conn": conn_id, "on": True})),
        (["silence", "--conn", str(conn_id), "--off"],
         ("silence_connection", {"conn": conn_id, "on": False})),
        (["checksum", "--chan", str(book), "--count", "2"],
         ("corrupt_checksum", {"chan": book, "count": 2})),
        (["malformed", "garbage", "--conn", str(conn_id)],
         ("send_malformed", {"kind": "garbage", "conn": conn_id})),
        (["seqgap", "--count", "3"], ("skip_seq", {"conn": None, "count": 3})),
        (["info", "20051"], ("send_info", {"code": 20051})),
        (["maintenance", "on"], ("maintenance_start", {})),
        (["maintenance", "off"], ("maintenance_end", {})),
        (["reject", "429", "--count", "2"], ("reject_handshakes", {"status": 429, "count": 2})),
        (["pause"], ("pause", {})),
        (["resume"], ("resume", {})),
        (["drop", "--conn", str(conn_id)], ("drop", {"conn": conn_id})),
    ]  # fmt: skip
    for argv, expected in actions:
        assert run_fault(fault_args(*control, *argv)) == 0, argv
        reply = json.loads(capsys.readouterr().out)
        assert reply["ok"] is True
        if expected is None:
            assert reply["connections"][0]["channels"][0]["chanId"] == book
        else:
            (entry,) = reply["faults"]
            assert (entry["name"], entry["args"]) == expected
    assert run_fault(fault_args(*control, "faults")) == 0
    assert len(json.loads(capsys.readouterr().out)["faults"]) == len(actions) - 1

    assert run_fault(fault_args(*control, "drop", "--conn", "99")) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert "HTTP 400: no live connection 99" in captured.err


def test_run_fault_says_when_the_control_api_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No control server: exit 1 with a message saying how to start one."""
    assert run_fault(fault_args("--control", "http://127.0.0.1:1", "faults")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot reach the emulator's control API at http://127.0.0.1:1" in captured.err
    assert "--control-port" in captured.err
    assert fault_args("pause").control == "http://127.0.0.1:8766"
    with pytest.raises(SystemExit):
        fault_args("silence")  # a target is required


def test_emulator_command_serves_the_control_api(tmp_path: Path) -> None:
    """`bfx-bridge emulator --control-port 0` prints the control URL, which run_fault drives."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert parser.parse_args([]).control_port is None
    code = (
        "import argparse, sys; from bridge.emulator import configure_parser, run; "
        "p = argparse.ArgumentParser(); configure_parser(p); "
        "sys.exit(run(p.parse_args(sys.argv[1:])))"
    )
    argv = [sys.executable, "-c", code, "--port", "0", "--control-port", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        proc.stderr.readline()  # serving ws://…
        line = proc.stderr.readline()
        assert "fault control API on http://127.0.0.1:" in line
        url = line.split(" on ", 1)[1].split()[0]
        assert run_fault(fault_args("--control", url, "info", "20051")) == 0
        assert run_fault(fault_args("--control", url, "faults")) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
