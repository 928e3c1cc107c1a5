"""The wire codec and the register map (protocol/)."""
from __future__ import annotations

import os
from pathlib import Path

import msgpack
import numpy as np
import pytest

from protocol.codec import PROTOCOL_VERSION
from protocol import REGMAP, Op, ProtocolError, Status, Transaction, limits
from protocol.codec import Reply, decode_reply, decode_request, encode_reply, encode_request
from protocol.docgen import render
from protocol.regmap import float_to_q31, q31_full_scale_for, q31_to_float
from protocol.words import f32_to_word, f64_to_words, word_to_f32, words_to_f64

CID = b"c" * 16


def test_request_round_trip_zero_copy_payload():
    data = np.arange(-3, 5, dtype=np.int32)
    tx = [Transaction(Op.WRITE, REGMAP.BIAS.base, (8,), data), Transaction(Op.READ, 0, (2,)),
          Transaction(Op.RMW, 0xA, (0xFF, 1)), Transaction(Op.WAIT, 0x11, (1, 0, 100))]
    frames = encode_request(7, CID, 99, tx)
    assert len(frames) == 2 and frames[1].nbytes == 32  # payload is the raw buffer, not msgpack
    p = decode_request([bytes(memoryview(f)) for f in frames])
    assert (p.seq, p.cid, p.owner) == (7, CID, 99)
    assert [t.op for t in p.tx] == [Op.WRITE, Op.READ, Op.RMW, Op.WAIT]
    np.testing.assert_array_equal(p.tx[0].data.view(np.int32), data)


def test_reply_round_trip_aligns_frames_to_transactions():
    tx = [Transaction(Op.WRITE, 0xA, (1,), np.array([1], np.uint32)), Transaction(Op.READ, 0, (2,))]
    r = Reply(3, Status.OK, [Status.OK, Status.OK], [None, np.array([5, 6], np.uint32)], boot_id=11)
    back = decode_reply([bytes(memoryview(f)) for f in encode_reply(r)], tx)
    assert back.seq == 3 and back.boot_id == 11 and back.data[0] is None
    assert back.data[1].tolist() == [5, 6]


def header(**over):
    h = {"v": list(PROTOCOL_VERSION), "seq": 1, "cid": CID, "own": 0, "tx": [[0, 0, 1]]}
    h.update(over)
    return msgpack.packb(h)


@pytest.mark.parametrize("frames, status", [
    ([], Status.MALFORMED),
    ([b"\xc1"], Status.MALFORMED),
    ([msgpack.packb([1, 2])], Status.MALFORMED),
    ([header(v=[PROTOCOL_VERSION[0] + 1, 0])], Status.BAD_VERSION),
    ([header(seq=-1)], Status.MALFORMED),
    ([header(cid=b"short")], Status.MALFORMED),
    ([header(extra=1)], Status.MALFORMED),
    ([header(tx=[[1, 0, 2]])], Status.MALFORMED),                 # WRITE without its frame
    ([header(tx=[[1, 0, 2]]), b"\0" * 7], Status.MALFORMED),      # frame size != 4 * words
    ([header(), b"\0" * 4], Status.MALFORMED),                    # payload left over
    ([header(tx=[[0, 0, 0]])], Status.MALFORMED),                 # zero-word read
    ([header(tx=[[0, 0]])], Status.MALFORMED),                    # missing count
    ([header(tx=[[0, 0, limits.MAX_WORDS_PER_TX + 1]])], Status.TOO_LARGE),
    ([header(tx=[[5, 0x11, 1, 0, limits.MAX_WAIT_MS + 1]])], Status.TOO_LARGE),
    ([header(tx=[[0, 0, 1]] * (limits.MAX_TRANSACTIONS + 1))], Status.TOO_LARGE),
    ([b"\x80" + b"\0" * limits.MAX_HEADER_BYTES], Status.TOO_LARGE),
    ([header(tx=[], **{"k" * 2000: 1})], Status.TOO_LARGE),
])
def test_hostile_requests_raise_protocol_error(frames, status):
    with pytest.raises(ProtocolError) as e:
        decode_request(frames)
    assert e.value.status == status


def test_unknown_op_is_left_for_the_executor():
    p = decode_request([header(tx=[[42, 0, 1]])])
    assert p.tx[0].op == 42  # the firmware answers BAD_OP for this transaction


def test_random_bytes_never_crash_the_decoder():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        blob = rng.integers(0, 256, rng.integers(0, 64)).astype(np.uint8).tobytes()
        try:
            decode_request([blob])
        except ProtocolError:
            pass


def test_words_and_fixed_point():
    assert word_to_f32(f32_to_word(0.1)) == np.float32(0.1)
    assert words_to_f64(*f64_to_words(1 / 3)) == 1 / 3
    x = np.array([-1.5, 0.0, 0.75, 1.9999])
    fs = q31_full_scale_for(2.0)
    assert 2.0 < fs < 2.0 * (1 + 1e-6)  # the largest magnitude lands on the top code
    np.testing.assert_allclose(q31_to_float(float_to_q31(x, fs), fs), x, atol=fs / 2**31)
    assert float_to_q31([10.0], 1.0)[0] == 2**31 - 1  # saturates, never wraps
    for bits in (8, 12):  # the whole range of a coarse DAC, rounded to its grid
        fs = q31_full_scale_for(2.0, bits=bits)
        codes = float_to_q31(x, fs, bits)
        assert codes[-1] == 2**31 - 2 ** (32 - bits) and codes[0] < 0
        assert np.all(codes % 2 ** (32 - bits) == 0)  # the DAC keeps them unchanged
        step = fs / 2 ** (bits - 1)
        assert np.max(np.abs(q31_to_float(codes, fs) - x)) <= step / 2 + 1e-12  # nearest, not floor
    with pytest.raises(ValueError):
        q31_full_scale_for(1e9)


def test_register_map_is_consistent():
    assert REGMAP.MAGIC.address == 0 and REGMAP.CTRL.bit("COMMIT") == 1 << 3
    assert REGMAP.locate(REGMAP.DEVICE_TIME.address + 1) == (REGMAP.DEVICE_TIME, 1)
    assert REGMAP.locate(REGMAP.COUPLING.base + 5) == (REGMAP.COUPLING, 5)
    assert REGMAP.locate(0x0FFF_FFFF) is None
    for w in REGMAP.windows.values():
        if w.scale:
            assert REGMAP.registers[w.scale].format == "f32"
    with pytest.raises(KeyError, match="no register"):
        REGMAP["NOPE"]


def test_register_map_doc_is_not_stale():
    doc = Path(__file__).resolve().parents[2] / "docs" / "register-map.md"
    assert doc.read_text(encoding="utf-8") == render(), \
        "docs/register-map.md is stale: run `python -m protocol.docgen`"
