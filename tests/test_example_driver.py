"""The example third-party driver (examples/thermohil_uart), used the way a vendor's would be.

The package is installed into a temporary directory (never into the venv), so ``uart://`` is
known only through its ``thermohil.drivers`` entry point, found by importlib.metadata on
PYTHONPATH. Its board stand-in (the bridge) runs as a real subprocess on a loopback port, and
the conformance suite runs against it through the driver: the proof docs/drivers.md asks of
any driver.
"""
from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import zlib
import subprocess
import sys
import time
import tomllib
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Iterator

import msgpack
import pytest

from protocol.codec import PROTOCOL_VERSION
from protocol import limits
from protocol.codec import decode_reply, encode_request
from protocol.regmap import REGMAP
from protocol.status import Status
from protocol.stream import INTER_BYTE_TIMEOUT_S
from host.thermo_device import rd

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "thermohil_uart"
READY_TIMEOUT_S = 120.0  # the first start of a fresh checkout compiles the Numba kernels
U32 = struct.Struct("<I")


# ------------------------------------------------------------------------------ install
def _can_build_wheel_offline() -> bool:
    """pip --no-build-isolation needs setuptools plus bdist_wheel (in setuptools >= 70.1, or
    the separate ``wheel`` package); a fresh Python 3.11 venv has setuptools 65 and no wheel."""
    try:
        st = version("setuptools")
    except PackageNotFoundError:
        return False
    if find_spec("wheel") is not None:
        return True
    major, minor = (int(x) for x in re.findall(r"\d+", st)[:2])
    return (major, minor) >= (70, 1)


def _install_by_hand(src: Path, target: Path) -> None:
    """What an installer does with a pure-Python wheel: copy the packages and write the
    .dist-info, here generated from the package's own pyproject.toml (name, version,
    dependencies, entry points), so the pyproject stays the one source of truth."""
    meta = tomllib.loads((src / "pyproject.toml").read_text())
    project = meta["project"]
    files: list[Path] = []
    for pkg in meta["tool"]["setuptools"]["packages"]:
        shutil.copytree(src / pkg.replace(".", "/"), target / pkg.replace(".", "/"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        files += [p for p in (target / pkg.replace(".", "/")).rglob("*") if p.is_file()]
    dist = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
             f"Summary: {project.get('description', '')}"]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    (dist / "METADATA").write_text("\n".join(lines) + "\n")
    eps = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
                  for group, items in project.get("entry-points", {}).items())
    (dist / "entry_points.txt").write_text(eps)
    (dist / "INSTALLER").write_text("thermohil-tests\n")
    files += [dist / "METADATA", dist / "entry_points.txt", dist / "INSTALLER", dist / "RECORD"]
    (dist / "RECORD").write_text("".join(f"{p.relative_to(target)},,\n" for p in files))


def install_example(target: Path) -> str:
    """Install examples/thermohil_uart into ``target``; returns how. Builds from a copy, so
    the build leaves no build/ or *.egg-info in the source tree."""
    src = target.parent / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    if not _can_build_wheel_offline():
        _install_by_hand(src, target)
        return "dist-info written from pyproject.toml"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--no-index", "--no-cache-dir", "--disable-pip-version-check", "-q",
                        "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"pip install of the example failed:\n{r.stdout}\n{r.stderr}"
    return "pip"


@pytest.fixture(scope="module")
def uart_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("uart") / "site"
    target.mkdir()
    how = install_example(target)
    print(f"thermohil-uart installed into {target} ({how})")
    return target


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ------------------------------------------------------------------------------ the bridge
@pytest.fixture(scope="module")
def bridge(uart_site: Path) -> Iterator[int]:
    """The board stand-in as a real subprocess; yields its port. Stopped with SIGTERM, which
    must give exit code 0."""
    log = uart_site.parent / "bridge.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "thermohil_uart.bridge", "--port", "0",
                                 "--cells", "16", "--profile", "ideal", "--log-level", "INFO"],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=uart_site.parent, env=_env(uart_site))
    try:
        port = _await_ready(proc, log)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0, f"bridge did not exit cleanly on SIGTERM ({code}):\n{log.read_text()[-3000:]}"


def _await_ready(proc: subprocess.Popen, log: Path) -> int:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.2):
            line = proc.stdout.readline()
            m = re.fullmatch(r"thermohil-uart: listening 127\.0\.0\.1:(\d+)\n", line)
            if m:
                return int(m.group(1))
            if not line:
                break
    raise RuntimeError(f"bridge did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")


