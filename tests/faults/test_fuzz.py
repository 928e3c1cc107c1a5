"""Random and malformed packets against the real daemon: every packet gets exactly one reply,
nothing a non-owner sends changes a register or a memory window, the owner's random packets
never crash or hang it, and its memory stays flat."""
from __future__ import annotations

import os
import zlib

import msgpack
import numpy as np
import pytest

import host
from host.thermo_device import rd
from protocol.codec import PROTOCOL_VERSION
from protocol import REGMAP, Op, Status, Transaction
from protocol.codec import decode_reply, encode_request
from support import RawClient, rss_mb, start_daemon

CELLS = 16
IN_FLIGHT = 64
ADDRESSES = sorted({r.address for r in REGMAP.registers.values()} |
                   {w.base for w in REGMAP.windows.values()})


@pytest.fixture(scope="module")
def daemon():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", str(CELLS), "--max-rank", "4")
    yield d
    d.stop()


def dump(endpoint: str) -> dict:
    """Every RW register, and a CRC of every writable memory window, read without a token."""
    c = RawClient(endpoint)
    regs = [r for r in REGMAP.registers.values() if r.access == "RW"]
    wins = [w for w in REGMAP.windows.values() if w.access == "RW" and not w.fifo]
    depth = {"N_CELLS": CELLS, "MAX_RANK": 4}
    tx = [rd(r.name) for r in regs]
    for w in wins:
        n = 1
        for term in str(w.depth).split("*"):
            n *= int(term) if term.strip().isdigit() else depth[term.strip()]
        tx.append(Transaction(Op.READ, w.base, (n,)))
    reply = c.transact(tx)
    c.close()
    assert reply.status == Status.OK, reply.message
    out = {r.name: reply.data[i].tolist() for i, r in enumerate(regs)}
    out.update({w.name: zlib.crc32(reply.data[len(regs) + i].tobytes()) for i, w in enumerate(wins)})
    return out


def random_tx(rng: np.random.Generator) -> tuple[list, list]:
    """One well-formed random transaction: its wire list and its payload frames."""
    op = int(rng.integers(0, 8))  # 6 and 7 are not ops
    addr = int(rng.choice(ADDRESSES)) + int(rng.choice([0, 0, 0, 1, rng.integers(0, 1 << 20)]))
    addr &= 0xFFFFFFFF
    n = int(rng.choice([1, 1, 2, 3, 17, CELLS, rng.integers(1, 1 << 27)]))
    if op in (Op.READ, Op.READ_NI):
        return [op, addr, n], []
    if op in (Op.WRITE, Op.WRITE_NI):
        n = min(n, 4096)
        return [op, addr, n], [rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)]
    if op == Op.RMW:
        return [op, addr, int(rng.integers(0, 1 << 32)), int(rng.integers(0, 1 << 32))], []
    if op == Op.WAIT:
        return [op, addr, int(rng.integers(0, 1 << 32)), int(rng.integers(0, 1 << 32)),
                int(rng.choice([0, 1, 50, 600_000, 600_001]))], []
    return [op, addr, *rng.integers(0, 1 << 32, int(rng.integers(0, 4))).tolist()], []


def hostile_packet(rng: np.random.Generator, seq: int, cid: bytes, token: int) -> list:
    kind = rng.random()
    if kind < 0.15:  # garbage bytes
        return [bytes(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8))
                for _ in range(int(rng.integers(1, 4)))]
    if kind < 0.3:  # msgpack, but not our header
        v = list(PROTOCOL_VERSION)
        shapes = [{"seq": seq, "v": v}, {"seq": seq, "v": v, "cid": cid, "tx": 5},
                  {"seq": seq, "v": [v[0] + 7, 0], "cid": cid, "tx": []}, [1, 2, 3], "tx",
                  {"seq": -1}, {"seq": seq, "v": v, "cid": cid, "tx": [[0]] * 600},
                  {b"seq": 1}, {"seq": seq, "v": v, "cid": cid[:5], "tx": []}]
        junk = shapes[int(rng.integers(0, len(shapes)))]
        return [msgpack.packb(junk, use_bin_type=True)]
    txs, frames = [], []
    for _ in range(int(rng.integers(1, 9))):
        wire, payload = random_tx(rng)
        txs.append(wire)
        frames += payload
    if rng.random() < 0.1 and frames:  # a payload of the wrong size
        frames[0] = frames[0][:-1]
    header = {"v": list(PROTOCOL_VERSION), "seq": seq, "cid": cid, "own": token, "tx": txs}
    return [msgpack.packb(header, use_bin_type=True), *frames]


