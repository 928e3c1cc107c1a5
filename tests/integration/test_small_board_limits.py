"""A small board: a chip whose firmware advertises far lower resource limits than the emulator's
defaults (a profile's [limits]). The host reads them and keeps inside: uploads and read-backs
are split where the split cannot change their meaning, a request that cannot be split is refused
before anything is sent, and the conformance suite passes on such a device (spawn://, a real
daemon)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import host
from protocol.limits import Limits

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(max_transactions=32, max_packet_words=1024, max_reply_words=512,
             max_open_reply_words=256, max_frame_bytes=2048, reply_cache_depth=1,
             max_register_ni_words=16, max_parked=2, max_parked_per_client=1, fifo_depth=256,
             max_wait_ms=20_000)


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small-board.toml"
    path.write_text('name = "small-board"\ndescription = "an ideal chip behind a small firmware"\n'
                    "[limits]\n" + "".join(f"{k} = {v}\n" for k, v in SMALL.items()))
    return path


@pytest.fixture(scope="module")
def dev(small_profile: Path):
    with host.connect(f"local://?cells=64&max_rank=16&profile={small_profile}") as d:
        yield d


def test_the_host_reads_the_advertised_limits(dev):
    assert dev.limits == Limits(**SMALL)
    assert dev.info()["limits"]["max_transactions"] == 32


@pytest.mark.spec("HOST-3")
def test_an_upload_larger_than_a_packet_is_split_and_arrives_whole(dev):
    rng = np.random.default_rng(0)
    J = rng.standard_normal((16, 64))            # 1 024 words: more than a frame (512 words)
    before = dev.stats.packets
    dev.load_lowrank(J, np.eye(16), np.full(64, 0.5))
    assert dev.stats.packets - before >= 2       # the shadow bank took it in pieces
    back = dev.read("LOWRANK_J", J.size)         # and the read-back comes in pieces too
    np.testing.assert_allclose(back, J.reshape(-1), atol=np.abs(J).max() * 2**-30)


@pytest.mark.spec("HOST-3")
def test_a_run_with_read_back_larger_than_a_reply(dev):
    """A solve's uploads are split before its COMMIT and its read-back after its WAIT: the mean
    is the exact solution within the noise."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    A = (q * np.geomspace(1, 3, 64)) @ q.T      # dense: 4 096 words, four packets' worth
    b = rng.uniform(-1, 1, 64)
    dev.configure(temperature=1e-6)
    before = dev.stats.packets
    m = dev.solve_step(coupling=A, bias=b, t=60.0)
    assert dev.stats.packets - before >= 5
    exact = np.linalg.solve(A, b)
    assert np.linalg.norm(m - exact) / np.linalg.norm(exact) < 0.02


def test_samples_in_chunks_of_the_fifo(dev):
    dev.load_lowrank(np.zeros((1, 64)), np.zeros((1, 1)), np.ones(64))
    dev.commit()
    x = dev.samples(10, period=0.5)              # 256-word FIFO: 4 samples of 64 cells per run
    assert x.shape == (10, 64) and np.all(np.isfinite(x))


@pytest.mark.spec("HOST-3")
def test_a_request_that_cannot_be_split_is_refused_before_sending(dev):
    before = dev.stats.packets
    with pytest.raises(ValueError, match=r"33 transactions .* accepts 32 \(MAX_TRANSACTIONS\)"):
        with dev.batch():
            for i in range(33):                  # 33 effects in a row: no split point
                dev.write("SCRATCH", i)
    assert dev.stats.packets == before


def test_conformance_suite_on_a_small_board(small_profile: Path):
    url = f"spawn://?cells=16&profile={small_profile}"
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/conformance", "--device-url", url,
                        "-q", "-p", "no:cacheprovider"], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, f"conformance suite failed on a small board:\n{tail}"
    assert re.search(r"(\d+) passed", r.stdout), tail
