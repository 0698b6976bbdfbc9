"""Server-to-client WebSocket frames (RFC 6455 §5), parsed from received bytes (sans-I/O).

websocket-client reads every frame with two or three exact-size ``recv`` calls, builds an
``ABNF`` object and validates it: 6–8 µs a frame, a third of the worker's time under bursts
(PERFORMANCE.md; a minimal reader over 256 KiB buffers is its upper-bound design). The
connection keeps websocket-client for the opening handshake and for sending, and reads with
:class:`FrameReader` instead: it is fed whatever one ``recv`` returned and gives back every
complete message in it, carrying a partial frame over to the next call.

What a client must check of a server's frames (RFC 6455 §5.1–§5.5), all enforced here and
reported as :class:`~bridge.errors.RemoteProtocolError`: no mask, no RSV bits (we negotiate no
extension), a known opcode, control frames final and at most 125 bytes, continuation frames
only inside a fragmented message and no new data message inside one. Fragmented messages are
reassembled; control frames between fragments are delivered at once. A message larger than
``max_size`` is refused rather than buffered without bound. Text payloads are returned as
received (bytes): the JSON parser validates UTF-8 as it goes.
"""

from __future__ import annotations

from bridge.errors import RemoteProtocolError

__all__ = ["BINARY", "CLOSE", "CONTINUATION", "PING", "PONG", "TEXT", "FrameError", "FrameReader"]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (TEXT, BINARY)
CONTROL_OPCODES = (CLOSE, PING, PONG)
MAX_SIZE = 64 * 1024 * 1024  # Bitfinex's largest messages (snapshots) are tens of KiB
PARTS_FROM = 1 << 20  # frames larger than this are gathered in parts, not re-copied per read

Message = tuple[int, bytes]  # (opcode, payload): TEXT, BINARY, CLOSE, PING or PONG


class FrameError(RemoteProtocolError):
    """The server broke RFC 6455. ``messages`` are the complete messages that came before
    the fault in the same :meth:`FrameReader.feed` (they are valid: act on them first)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.messages: list[Message] = []


class FrameReader:
    """Turns a stream of bytes from the server into whole messages (see the module docstring).

    Args:
        max_size: the largest message accepted, in bytes (a fragmented one counts in total).
    """

    __slots__ = ("_buf", "_frag_opcode", "_frag_size", "_fragments", "_have", "_need", "_parts",
                 "max_size")  # fmt: skip

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = b""  # the start of a frame whose end has not arrived yet
        self._fragments: list[bytes] = []  # of a fragmented data message
        self._frag_opcode = 0  # its opcode (0: no fragmented message in progress)
        self._frag_size = 0
        self._parts: list[bytes] = []  # of one large frame, until it is complete
        self._have = 0  # bytes in _parts
        self._need = 0  # bytes that complete the frame in _parts (0: none in progress)

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf) + self._have + self._frag_size

    def feed(self, data: bytes) -> list[Message]:
        """Every message completed by ``data``, in order.

        Raises:
            FrameError: the server broke RFC 6455; the connection must be dropped. The
                messages completed before the fault are in the exception.
        """
        if self._need:  # a large frame arriving in many reads: join its parts once, at the end
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._parts)
            self._parts, self._have, self._need = [], 0, 0
        elif self._buf:
            data = self._buf + data
        buf, size, pos = data, len(data), 0
        out: list[Message] = []
        try:
            while size - pos >= 2:
                b0 = buf[pos]
                length = buf[pos + 1]
                if length & 0x80:
                    raise FrameError("masked frame from the server (RFC 6455 §5.1)")
                start = pos + 2
                if length == 126:
                    start += 2
                    if start > size:
                        break
                    length = int.from_bytes(buf[pos + 2 : start], "big")
                elif length == 127:
                    start += 8
                    if start > size:
                        break
                    length = int.from_bytes(buf[pos + 2 : start], "big")
                # FIN + TEXT needs no check; any other frame is checked on its header
                if b0 != 0x81:
                    self._check_header(b0, length)
                elif self._frag_opcode:
                    raise FrameError("new message inside a fragmented one (§5.4)")
                if length > self.max_size:
                    raise FrameError(f"frame of {length} bytes exceeds {self.max_size}")
                end = start + length
                if end > size:
                    if end - pos > PARTS_FROM:  # gather the rest without copying it each read
                        self._parts, self._have, self._need = [buf[pos:]], size - pos, end - pos
                        self._buf = b""
                        return out
                    break
                pos = end
                if b0 == 0x81:  # nearly every frame Bitfinex sends
                    out.append((TEXT, buf[start:end]))
                else:
                    message = self._frame(b0, buf[start:end])
                    if message is not None:
                        out.append(message)
        except FrameError as exc:
            exc.messages = out
            raise
        self._buf = buf[pos:] if pos < size else b""
        return out

    def _check_header(self, b0: int, length: int) -> None:
        """Refuse a frame the server may not send, from its header alone."""
        if b0 & 0x70:
            raise FrameError("RSV bits set, but no extension was negotiated (§5.2)")
        opcode = b0 & 0x0F
        if opcode in CONTROL_OPCODES:
            if not b0 & 0x80:
                raise FrameError("fragmented control frame (§5.5)")
            if length > 125:
                raise FrameError(f"control frame of {length} bytes, over 125 (§5.5)")
        elif opcode == CONTINUATION:
            if not self._frag_opcode:
                raise FrameError("continuation frame outside a message (§5.4)")
        elif opcode in DATA_OPCODES:
            if self._frag_opcode:
                raise FrameError("new message inside a fragmented one (§5.4)")
        else:
            raise FrameError(f"reserved opcode {opcode:#x} (§5.2)")

    def _frame(self, b0: int, payload: bytes) -> Message | None:
        """Any frame but a final text frame (its header already checked): a control frame,
        a binary message, or a part of a fragmented message."""
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if opcode in CONTROL_OPCODES or (fin and opcode != CONTINUATION):
            return opcode, payload
        if opcode != CONTINUATION:
            self._frag_opcode = opcode
        self._frag_size += len(payload)
        if self._frag_size > self.max_size:
            raise FrameError(f"message exceeds {self.max_size} bytes")
        self._fragments.append(payload)
        if not fin:
            return None
        message = (self._frag_opcode, b"".join(self._fragments))
        self._fragments, self._frag_opcode, self._frag_size = [], 0, 0
        return message
