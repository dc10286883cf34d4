"""SPDY/3.1 framing, the part of it that kubectl's port-forward uses.

Since Kubernetes 1.31 ``kubectl port-forward`` opens a WebSocket with the
subprotocol ``SPDY/3.1+portforward.k8s.io`` and runs a SPDY session inside
its binary messages (before that, SPDY was the connection itself, after an
HTTP upgrade). The session is what the Go implementation kubectl links
(moby/spdystream) speaks: the client opens streams with SYN_STREAM and waits
for each SYN_REPLY; DATA frames carry bytes, FIN half-closes a stream;
PINGs the client starts are echoed; RST_STREAM and GOAWAY end streams and
the session. That implementation neither sends nor honours WINDOW_UPDATE or
SETTINGS, so they are read and ignored here too.

Header blocks are one zlib stream per direction for the whole session,
primed with the dictionary from the SPDY/3 specification (taken from the
``spdy-py`` package rather than retyped; that package's own frame parser is
not used: it reads the flags from the wrong byte).

Wire format (SPDY/3, all integers big-endian): a control frame is
``1 | version(15) | type(16) | flags(8) | length(24) | data``, a data frame
``0 | stream id(31) | flags(8) | length(24) | data``. A header block is a
count of pairs, then each name and value with a 32-bit length prefix.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from spdy.dictionary import zdict

VERSION = 3
DATA = 0
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01

# RST_STREAM status codes.
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5

# A header block this large after inflating is not a port-forward's: refuse it rather than buffer it.
MAX_HEADER_BYTES = 64 * 1024
# DATA frames sent are cut at this size (the 24-bit length allows 16 MiB; nothing gains from that).
DATA_CHUNK = 64 * 1024

_HEADER = struct.Struct(">IB3s")  # first word, flags, 24-bit length


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3: the session cannot go on."""


@dataclass
class Frame:
    type: int  # DATA (0) or a control frame type
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # PING's id, RST_STREAM's and GOAWAY's status.
    value: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Codec:
    """One session's framing: ``feed`` bytes in as they arrive, get whole frames out; the encoders
    give the bytes of frames to send. Not thread-safe; one per session."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=zdict)
        self._deflate = zlib.compressobj(zdict=zdict)

    # -- reading ----------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            word, flags, raw_length = _HEADER.unpack_from(self._buffer)
            length = int.from_bytes(raw_length, "big")
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frames.append(self._frame(word, flags, body))
        return frames

    def _frame(self, word: int, flags: int, body: bytes) -> Frame:
        if not word & 0x80000000:
            return Frame(DATA, stream_id=word & 0x7FFFFFFF, flags=flags, data=body)
        version, ftype = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not spoken here (only {VERSION})")
        if ftype == SYN_STREAM:
            self._need(body, 10, "SYN_STREAM")
            return Frame(ftype, stream_id=_id(body), flags=flags, headers=self._headers(body[10:]))
        if ftype in (SYN_REPLY, HEADERS):
            self._need(body, 4, "SYN_REPLY")
            return Frame(ftype, stream_id=_id(body), flags=flags, headers=self._headers(body[4:]))
        if ftype in (RST_STREAM, GOAWAY):
            self._need(body, 8, "RST_STREAM/GOAWAY")
            return Frame(ftype, stream_id=_id(body), flags=flags, value=int.from_bytes(body[4:8], "big"))
        if ftype == PING:
            self._need(body, 4, "PING")
            return Frame(ftype, flags=flags, value=int.from_bytes(body[:4], "big"))
        # SETTINGS, WINDOW_UPDATE and anything newer: nothing a port-forward acts on.
        return Frame(ftype, flags=flags, data=body)

    @staticmethod
    def _need(body: bytes, size: int, what: str) -> None:
        if len(body) < size:
            raise ProtocolError(f"a {what} frame of {len(body)} bytes is too short")

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BYTES)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not inflate: {exc}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes")
        try:
            (count,) = struct.unpack_from(">I", raw)
            at, headers = 4, {}
            for _ in range(count):
                name, at = _string(raw, at)
                value, at = _string(raw, at)
                headers[name.decode("latin-1")] = value.decode("latin-1")
        except struct.error:
            raise ProtocolError("header block ends early") from None
        return headers

    # -- writing ----------------------------------------------------------------------------------------------

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        """What a client sends to open a stream (kubelite's server never does; its tests do)."""
        return _control(SYN_STREAM, FLAG_FIN if fin else 0,
                        struct.pack(">IIBB", stream_id, 0, 0, 0) + self._header_block(headers))

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        return _control(SYN_REPLY, FLAG_FIN if fin else 0,
                        struct.pack(">I", stream_id) + self._header_block(headers or {}))

    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            for text in (name.lower(), value):
                encoded = text.encode("latin-1")
                raw += struct.pack(">I", len(encoded)) + encoded
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def data(stream_id: int, payload: bytes, fin: bool = False) -> list[bytes]:
        """DATA frames for ``payload`` (one empty frame when there is only the FIN to send)."""
        chunks = [payload[i:i + DATA_CHUNK] for i in range(0, len(payload), DATA_CHUNK)] or [b""]
        return [struct.pack(">IB", stream_id & 0x7FFFFFFF, FLAG_FIN if fin and i == len(chunks) - 1 else 0)
                + len(chunk).to_bytes(3, "big") + chunk for i, chunk in enumerate(chunks)]

    @staticmethod
    def rst_stream(stream_id: int, status: int) -> bytes:
        return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    @staticmethod
    def ping(ping_id: int) -> bytes:
        return _control(PING, 0, struct.pack(">I", ping_id))

    @staticmethod
    def goaway(last_stream_id: int, status: int = 0) -> bytes:
        return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


def _control(ftype: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHB", 0x8000 | VERSION, ftype, flags) + len(body).to_bytes(3, "big") + body


def _id(body: bytes) -> int:
    return int.from_bytes(body[:4], "big") & 0x7FFFFFFF


def _string(raw: bytes, at: int) -> tuple[bytes, int]:
    (size,) = struct.unpack_from(">I", raw, at)
    end = at + 4 + size
    if end > len(raw):
        raise struct.error("string past the end")
    return raw[at + 4:end], end
