"""WebSocket text frames built once per message, so fan-out to N sockets is N plain writes.

Server-to-client frames are unmasked (RFC 6455, section 5.1), so one frame's bytes are valid on
every connection that did not negotiate an extension; bertd's sockets never negotiate one."""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed text frame carrying `text`."""
    payload = text.encode("utf-8")
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", _FIN_TEXT, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, length)
    return header + payload
