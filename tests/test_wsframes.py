"""Tests of bridge.wsframes: server-to-client WebSocket frames (RFC 6455 §5) from raw bytes.

Frames are built byte by byte with :func:`frame` (checked against websocket-client's own
encoder), and the messages expected from a stream come from :class:`Script`, a tiny model of
§5.4 written here, not from the reader under test. Every stream is fed whole, split at every
byte boundary and in random chunks; ``pending`` is checked against the model at each split.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import websocket

from bridge.errors import RemoteProtocolError
from bridge.wsframes import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, FrameReader

Message = tuple[int, bytes]
RSV1, RSV2, RSV3 = 0x4, 0x2, 0x1  # shifted into bits 6..4 of the first byte by frame()

# -- helpers -------------------------------------------------------------------------------


def frame(
    payload: bytes,
    opcode: int = TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """One frame: FIN/RSV/opcode byte, the shortest length encoding, optional mask key."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def abnf(payload: bytes, opcode: int, fin: bool = True) -> bytes:
    """The same frame from websocket-client 1.9.2's encoder, unmasked as a server sends it
    (``create_frame`` always sets ``mask_value = 1``, the client's duty; 0 turns it off)."""
    built = websocket.ABNF.create_frame(payload, opcode, fin=int(fin))
    built.mask_value = 0
    return built.format()


@dataclass
class Script:
    """A stream of frames and what a correct reader makes of it (RFC 6455 §5.4 by hand).

    For each frame: its end offset in the stream, the messages it completes, and the payload
    bytes of an unfinished fragmented message held once it has been read (``pending``)."""

    encode: Callable[..., bytes] = frame
    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)
    emits: list[list[Message]] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    _frag: list[bytes] = field(default_factory=list)
    _frag_opcode: int = 0

    def add(self, payload: bytes, opcode: int, fin: bool = True) -> Script:
        self.data += self.encode(payload, opcode, fin=fin)
        self.ends.append(len(self.data))
        emitted: list[Message] = []
        if opcode >= 0x8 or (opcode != CONTINUATION and fin):  # a control or a whole message
            emitted.append((opcode, payload))
        else:
            if opcode != CONTINUATION:
                self._frag_opcode = opcode
            self._frag.append(payload)
            if fin:
                emitted.append((self._frag_opcode, b"".join(self._frag)))
                self._frag = []
        self.emits.append(emitted)
        self.held.append(sum(map(len, self._frag)))
        return self

    def fragmented(
        self, parts: list[bytes], opcode: int, controls: dict[int, Message] | None = None
    ) -> Script:
        """One message in ``parts``, with control frames after the given part indexes."""
        for index, part in enumerate(parts):
            self.add(part, opcode if index == 0 else CONTINUATION, fin=index == len(parts) - 1)
            if controls and index in controls and index < len(parts) - 1:
                self.add(controls[index][1], controls[index][0])
        return self

    @property
    def messages(self) -> list[Message]:
        return [message for emitted in self.emits for message in emitted]

    def after(self, offset: int) -> tuple[list[Message], int]:
        """The messages complete in ``data[:offset]`` and the ``pending`` count there."""
        done = sum(1 for end in self.ends if end <= offset)
        messages = [m for emitted in self.emits[:done] for m in emitted]
        partial = offset - (self.ends[done - 1] if done else 0)
        return messages, partial + (self.held[done - 1] if done else 0)


def random_script(
    rng: random.Random, count: int, sizes: list[int], encode: Callable[..., bytes] = frame
) -> Script:
    """``count`` messages of every kind: single text/binary, controls, and fragmented text or
    binary messages (empty fragments included) with controls between their fragments."""
    script = Script(encode=encode)
    for _ in range(count):
        kind = rng.choice(["text", "binary", "control", "fragmented", "fragmented"])
        if kind in ("text", "binary"):
            script.add(rng.randbytes(rng.choice(sizes)), TEXT if kind == "text" else BINARY)
        elif kind == "control":
            script.add(
                rng.randbytes(rng.choice([0, 1, 2, 60, 125])), rng.choice([PING, PONG, CLOSE])
            )
        else:
            parts = [rng.randbytes(rng.choice([0, *sizes])) for _ in range(rng.randint(2, 4))]
            controls = {
                i: (rng.choice([PING, PONG, CLOSE]), rng.randbytes(rng.randint(0, 125)))
                for i in range(len(parts) - 1)
                if rng.random() < 0.5
            }
            script.fragmented(parts, rng.choice([TEXT, BINARY]), controls)
    return script