# ------------------------------------------------------------------------------ tests
_DIRECT = r"""
import importlib.abc, json, socket, sys, time

class NoEmulator(importlib.abc.MetaPathFinder):
    # A board user has no emulator installed: uart:// must not need it.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("device", "firmware_sim", "numba"):
            raise ModuleNotFoundError(f"No module named {name!r} (emulator absent)")
        return None

sys.meta_path.insert(0, NoEmulator())
import host
from host.drivers import available_schemes
port = int(sys.argv[1])
out = {"entry": available_schemes().get("uart")}
with host.connect(f"uart://127.0.0.1:{port}?timeout=5", claim=False) as dev:
    out["magic"] = dev.read("MAGIC")
    out["n_cells"] = dev.info()["n_cells"]
    out["driver"] = type(dev.driver).__module__ + "." + type(dev.driver).__name__
    dev.driver.sock.shutdown(socket.SHUT_RDWR)  # the cable is pulled under the driver
    out["magic_after_break"] = dev.read("MAGIC")
    out["retries"] = dev.stats.retries
    dev.claim()
    dev.configure(substep=1e-5)  # a run that takes well over 0.2 s of wall time
    t0 = time.monotonic()
    dev.run(20.0)
    out["long_run_s"] = time.monotonic() - t0
    out["run_end"] = dev.read("STATUS") >> 16 & 7
    dev.configure(substep=0.0)  # back to the automatic substep for the tests that follow
free = socket.create_server(("127.0.0.1", 0))
port_nobody = free.getsockname()[1]
free.close()  # nothing listens there: an unplugged board
t0 = time.monotonic()
try:
    host.connect(f"uart://127.0.0.1:{port_nobody}?timeout=0.3&retries=1")
    out["unplugged"] = "no error"
except host.DeviceUnplugged as e:
    out["unplugged"], out["unplugged_s"] = str(e), time.monotonic() - t0
silent = socket.create_server(("127.0.0.1", 0))  # accepts the link, never answers
t0 = time.monotonic()
try:
    host.connect(f"uart://127.0.0.1:{silent.getsockname()[1]}?timeout=0.3&retries=1")
    out["silent"] = "no error"
except host.DeviceTimeout as e:
    out["silent"], out["silent_s"] = str(e), time.monotonic() - t0
    out["silent_type"] = type(e).__name__
out["emulator_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("device", "firmware_sim"))
print(json.dumps(out))
"""


def test_connect_through_the_entry_point(uart_site: Path, bridge: int) -> None:
    """host.connect finds uart:// by its entry point, with the emulator packages unimportable;
    a pulled cable is survived by reconnecting; a run far longer than one poll slice completes;
    an unplugged board is DeviceUnplugged and a silent one DeviceTimeout."""
    r = subprocess.run([sys.executable, "-c", _DIRECT, str(bridge)], capture_output=True,
                       text=True, timeout=60, cwd=uart_site.parent, env=_env(uart_site))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["entry"] == "thermohil_uart.driver:UartDriver"
    assert out["driver"] == "thermohil_uart.driver.UartDriver"
    assert out["magic"] == REGMAP.meta["magic"] and out["n_cells"] == 16
    assert out["magic_after_break"] == REGMAP.meta["magic"] and out["retries"] == 1
    assert out["long_run_s"] > 0.5 and out["run_end"] == 1  # DONE, through parked WAITs
    assert "not there" in out["unplugged"] and 0.5 <= out["unplugged_s"] < 5.0
    assert "silent for 0.3 s" in out["silent"] and "2 attempts" in out["silent"]
    assert out["silent_type"] == "DeviceTimeout"
    assert 0.6 <= out["silent_s"] < 5.0
    assert out["emulator_loaded"] == []  # host + a vendor driver work without device/firmware_sim


def spec_frame(frames: list[bytes], kind: int = 0x01) -> bytes:
    """A stream frame written from the spec's byte table, independently of protocol.stream."""
    body = U32.pack(len(frames)) + b"".join(U32.pack(len(f)) + f for f in frames)
    head = b"\xaaUTH" + bytes([kind, 0, 0, 0]) + U32.pack(len(body))
    return head + U32.pack(zlib.crc32(head)) + body + U32.pack(zlib.crc32(body))


