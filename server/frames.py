"""WebSocket frames built once and shared by every connection that sends them.

A server-to-client frame is unmasked (RFC 6455 §5.1), so the same bytes are
valid on every connection. Sending them uncompressed is allowed even where
permessage-deflate was negotiated (RFC 7692 §6: RSV1 clear means "not
compressed").
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit + opcode 1 (text)


def text_frame(text: str) -> bytes:
    """A complete, final, unmasked text frame carrying `text`."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload
