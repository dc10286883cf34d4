"""SPDY/3 framing as kubectl's port-forward uses it: frames split anywhere, header compression shared
across a session, and refusals of what is not SPDY/3."""

from __future__ import annotations

import struct

import pytest

from kubelite.apiserver.rest import spdy


def test_streams_open_with_headers_that_survive_a_session_wide_compressor() -> None:
    client, server = spdy.Codec(), spdy.Codec()
    wire = b"".join(client.syn_stream(sid, {"streamType": kind, "port": "8080", "requestID": "0"})
                    for sid, kind in ((1, "error"), (3, "data")))
    frames = server.feed(wire)
    assert [(f.type, f.stream_id) for f in frames] == [(spdy.SYN_STREAM, 1), (spdy.SYN_STREAM, 3)]
    # Names travel lower-cased, as SPDY/3 requires and kubectl's Go framer writes them.
    assert frames[1].headers == {"streamtype": "data", "port": "8080", "requestid": "0"}
    (reply,) = client.feed(server.syn_reply(3))
    assert (reply.type, reply.stream_id, reply.headers, reply.fin) == (spdy.SYN_REPLY, 3, {}, False)


def test_frames_split_at_any_byte_come_out_whole() -> None:
    client, server = spdy.Codec(), spdy.Codec()
    wire = client.syn_stream(1, {"streamtype": "data"}) + b"".join(spdy.Codec.data(1, b"hello", fin=True))
    frames = [f for i in range(len(wire)) for f in server.feed(wire[i:i + 1])]
    assert [(f.type, f.data, f.fin) for f in frames] == [(spdy.SYN_STREAM, b"", False), (spdy.DATA, b"hello", True)]


def test_data_is_cut_into_chunks_and_only_the_last_carries_fin() -> None:
    payload = bytes(200_000)
    frames = spdy.Codec().feed(b"".join(spdy.Codec.data(5, payload, fin=True)))
    assert [len(f.data) for f in frames] == [65536, 65536, 65536, 200_000 - 3 * 65536]
    assert [f.fin for f in frames] == [False, False, False, True]
    (only_fin,) = spdy.Codec().feed(b"".join(spdy.Codec.data(5, b"", fin=True)))
    assert (only_fin.data, only_fin.fin, only_fin.stream_id) == (b"", True, 5)


def test_ping_rst_and_goaway_carry_their_numbers() -> None:
    wire = spdy.Codec.ping(7) + spdy.Codec.rst_stream(3, spdy.CANCEL) + spdy.Codec.goaway(9, spdy.PROTOCOL_ERROR)
    ping, rst, goaway = spdy.Codec().feed(wire)
    assert (ping.type, ping.value) == (spdy.PING, 7)
    assert (rst.type, rst.stream_id, rst.value) == (spdy.RST_STREAM, 3, spdy.CANCEL)
    assert (goaway.type, goaway.stream_id, goaway.value) == (spdy.GOAWAY, 9, spdy.PROTOCOL_ERROR)


def test_settings_and_window_updates_are_read_and_left_alone() -> None:
    window_update = struct.pack(">HHB", 0x8003, spdy.WINDOW_UPDATE, 0) + (8).to_bytes(3, "big") + bytes(8)
    (frame,) = spdy.Codec().feed(window_update)
    assert frame.type == spdy.WINDOW_UPDATE


@pytest.mark.parametrize(("wire", "message"), [
    (struct.pack(">HHB", 0x8002, spdy.PING, 0) + (4).to_bytes(3, "big") + bytes(4), "SPDY version 2"),
    (struct.pack(">HHB", 0x8003, spdy.PING, 0) + (2).to_bytes(3, "big") + bytes(2), "too short"),
    (struct.pack(">HHB", 0x8003, spdy.SYN_STREAM, 0) + (14).to_bytes(3, "big") + bytes(10) + b"junk",
     "does not inflate"),
])
def test_what_is_not_spdy3_is_a_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(spdy.ProtocolError, match=message):
        spdy.Codec().feed(wire)