def feed_chunks(reader: FrameReader, data: bytes, cuts: list[int]) -> list[Message]:
    """Feed ``data`` cut at the given offsets; every message, in order."""
    out: list[Message] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        out += reader.feed(data[start:end])
    return out


def raises(data: bytes, match: str, *, max_size: int | None = None) -> RemoteProtocolError:
    """Feed ``data`` whole and expect a RemoteProtocolError whose reason matches ``match``."""
    reader = FrameReader() if max_size is None else FrameReader(max_size)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        reader.feed(data)
    return info.value


SMALL = random_script(random.Random(6455), 60, [0, 1, 5, 40, 125, 126, 127, 300])

# -- frame encoding and single frames ------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_length_encodings_at_their_limits(size: int, header: bytes) -> None:
    """7-, 16- and 64-bit lengths at both edges: the helper writes the encoding RFC 6455 §5.2
    requires (the same bytes as websocket-client), and the reader gives the payload back."""
    payload = bytes(i % 251 for i in range(size))
    data = frame(payload)
    assert data == header + payload
    assert data == abnf(payload, TEXT)
    reader = FrameReader()
    assert reader.feed(data) == [(TEXT, payload)]
    assert reader.pending == 0
    if size:  # the header alone, then the payload but its last byte, complete nothing
        assert reader.feed(header) == [] and reader.pending == len(header)
        assert reader.feed(payload[:-1]) == [] and reader.pending == len(data) - 1
        assert reader.feed(payload[-1:]) == [(TEXT, payload)] and reader.pending == 0


@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE])
def test_each_opcode_comes_back_with_its_payload_as_bytes(opcode: int) -> None:
    payload = b'[0,"hb"]' if opcode != CLOSE else b"\x03\xe8bye"
    messages = FrameReader().feed(frame(payload, opcode))
    assert messages == [(opcode, payload)]
    assert type(messages[0][1]) is bytes


def test_control_frame_of_125_bytes_is_accepted() -> None:
    payload = b"p" * 125
    assert FrameReader().feed(frame(payload, PING)) == [(PING, payload)]


def test_payload_is_returned_as_received_without_utf8_validation() -> None:
    """Text is handed on as bytes, invalid UTF-8 included: the JSON parser validates it."""
    payload = b"\xff\xfe not utf-8"
    assert FrameReader().feed(frame(payload)) == [(TEXT, payload)]


def test_empty_feed_changes_nothing() -> None:
    reader = FrameReader()
    assert reader.feed(b"") == []
    assert reader.feed(b"\x81") == [] and reader.pending == 1
    assert reader.feed(b"") == [] and reader.pending == 1
    assert reader.feed(b"\x02hi") == [(TEXT, b"hi")] and reader.pending == 0


# -- streams: whole, split at every byte, random chunks --------------------------------------


def test_script_covers_every_kind_of_frame() -> None:
    """The shared stream has what the split tests claim to exercise."""
    first = {SMALL.data[end] & 0x0F for end in [0, *SMALL.ends[:-1]]}
    assert first == {TEXT, BINARY, CONTINUATION, PING, PONG, CLOSE}
    assert any(held for held in SMALL.held)  # fragmented messages in progress
    assert any(len(payload) >= 126 for _, payload in SMALL.messages)  # 16-bit lengths
    assert len(SMALL.messages) >= 60


def test_stream_fed_whole() -> None:
    reader = FrameReader()
    assert reader.feed(bytes(SMALL.data)) == SMALL.messages
    assert reader.pending == 0


def test_stream_split_at_every_byte_boundary() -> None:
    """Two feeds, cut at each offset: the first gives exactly the messages complete before
    the cut with ``pending`` as the model says, and both together give the whole stream."""
    data = bytes(SMALL.data)
    for cut in range(len(data) + 1):
        reader = FrameReader()
        head = reader.feed(data[:cut])
        expected, pending = SMALL.after(cut)
        assert head == expected, cut
        assert reader.pending == pending, cut
        assert head + reader.feed(data[cut:]) == SMALL.messages, cut
        assert reader.pending == 0


