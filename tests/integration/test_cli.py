"""The thermohil command as a user runs it (real subprocesses, real daemon)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import host

from support import REPO, start_daemon


@pytest.fixture(scope="module")
def daemon():
    """A daemon of its own: the session's shared one is owned by the conformance suite."""
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "32")
    yield d
    assert d.stop() == 0


def thermohil(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    ([], "required"),
    (["bogus"], "invalid choice"),
    (["serve", "--cells", "0"], "must be >= 1"),
    (["serve", "--cells", "many"], "not an integer"),
    (["demo", "--time", "-3"], "must be a finite number > 0"),
    (["regs"], "required"),
    (["regs", "--device", "local://", "frob"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_message(args, needle):
    p = thermohil(*args)
    assert p.returncode == 2 and needle in p.stderr


@pytest.mark.parametrize("command", ["", "serve", "info", "regs", "calibrate", "demo", "train",
                                     "bench"])
def test_every_help_page_renders(command):
    """argparse %-formats help text: one stray '%' in a help string crashes --help."""
    p = thermohil(*filter(None, [command]), "--help", timeout=60)
    assert p.returncode == 0 and "usage:" in p.stdout, p.stderr[-2000:]


def test_unknown_profile_and_unknown_scheme_and_register():
    p = thermohil("serve", "--profile", "nonsense", "--endpoint", "tcp://127.0.0.1:0")
    assert p.returncode == 1 and "ideal" in p.stderr and "realistic" in p.stderr
    p = thermohil("info", "--device", "warp://nowhere")
    assert p.returncode == 1 and "no driver for URL scheme 'warp'" in p.stderr
    p = thermohil("regs", "--device", "local://?cells=2", "read", "NOT_A_REG")
    assert p.returncode == 1 and "no register named" in p.stderr


def test_regs_map_needs_no_device():
    p = thermohil("regs", "map")
    assert p.returncode == 0 and "COUPLING" in p.stdout and "0x10000000" in p.stdout


def test_regs_map_into_a_closed_pipe_exits_quietly():
    """`thermohil regs map | head`: the reader is gone; no BrokenPipeError traceback."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "host.cli", "regs", "map"], stdout=w,
                           stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 141 and p.stderr == ""


def test_bad_values_and_names_give_one_clear_line():
    p = thermohil("regs", "--device", "local://?cells=2", "write", "TEMPERATURE", "abc")
    assert p.returncode == 1 and p.stderr == "thermohil: error: TEMPERATURE is f32: not a number: 'abc'\n"
    p = thermohil("regs", "--device", "local://?cells=2", "write", "SCRATCH", "12x")
    assert p.returncode == 1 and "SCRATCH is u32: not an integer: '12x'" in p.stderr
    p = thermohil("regs", "--device", "local://?cells=2", "read", "NOT_A_REG")
    assert p.stderr.startswith("thermohil: error: no register named 'NOT_A_REG'")  # no extra quotes
    p = thermohil("regs", "--device", "local://?cells=2", "read", "0x1z")
    assert p.returncode == 1 and "not a register name or address: '0x1z'" in p.stderr


def test_serve_on_a_port_in_use_is_one_line(daemon):
    p = thermohil("serve", "--endpoint", daemon.endpoint, "--events", "tcp://127.0.0.1:0")
    assert p.returncode == 1
    assert p.stderr == f"thermohil: error: cannot bind {daemon.endpoint}: Address already in use\n"


def test_timeout_and_retries_options():
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    p = thermohil("info", "--device", f"tcp://127.0.0.1:{port}", "--timeout", "0.25", "--retries", "1")
    assert p.returncode == 1 and "after 0.5 s (2 attempts × 0.25 s)" in p.stderr
    assert time.monotonic() - t0 < 20
    p = thermohil("regs", "--device", "ipc:///nonexistent/thermohil", "--timeout", "60", "read", "STATUS")
    assert p.returncode == 1 and "socket file /nonexistent/thermohil does not exist" in p.stderr
    p = thermohil("demo", "--retries", "-1")
    assert p.returncode == 2 and "must be >= 0" in p.stderr


def test_info_and_peek_poke_over_tcp(daemon):
    p = thermohil("info", "--device", daemon.endpoint, "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["n_cells"] == 32 and info["emulator"]["profile"] == "ideal"
    p = thermohil("regs", "--device", daemon.endpoint, "write", "SCRATCH", "0x2a")
    assert p.returncode == 0, p.stderr
    p = thermohil("regs", "--device", daemon.endpoint, "read", "scratch")
    assert p.returncode == 0 and p.stdout.startswith("42 (0x0000002a)")
    p = thermohil("regs", "--device", daemon.endpoint, "--timeout", "5", "--retries", "0", "read", "0x11")
    assert p.returncode == 0 and "RUNNING=0" in p.stdout  # an address of a register is decoded
    p = thermohil("regs", "--device", daemon.endpoint, "write", "0x24", "0.01")  # TEMPERATURE
    assert p.returncode == 0 and p.stdout == "0.01 V^2/tau0\n", p.stdout
    p = thermohil("regs", "--device", daemon.endpoint, "write", "TEMPERATURE", "-1")
    assert p.returncode == 1 and "RANGE" in p.stderr
    with host.connect(daemon.endpoint) as other:  # while another host owns it, a poke is refused
        p = thermohil("regs", "--device", daemon.endpoint, "write", "SCRATCH", "1")
        assert p.returncode == 1 and "owned by another host" in p.stderr
        assert other.read("SCRATCH") == 42
    p = thermohil("regs", "--device", daemon.endpoint, "dump")
    assert p.returncode == 0 and "STATUS" in p.stdout and "RUNNING=0" in p.stdout


def test_demo_on_the_embedded_default():
    p = thermohil("demo", "--size", "8", "--time", "100")
    assert p.returncode == 0, p.stderr
    assert "scipy solve" in p.stdout and "relative error" in p.stdout
    err = float(p.stdout.split("relative error ")[1].split("%")[0])
    assert err < 2.0
