"""WebSocket frames (RFC 6455 §5): the ones the server sends, built as bytes,
and a reader for the ones clients send.

A server-to-client frame is unmasked (§5.1), so the same bytes are valid on
every connection: updates are built once and shared. No extension is
negotiated, so every frame has its RSV bits clear.
"""

from __future__ import annotations

import struct

_FIN = 0x80
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA
_CONTINUATION = 0x0

# Fragments one message may come in: each costs a list entry however small,
# so empty continuation frames would otherwise grow memory without bound.
MAX_FRAGMENTS = 128
# Close codes a peer may send (§7.4.1 and the IANA registry); others are a protocol error.
_PEER_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


def text_frame(text: str) -> bytes:
    """A complete, final, unmasked text frame carrying `text`."""
    return _frame(TEXT, text.encode())


def text_frame_bytes(payload: bytes) -> bytes:
    """A text frame of `payload`, which must be UTF-8 already (assembled from encoded parts)."""
    return _frame(TEXT, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    # A control frame carries at most 125 bytes: 2 for the code, the rest the reason.
    return _frame(CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


def ping_frame() -> bytes:
    return _frame(PING, b"")


def pong_frame(payload: bytes) -> bytes:
    return _frame(PONG, payload)


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((_FIN | opcode, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN | opcode, 127, size)
    return header + payload


class FrameError(Exception):
    """The peer broke the protocol; close with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Client frames in, whole messages out: (opcode, payload) with fragments
    joined, text still as bytes, control frames as they come.

    Raises FrameError for what a server must refuse: unmasked frames, RSV bits,
    unknown opcodes, bad fragmentation or control frames (1002), messages
    over `max_size` bytes or in more than MAX_FRAGMENTS fragments (1009).
    """

    __slots__ = (
        "_fragments",
        "_fragments_size",
        "_max_size",
        "_needed",
        "_opcode",
        "_waiting",
        "_waiting_size",
    )

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        # Bytes of an unfinished frame, kept as the reads brought them and joined
        # once `_needed` of them are here: joining on every read would copy the
        # frame once per read, quadratic for a peer sending a byte at a time.
        self._waiting: list[bytes] = []
        self._waiting_size = 0
        self._needed = 0
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._waiting:
            self._waiting.append(data)
            self._waiting_size += len(data)
            if self._waiting_size < self._needed:
                return []
            data = b"".join(self._waiting)
            self._waiting, self._waiting_size = [], 0
        buffer = data
        messages: list[tuple[int, bytes]] = []
        offset = 0
        size = len(buffer)
        needed = 2  # bytes from `offset` that the next step of reading needs
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                start += 2
                if size < start:
                    needed = start - offset
                    break
                length = int.from_bytes(buffer[offset + 2 : start], "big")
            elif length == 127:
                start += 8
                if size < start:
                    needed = start - offset
                    break
                length = int.from_bytes(buffer[offset + 2 : start], "big")
            self._check_header(first, second, length)
            end = start + 4 + length
            if size < end:
                needed = end - offset
                break
            payload = _unmask(buffer[start : start + 4], buffer[start + 4 : end])
            offset = end
            message = self._message(first & 0x0F, bool(first & _FIN), payload)
            if message is not None:
                messages.append(message)
        if offset < size:
            self._waiting, self._waiting_size, self._needed = [buffer[offset:]], size - offset, needed
        return messages

    def _check_header(self, first: int, second: int, length: int) -> None:
        opcode = first & 0x0F
        if first & 0x70:
            raise FrameError(1002, "RSV bits set: no extension was negotiated")
        if not second & 0x80:
            raise FrameError(1002, "client frames must be masked")
        if opcode >= 0x8:
            if opcode not in (CLOSE, PING, PONG):
                raise FrameError(1002, f"unknown control opcode {opcode}")
            if not first & _FIN or length > 125:
                raise FrameError(1002, "control frames are single frames of at most 125 bytes")
        elif opcode not in (_CONTINUATION, TEXT, BINARY):
            raise FrameError(1002, f"unknown opcode {opcode}")
        elif length + self._fragments_size > self._max_size:
            raise FrameError(1009, f"message above {self._max_size} bytes")
        elif opcode == _CONTINUATION and self._fragments and len(self._fragments) >= MAX_FRAGMENTS:
            raise FrameError(1009, f"message in more than {MAX_FRAGMENTS} fragments")

    def _message(self, opcode: int, final: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= 0x8:
            if opcode == CLOSE:
                _check_close(payload)
            return opcode, payload
        if opcode == _CONTINUATION:
            if self._fragments is None:
                raise FrameError(1002, "continuation frame with nothing to continue")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
        elif self._fragments is not None:
            raise FrameError(1002, "new message before the previous one's last fragment")
        elif not final:
            self._opcode, self._fragments, self._fragments_size = opcode, [payload], len(payload)
        if not final:
            return None
        if self._fragments is not None:
            opcode, payload = self._opcode, b"".join(self._fragments)
            self._fragments, self._fragments_size = None, 0
        return opcode, payload


def close_code(payload: bytes) -> int:
    """The code a (checked) close frame carries; 1005 when it carries none (§7.1.5)."""
    return int.from_bytes(payload[:2], "big") if payload else 1005


def _check_close(payload: bytes) -> None:
    if not payload:
        return
    if len(payload) == 1:
        raise FrameError(1002, "close frame with a one-byte body")
    code = int.from_bytes(payload[:2], "big")
    if code not in _PEER_CODES and not 3000 <= code <= 4999:
        raise FrameError(1002, f"close code {code} is not one a peer may send")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not UTF-8") from None


def _unmask(mask: bytes, payload: bytes) -> bytes:
    size = len(payload)
    if not size:
        return payload
    # XOR as one big integer: done in C, not a Python loop per byte.
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