def test_stream_fed_one_byte_at_a_time() -> None:
    reader = FrameReader()
    out: list[Message] = []
    data = bytes(SMALL.data)
    for offset in range(len(data)):
        out += reader.feed(data[offset : offset + 1])
        expected, pending = SMALL.after(offset + 1)
        assert out == expected, offset
        assert reader.pending == pending, offset
    assert out == SMALL.messages


@pytest.mark.parametrize("seed", range(20))
def test_stream_fed_in_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    data = bytes(SMALL.data)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, len(data) // 8)))
    reader = FrameReader()
    assert feed_chunks(reader, data, cuts) == SMALL.messages
    assert reader.pending == 0


def test_large_frames_split_around_their_headers_and_ends() -> None:
    """64-bit and 16-bit lengths (65535, 65536, 200 000 bytes) cut at every offset of their
    headers and of their last bytes, and fed in random chunks up to the socket's read size."""
    script = Script()
    script.add(b"a" * 65535, TEXT).add(b"", PING).add(bytes(65536), BINARY)
    script.fragmented([b"x" * 70000, b"y" * 130000], TEXT, {0: (PONG, b"mid")})
    script.add(b"[0,1]", TEXT)
    data = bytes(script.data)
    starts = [0, *script.ends[:-1]]
    cuts = {c for s in starts for c in range(s, s + 12)} | {
        c for e in script.ends for c in range(e - 4, e + 1)
    }
    for cut in sorted(c for c in cuts if 0 <= c <= len(data)):
        reader = FrameReader()
        expected, pending = script.after(cut)
        assert reader.feed(data[:cut]) == expected, cut
        assert reader.pending == pending, cut
        assert reader.feed(data[cut:]) == script.messages[len(expected) :], cut
    rng = random.Random(262144)
    for _ in range(5):
        cuts_list, offset = [], 0
        while True:
            offset += rng.randint(1, 262144)
            if offset >= len(data):
                break
            cuts_list.append(offset)
        assert feed_chunks(FrameReader(), data, cuts_list) == script.messages


# -- fragmented messages ---------------------------------------------------------------------


def test_fragmented_text_with_controls_between_fragments() -> None:
    """Controls between fragments come out at once, in stream order, before the message."""
    data = (
        frame(b'[1,"', TEXT, fin=False)
        + frame(b"a", PING)
        + frame(b'hb"', CONTINUATION, fin=False)
        + frame(b"b", PONG)
        + frame(b"\x03\xe8", CLOSE)
        + frame(b"]", CONTINUATION)
    )
    assert FrameReader().feed(data) == [
        (PING, b"a"),
        (PONG, b"b"),
        (CLOSE, b"\x03\xe8"),
        (TEXT, b'[1,"hb"]'),
    ]


def test_control_frame_is_delivered_before_the_fragmented_message_ends() -> None:
    reader = FrameReader()
    assert reader.feed(frame(b"abc", BINARY, fin=False) + frame(b"p", PING)) == [(PING, b"p")]
    assert reader.pending == 3
    assert reader.feed(frame(b"de", CONTINUATION, fin=False)) == []
    assert reader.pending == 5
    assert reader.feed(frame(b"f", CONTINUATION)) == [(BINARY, b"abcdef")]
    assert reader.pending == 0


def test_fragmented_message_with_empty_fragments() -> None:
    data = (
        frame(b"", TEXT, fin=False)
        + frame(b"", CONTINUATION, fin=False)
        + frame(b"x", CONTINUATION, fin=False)
        + frame(b"", CONTINUATION)
    )
    assert FrameReader().feed(data) == [(TEXT, b"x")]


def test_messages_after_a_fragmented_one_start_afresh() -> None:
    """Once a fragmented message ends, a new one (fast path 0x81 or fragmented) is legal."""
    data = (
        frame(b"a", BINARY, fin=False)
        + frame(b"b", CONTINUATION)
        + frame(b"c")
        + frame(b"d", TEXT, fin=False)
        + frame(b"e", CONTINUATION)
        + frame(b"f", BINARY)
    )
    assert FrameReader().feed(data) == [
        (BINARY, b"ab"),
        (TEXT, b"c"),
        (TEXT, b"de"),
        (BINARY, b"f"),
    ]