def flood(endpoint: str, packets, replies_expected: int) -> list:
    c = RawClient(endpoint)
    got: list = []
    try:
        batch = 0
        for frames in packets:
            c.send_frames(frames)
            batch += 1
            if batch == IN_FLIGHT:
                got += [c.recv(10.0) for _ in range(batch)]
                batch = 0
        got += [c.recv(10.0) for _ in range(batch)]
        extra = c.recv(0.2)
    finally:
        c.close()
    assert extra is None, "a packet got more than one reply"
    assert len(got) == replies_expected and all(r is not None for r in got), "a packet got no reply"
    return got


def _non_owner_fuzz(daemon, n: int, seed: int) -> None:
    with host.connect(daemon.endpoint) as owner:  # an owner exists, and stays silent meanwhile
        owner.write("LEASE_MS", 600_000)
        owner.load_coupling(np.eye(CELLS) * 1.5)
        owner.load_bias(np.linspace(-1, 1, CELLS))
        owner.commit()
        before = dump(daemon.endpoint)
        rss0 = rss_mb(daemon.proc.pid)
        rng = np.random.default_rng(seed)
        cid = os.urandom(16)
        tokens = [0, 0, 1, 0xDEADBEEF, owner.token ^ 1]
        packets = (hostile_packet(rng, seq, cid, int(rng.choice(tokens))) for seq in range(1, n + 1))
        replies = flood(daemon.endpoint, packets, n)
        after = dump(daemon.endpoint)
        assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert owner.read("OWNER") == owner.token
        statuses = [decode_reply(r).status for r in replies]
        assert all(s != Status.INTERNAL for s in statuses)
        assert rss_mb(daemon.proc.pid) - rss0 < 100
        owner.run(5.0)  # still a working device
        np.testing.assert_allclose(owner.mean(), np.linspace(-1, 1, CELLS) / 1.5, atol=0.1)


def test_non_owner_fuzz_changes_nothing(daemon):
    _non_owner_fuzz(daemon, 10_000, seed=1)


@pytest.mark.slow
def test_non_owner_fuzz_long(daemon):
    _non_owner_fuzz(daemon, 100_000, seed=2)


def test_owner_random_packets_never_crash_or_hang(daemon):
    """The owner may send anything too: each packet is answered, the daemon survives."""
    with host.connect(daemon.endpoint) as owner:
        owner.write("LEASE_MS", 600_000)
        rng = np.random.default_rng(3)
        cid = os.urandom(16)
        rss0 = rss_mb(daemon.proc.pid)

        def packets():
            for seq in range(1, 2001):
                wire, frames = random_tx(rng)
                if wire[0] == Op.WAIT:
                    wire[-1] = min(wire[-1], 50)  # the owner may park: keep it short
                if wire[1] in (REGMAP.OWNER.address, REGMAP.LEASE_MS.address):
                    wire[1] = REGMAP.SCRATCH.address  # stay the owner through the campaign
                header = {"v": list(PROTOCOL_VERSION), "seq": seq, "cid": cid, "own": owner.token,
                          "tx": [wire]}
                yield [msgpack.packb(header, use_bin_type=True), *frames]

        replies = flood(daemon.endpoint, packets(), 2000)
        statuses = {decode_reply(r).status for r in replies}
        assert Status.INTERNAL not in statuses and Status.OK in statuses
        assert rss_mb(daemon.proc.pid) - rss0 < 150
        owner.write("SCRATCH", 5)
        assert owner.read("SCRATCH") == 5
