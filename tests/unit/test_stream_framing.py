"""The byte-stream framing (protocol.stream), checked against an encoder written here from the
spec's byte table, and fed the way a lossy serial line delivers bytes."""
from __future__ import annotations

import random
import struct
import zlib

import pytest

from protocol import stream

U32 = struct.Struct("<I")


def spec_frame(frames: list[bytes], kind: int = 0x01) -> bytes:
    """SYNC, KIND, 3 zero bytes, LENGTH, HCRC, BODY, BCRC — straight from the table."""
    body = U32.pack(len(frames)) + b"".join(U32.pack(len(f)) + f for f in frames)
    head = b"\xaaUTH" + bytes([kind, 0, 0, 0]) + U32.pack(len(body))
    return head + U32.pack(zlib.crc32(head)) + body + U32.pack(zlib.crc32(body))


MSG = [b"\x85header", bytes(range(256)) * 300, b"", b"tail"]


def feed_all(decoder: stream.StreamDecoder, data: bytes, chunk: int) -> list:
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i:i + chunk])
    return out


def test_encoder_matches_the_spec_table():
    assert b"".join(bytes(memoryview(p)) for p in stream.encode(MSG)) == spec_frame(MSG)
    nak_head = b"\xaaUTH\x15\0\0\0" + U32.pack(0)  # a NAK has no body: LENGTH 0, BCRC 0
    assert stream.encode_nak() == nak_head + U32.pack(zlib.crc32(nak_head)) + U32.pack(0)
    assert stream.encoded_size(MSG) == len(spec_frame(MSG))


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_messages_survive_any_split_and_noise_between_them(chunk):
    noise = bytes(random.Random(1).randrange(256) for _ in range(300)) + b"\xaaU"  # a half SYNC
    data = noise + spec_frame(MSG) + b"\xaaUTH\x00garbage" + spec_frame([b"x"]) + stream.encode_nak()
    d = stream.StreamDecoder()
    events = feed_all(d, data, chunk)
    assert events == [stream.Message(MSG), stream.Message([b"x"]), stream.Nak()]
    assert d.stats.resync_bytes >= 300 and d.stats.header_errors >= 1
    assert not d.mid_frame


def test_a_damaged_body_is_reported_and_the_next_frame_is_found():
    bad = bytearray(spec_frame(MSG))
    bad[40] ^= 0x10
    d = stream.StreamDecoder()
    events = d.feed(bytes(bad) + spec_frame([b"ok"]))
    assert [type(e) for e in events] == [stream.Dropped, stream.Message]
    assert events[0].reason == "crc" and events[1].frames == [b"ok"]
    assert d.stats.crc_errors == 1


def test_a_damaged_length_is_never_trusted():
    """A bit flip in LENGTH fails HCRC: the receiver neither waits for 2 GB nor eats the next
    frame; it finds the next SYNC."""
    bad = bytearray(spec_frame([b"a"]))
    bad[11] ^= 0x40  # LENGTH's top byte
    d = stream.StreamDecoder()
    assert d.feed(bytes(bad) + spec_frame([b"b"])) == [stream.Message([b"b"])]
    assert d.stats.header_errors == 1


def test_oversize_malformed_and_unknown_frames_are_reported_without_reading_them():
    head = b"\xaaUTH\x01\0\0\0" + U32.pack(stream.MAX_BODY_BYTES + 1)
    oversize = head + U32.pack(zlib.crc32(head))
    body = U32.pack(2) + U32.pack(3) + b"abc"  # announces 2 frames, holds 1
    head = b"\xaaUTH\x01\0\0\0" + U32.pack(len(body))
    malformed = head + U32.pack(zlib.crc32(head)) + body + U32.pack(zlib.crc32(body))
    d = stream.StreamDecoder()
    events = d.feed(oversize + malformed + spec_frame([b"z"], kind=0x07) + spec_frame([b"ok"]))
    assert [getattr(e, "reason", None) for e in events] == ["too_large", "body", "kind", None]
    assert events[-1] == stream.Message([b"ok"])


def test_a_frame_cut_off_midway_is_discarded_by_expire():
    d = stream.StreamDecoder()
    frame = spec_frame(MSG)
    assert d.feed(frame[:1000]) == [] and d.mid_frame
    assert d.expire() and not d.mid_frame and d.stats.expired == 1
    assert d.feed(spec_frame([b"next"])) == [stream.Message([b"next"])]
    assert not d.expire()  # nothing partial: nothing counted