# -- websocket-client's encoder as an oracle -----------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_websocket_client_encoder_output_parses_to_the_same_messages(seed: int) -> None:
    """Streams encoded by websocket-client's ABNF (unmasked), lengths up to 64-bit, parse back
    to the model's messages, whole and in random chunks."""
    rng = random.Random(seed)
    script = random_script(rng, 40, [0, 1, 125, 126, 127, 1000, 65535, 65536, 70001], abnf)
    data = bytes(script.data)
    assert FrameReader().feed(data) == script.messages
    cuts = sorted(rng.sample(range(1, len(data)), 200))
    assert feed_chunks(FrameReader(), data, cuts) == script.messages


def test_websocket_client_client_frames_are_refused_as_masked() -> None:
    """What websocket-client sends (masked, a client's duty) is not a server frame."""
    masked = websocket.ABNF.create_frame(b"hello", websocket.ABNF.OPCODE_TEXT).format()
    assert masked[1] & 0x80
    raises(masked, "masked")


# -- protocol errors -------------------------------------------------------------------------

FRAG_START = frame(b"part", TEXT, fin=False)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(frame(b"hello", mask=b"\x01\x02\x03\x04"), "masked frame", id="masked-text"),
        pytest.param(frame(b"", PING, mask=b"\0\0\0\0"), "masked frame", id="masked-ping"),
        pytest.param(frame(b"x", rsv=RSV1), "RSV bits", id="rsv1-text"),
        pytest.param(frame(b"x", BINARY, rsv=RSV2), "RSV bits", id="rsv2-binary"),
        pytest.param(frame(b"x", PING, rsv=RSV3), "RSV bits", id="rsv3-ping"),
        pytest.param(FRAG_START + frame(b"x", CONTINUATION, rsv=RSV1), "RSV bits", id="rsv1-cont"),
        *(
            pytest.param(
                frame(b"x", opcode, fin=fin),
                f"reserved opcode {opcode:#x}",
                id=f"reserved-{opcode:#x}-{'fin' if fin else 'nofin'}",
            )
            for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]
            for fin in (True, False)
        ),
        *(
            pytest.param(frame(b"x", opcode, fin=False), "control frame", id=f"nofin-{opcode:#x}")
            for opcode in (CLOSE, PING, PONG)
        ),
        *(
            pytest.param(frame(b"x" * 126, opcode), "control frame", id=f"big-{opcode:#x}")
            for opcode in (CLOSE, PING, PONG)
        ),
        pytest.param(frame(b"x", CONTINUATION), "continuation frame outside", id="cont-final"),
        pytest.param(
            frame(b"x", CONTINUATION, fin=False), "continuation frame outside", id="cont-nofin"
        ),
        pytest.param(
            frame(b"b", BINARY, fin=False) + frame(b"c", CONTINUATION) + frame(b"d", CONTINUATION),
            "continuation frame outside",
            id="cont-after-end",
        ),
        pytest.param(FRAG_START + frame(b"new"), "new message inside", id="0x81-inside"),
        pytest.param(FRAG_START + frame(b"new", fin=False), "new message inside", id="0x01-inside"),
        pytest.param(FRAG_START + frame(b"new", BINARY), "new message inside", id="0x82-inside"),
        pytest.param(
            frame(b"part", BINARY, fin=False) + frame(b"new", BINARY, fin=False),
            "new message inside",
            id="0x02-inside",
        ),
        pytest.param(
            frame(b"part", BINARY, fin=False) + frame(b"new"),
            "new message inside",
            id="0x81-in-bin",
        ),
    ],
)
def test_protocol_errors(data: bytes, match: str) -> None:
    """Each violation of RFC 6455 raises RemoteProtocolError naming the rule, fed whole and
    byte by byte."""
    error = raises(data, match)
    assert match in error.reason
    assert "§5." in error.reason  # points to the section of RFC 6455 broken
    reader = FrameReader()
    with pytest.raises(RemoteProtocolError, match=match):
        for offset in range(len(data)):
            reader.feed(data[offset : offset + 1])


