"""Where the host may split a request to fit a small device, and where it must not."""
from __future__ import annotations

import numpy as np
import pytest

from host.thermo_device import rd, wr
from host.packets import plan
from protocol.codec import Transaction
from protocol.limits import Limits
from protocol.ops import Op
from protocol.regmap import REGMAP

SMALL = Limits(max_transactions=32, max_packet_words=256, max_reply_words=256,
               max_open_reply_words=256, max_frame_bytes=1024, max_register_ni_words=16)
RUNNING = REGMAP.STATUS.bit("RUNNING")
IDLE_WAIT = Transaction(Op.WAIT, REGMAP.STATUS.address, (RUNNING, 0, 1000))


def test_an_upload_is_split_into_the_shadow_bank_then_the_effects_follow():
    tx = [wr("LOWRANK_J", np.arange(600)), wr("CTRL", [REGMAP.CTRL.bit("COMMIT")])]
    p = plan(tx, SMALL, owner=True)
    assert len(p.packets) == 3 and p.packets[-1][-1].addr == REGMAP.CTRL.address
    assert sum(t.args[0] for pk in p.packets for t in pk if t.op == Op.WRITE) == 601


def test_a_read_back_after_the_run_ended_is_split_and_merged_back():
    tx = [IDLE_WAIT, rd("RUN_COUNT"), rd("STATE", 600)]
    p = plan(tx, SMALL, owner=True)
    assert len(p.packets) == 4 and p.pieces == [1, 1, 3]  # WAIT and provenance, then 3 pieces
    data = [None, np.array([7], np.uint32)] + [np.full(n, k, np.uint32) for k, n in
                                                ((1, 256), (2, 256), (3, 88))]
    merged = p.merge(data)
    assert merged[1][0] == 7 and merged[2].size == 600 and merged[2][-1] == 3


def test_a_snapshot_is_never_split():
    """STATE read without a WAIT for the end of the run: the device may be running, so the
    pieces would come from different moments — refused instead."""
    with pytest.raises(ValueError, match="cannot be split .* accepts 256"):
        plan([rd("RUN_COUNT"), rd("STATE", 600)], SMALL, owner=True)


def test_a_non_owner_read_back_is_never_split():
    with pytest.raises(ValueError, match="cannot be split .* accepts 256"):
        plan([IDLE_WAIT, rd("STATE", 600)], SMALL, owner=False)


def test_the_header_frame_is_counted_against_the_frame_limit():
    """32 transactions fit MAX_TRANSACTIONS, but their header would not fit a 1 KiB frame."""
    many = [Transaction(Op.WAIT, REGMAP.SCRATCH.address, (1, 1, 10)) for _ in range(40)]
    with pytest.raises(ValueError):
        plan(many, SMALL, owner=True)
    p = plan([wr("LOWRANK_J", np.arange(16)) for _ in range(32)], SMALL, owner=True)
    assert all(64 + 26 * len(pk) <= 1024 for pk in p.packets) and len(p.packets) >= 2