def read_frame(sock: socket.socket) -> tuple[int, list[bytes]]:
    """(KIND, frames) of the next stream frame from the bridge, checking both CRCs."""
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "bridge closed the link mid-frame"
            buf += chunk
        return buf
    head = exact(12)
    assert head[:4] == b"\xaaUTH" and U32.unpack(exact(4))[0] == zlib.crc32(head)
    body = exact(U32.unpack(head[8:12])[0])
    assert U32.unpack(exact(4))[0] == zlib.crc32(body)
    if not body:
        return head[4], []  # a NAK has no body
    frames, pos = [], 4
    for _ in range(U32.unpack(body[:4])[0]):
        n = U32.unpack(body[pos:pos + 4])[0]
        frames.append(body[pos + 4:pos + 4 + n])
        pos += 4 + n
    return head[4], frames


def magic_request(seq: int) -> tuple[list, bytes]:
    tx = [rd("MAGIC")]
    frames = encode_request(seq, b"\x01" * limits.CLIENT_ID_BYTES, 0, tx)
    return tx, spec_frame([bytes(memoryview(f)) for f in frames])


def assert_magic(sock: socket.socket, seq: int) -> None:
    tx, frame = magic_request(seq)
    sock.sendall(frame)
    kind, frames = read_frame(sock)
    reply = decode_reply(frames, tx)
    assert kind == 0x01 and reply.seq == seq and reply.status == Status.OK
    assert int(reply.data[0][0]) == REGMAP.meta["magic"]


def test_bridge_naks_a_damaged_request_and_keeps_the_link(bridge: int) -> None:
    with socket.create_connection(("127.0.0.1", bridge), timeout=10) as s:
        _, frame = magic_request(1)
        bad = bytearray(frame)
        bad[30] ^= 0x01  # inside the body: BCRC fails
        s.sendall(bytes(bad))
        kind, frames = read_frame(s)
        assert kind == 0x15 and frames == []  # NAK: "re-send it"
        assert_magic(s, 1)


def test_bridge_skips_noise_and_a_frame_cut_off_midway(bridge: int) -> None:
    """Line noise between frames is skipped; a sender that stopped mid-frame (a half-written
    request) costs that frame only: after the inter-byte timeout the next one is read."""
    with socket.create_connection(("127.0.0.1", bridge), timeout=10) as s:
        s.sendall(b"\x00\xff noise \xaaU" + magic_request(2)[1][:20])
        time.sleep(INTER_BYTE_TIMEOUT_S + 0.3)
        assert_magic(s, 3)


def test_bridge_answers_oversize_and_malformed_frames_and_keeps_the_link(bridge: int) -> None:
    with socket.create_connection(("127.0.0.1", bridge), timeout=10) as s:
        head = b"\xaaUTH\x01\0\0\0" + U32.pack(0xFFFFFFF0)  # 4 GiB: refused unread
        s.sendall(head + U32.pack(zlib.crc32(head)))
        reply = decode_reply(read_frame(s)[1])
        assert reply.status == Status.TOO_LARGE and reply.seq is None
        body = U32.pack(3) + U32.pack(1) + b"x"  # announces 3 frames, holds 1
        head = b"\xaaUTH\x01\0\0\0" + U32.pack(len(body))
        s.sendall(head + U32.pack(zlib.crc32(head)) + body + U32.pack(zlib.crc32(body)))
        reply = decode_reply(read_frame(s)[1])
        assert reply.status == Status.MALFORMED and reply.seq is None
        s.sendall(spec_frame([b"\xc1"]))  # 0xc1 is never valid msgpack
        assert decode_reply(read_frame(s)[1]).status == Status.MALFORMED
        s.sendall(spec_frame([msgpack.packb({"v": list(PROTOCOL_VERSION), "seq": 5, "tx": "nope"})]))
        assert decode_reply(read_frame(s)[1]).status == Status.MALFORMED
        assert_magic(s, 6)


def test_conformance_suite_over_uart(uart_site: Path, bridge: int) -> None:
    url = f"uart://127.0.0.1:{bridge}?timeout=5"
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/conformance", "--device-url", url,
                        "-q", "-p", "no:cacheprovider"], capture_output=True, text=True,
                       timeout=300, cwd=REPO, env=_env(uart_site))
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, f"conformance suite failed over {url}:\n{tail}"
    passed = re.search(r"(\d+) passed", r.stdout)
    assert passed and int(passed.group(1)) > 0, tail