def test_error_in_a_later_feed_leaves_earlier_messages_delivered() -> None:
    reader = FrameReader()
    assert reader.feed(frame(b"ok")) == [(TEXT, b"ok")]
    with pytest.raises(RemoteProtocolError, match="masked"):
        reader.feed(frame(b"bad", mask=b"abcd"))


def test_masked_frame_is_refused_from_its_second_byte() -> None:
    """No need to wait for the payload (nor the length) of a masked frame."""
    with pytest.raises(RemoteProtocolError, match="masked"):
        FrameReader().feed(b"\x81\xfe")


def test_frame_over_max_size_is_refused_from_its_header() -> None:
    """A frame one byte over ``max_size`` is refused as soon as its length is known, before
    any payload is buffered; one of exactly ``max_size`` passes."""
    assert FrameReader(max_size=200).feed(frame(b"x" * 200)) == [(TEXT, b"x" * 200)]
    header = frame(b"x" * 201)[:4]
    error = raises(header, "frame of 201 bytes exceeds 200", max_size=200)
    assert "201" in error.reason and "200" in error.reason
    raises(frame(bytes(11), BINARY)[:2], "exceeds 10", max_size=10)


def test_64_bit_length_beyond_any_limit_is_refused() -> None:
    """A length with the most significant bit set (forbidden by §5.2) or simply huge."""
    raises(b"\x82\x7f" + b"\xff" * 8, "exceeds")
    raises(b"\x82\x7f" + (1 << 40).to_bytes(8, "big"), "exceeds")


def test_fragmented_message_over_max_size_is_refused() -> None:
    ok = frame(b"x" * 6, TEXT, fin=False) + frame(b"y" * 4, CONTINUATION)
    assert FrameReader(max_size=10).feed(ok) == [(TEXT, b"x" * 6 + b"y" * 4)]
    too_big = frame(b"x" * 6, TEXT, fin=False) + frame(b"y" * 5, CONTINUATION)
    error = raises(too_big, "message exceeds 10 bytes", max_size=10)
    assert "10" in error.reason
    # refused at the fragment that crosses the limit, even if not the last one
    raises(
        frame(b"x" * 6, TEXT, fin=False) + frame(b"y" * 5, CONTINUATION, fin=False),
        "message exceeds 10 bytes",
        max_size=10,
    )


def test_errors_are_remote_protocol_errors_with_a_reason() -> None:
    error = raises(frame(b"x", 0x3), "reserved")
    assert isinstance(error, RemoteProtocolError)
    assert error.reason == "reserved opcode 0x3 (§5.2)"
    assert error.reason in str(error)


def test_frame_over_a_mebibyte_in_small_reads_is_gathered_in_parts() -> None:
    """A 3 MiB frame arriving in 16 KiB reads (as TLS delivers it) comes out whole, with the
    frames around it; ``pending`` counts its bytes while it is gathered."""
    big = bytes(range(256)) * (3 * 4096)
    data = frame(b"[1]", TEXT) + frame(big, TEXT) + frame(b"[2]", TEXT) + frame(b"[3]", TEXT)
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    fed = 0
    for start in range(0, len(data) - 3, 16384):  # the last 3 bytes of [3] come apart
        chunk = data[start : min(start + 16384, len(data) - 3)]
        out += reader.feed(chunk)
        fed += len(chunk)
        done = sum(len(frame(p, o)) for o, p in out)
        assert reader.pending == fed - done, start
    assert out == [(TEXT, b"[1]"), (TEXT, big), (TEXT, b"[2]")]
    assert reader.feed(data[-3:]) == [(TEXT, b"[3]")]
    assert reader.pending == 0


def test_bad_header_is_refused_before_its_payload_arrives() -> None:
    """A frame the server may not send is refused from its header: its (large) payload is
    never waited for."""
    header = bytes((0x83, 127)) + (50 * 1024 * 1024).to_bytes(8, "big")  # reserved opcode 0x3
    with pytest.raises(RemoteProtocolError, match="reserved opcode"):
        FrameReader().feed(header)
    with pytest.raises(RemoteProtocolError, match="control frame of 126 bytes"):
        FrameReader().feed(bytes((0x89, 126, 0, 126)))
