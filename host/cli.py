"""The ``thermohil`` command: serve the emulator, inspect a device, peek and poke registers,
calibrate it, run the demonstration solve, train a network (``thermohil train``), draw a run's
figures (``thermohil plot``) and measure performance (``thermohil bench``)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import NoReturn, Sequence

DEFAULT_DEVICE = "spawn://"


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive(text: str) -> int:
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _nonnegative(text: str) -> int:
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _device_options(p: argparse.ArgumentParser) -> None:
    """--device, --timeout, --retries: how a device-using command reaches its device."""
    p.add_argument("--device", default=DEFAULT_DEVICE, help="device URL (default: spawn a private emulator)")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="seconds to wait for each reply attempt (default: the driver's)")
    p.add_argument("--retries", type=_nonnegative, default=None, metavar="N",
                   help="resends after a silent attempt (default: the driver's)")


def _connect(args: argparse.Namespace, **kwargs: object):
    import host
    return host.connect(args.device, timeout=args.timeout, retries=args.retries, **kwargs)


class ConciseParser(argparse.ArgumentParser):
    """Bad arguments: one error line and where to look, not the whole usage block (which for
    `thermohil train` is some fifteen lines of options)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = ConciseParser(prog="thermohil", description=(__doc__ or "").replace("``", "`"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ConciseParser)

    s = sub.add_parser("serve", help="run the emulated device daemon")
    s.add_argument("--endpoint", default="tcp://127.0.0.1:5555",
                   help="request endpoint (tcp://HOST:PORT, PORT 0 = any free; or ipc://PATH)")
    s.add_argument("--events", default=None, help="event (PUB) endpoint; default: next port / PATH.events")
    s.add_argument("--cells", type=_positive, default=None,
                   help="unit cells (default: the profile's size, or 64)")
    s.add_argument("--max-rank", type=_int, default=None)
    s.add_argument("--profile", default="ideal",
                   help="hardware profile: ideal, realistic, tngd-asic, spu-8, or a profile file "
                        "(*.toml; see docs/hardware.md)")
    s.add_argument("--seed", type=_int, default=0, help="noise seed")
    s.add_argument("--serial", type=_int, default=None, help="device serial (fixes the mismatch pattern)")
    s.add_argument("--curve-keys", default=None, metavar="DIR",
                   help="CURVE key directory (server.key_secret, authorized/): required off loopback")
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without CURVE")
    s.add_argument("--parent-pid", type=_int, default=None, help=argparse.SUPPRESS)
    s.add_argument("--log-level", default="INFO")

    i = sub.add_parser("info", help="identity and capabilities of a device")
    _device_options(i)
    i.add_argument("--json", action="store_true")

    r = sub.add_parser("regs", help="peek and poke registers")
    _device_options(r)
    rs = r.add_subparsers(dest="action", required=True, metavar="ACTION")
    rs.add_parser("dump", help="every register with its decoded fields")
    rr = rs.add_parser("read", help="read a register by name or address")
    rr.add_argument("name")
    rw = rs.add_parser("write", help="write a register (claims the device for the write)")
    rw.add_argument("name")
    rw.add_argument("value")
    rs.add_parser("map", help="print the register map (no device needed)")

    c = sub.add_parser("calibrate", help="calibrate a device (offset nulling, DIAG gain trims) and "
                                         "save the trims under its serial")
    _device_options(c)
    c.add_argument("--check", action="store_true",
                   help="only the drift check: are the trims on the device still valid?")
    c.add_argument("--load", action="store_true",
                   help="load the trims saved for this device's serial and check their offsets "
                        "(exit 3 if they fail; run without --load to calibrate anew)")
    c.add_argument("--no-save", dest="save", action="store_false", help="do not save the trims")
    c.add_argument("--json", action="store_true")

    d = sub.add_parser("demo", help="solve a random SPD system on the device next to scipy")
    _device_options(d)
    d.add_argument("--size", type=_positive, default=16)
    d.add_argument("--cond", type=_positive_float, default=10.0)
    d.add_argument("--time", type=_positive_float, default=400.0, help="averaging time (τ0)")
    d.add_argument("--temperature", type=float, default=1e-3)
    d.add_argument("--seed", type=_int, default=0)

    from host.train_cli import add_train_parser  # the training command lives in its own module
    add_train_parser(sub)
    from host.bench.cli import add_bench_parser
    add_bench_parser(sub)
    from host.plot_cli import add_plot_parser
    add_plot_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        if words[:1] == ["train"] and {"-h", "--help"} & set(words) and "--algo" in words[:-1]:
            from host.optim import ALGORITHMS
            from host.train_cli import algorithm_help
            name = words[words.index("--algo") + 1]
            if name in ALGORITHMS:        # `train --algo NAME --help`: that algorithm's options
                print(algorithm_help(name))
                return 0
        args = build_parser().parse_args(argv)
        from host.bench.cli import cmd_bench
        from host.plot_cli import cmd_plot
        from host.train_cli import cmd_train
        return {"serve": cmd_serve, "info": cmd_info, "regs": cmd_regs, "demo": cmd_demo,
                "calibrate": cmd_calibrate, "train": cmd_train,
                "bench": cmd_bench, "plot": cmd_plot}[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `thermohil regs map | head`: the reader left, nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the broken pipe
    except Exception as e:  # a clear one-line message, not a traceback, for expected failures
        from host.errors import DeviceError
        if isinstance(e, (DeviceError, ValueError, KeyError, OSError, RuntimeError)):
            text = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) quotes
            print(f"thermohil: error: {text}", file=sys.stderr)
            return 1
        raise


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from device.analog.profiles import get_profile
    from device.daemon import serve
    get_profile(args.profile)  # unknown profile: clear error before binding anything
    return serve(args.endpoint, cells=args.cells, profile=args.profile, seed=args.seed,
                 serial=args.serial, events=args.events, curve_dir=args.curve_keys,
                 insecure=args.insecure, parent_pid=args.parent_pid, max_rank=args.max_rank)


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args, claim=False) as dev:
        info = dev.info()
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>13}: {v}")
    return 0


def _float_text(reg, value: float) -> str:
    """The shortest text that reads back as the same f32 / f64 (0.01, not 0.009999999776)."""
    import numpy as np
    return str(np.float32(value)) if reg.format == "f32" else repr(float(value))


def _format(reg, value) -> str:
    text = _float_text(reg, value) if isinstance(value, float) else f"{value} ({value:#010x})"
    if reg.fields and isinstance(value, int):
        text += "  " + " ".join(f"{f.name}={f.get(value)}" for f in reg.fields)
    return text + (f" {reg.unit}" if reg.unit else "")


def cmd_regs(args: argparse.Namespace) -> int:
    from protocol.regmap import REGMAP
    if args.action == "map":
        for reg in sorted(REGMAP.registers.values(), key=lambda r: r.address):
            print(f"{reg.address:#010x}  {reg.name:<15} {reg.access:<3} {reg.format:<4} {reg.doc}")
        for w in sorted(REGMAP.windows.values(), key=lambda w: w.base):
            print(f"{w.base:#010x}  {w.name:<15} {w.access:<3} {w.format:<4} [{w.depth}] {w.doc}")
        return 0
    import host
    target = _target(args.name) if args.action in ("read", "write") else None
    reg = REGMAP.registers.get(target) if isinstance(target, str) else None
    if args.action == "write":  # a bad value is refused before the device is touched
        value = _parse_value(target, args.value)
    with _connect(args, claim=args.action == "write") as dev:
        if args.action == "dump":
            for reg in sorted(REGMAP.registers.values(), key=lambda r: r.address):
                try:
                    value = dev.read(reg.name)
                except host.DeviceError as e:  # e.g. the emulator block on real hardware
                    print(f"{reg.address:#010x}  {reg.name:<15} <{e.status.name}>")
                    continue
                print(f"{reg.address:#010x}  {reg.name:<15} {_format(reg, value)}")
            return 0
        if args.action == "read":
            value = dev.read(target)
            print(_format(reg, value) if reg else value)
            return 0
        dev.write(target, value)
        print(_format(reg, dev.read(target)) if reg else dev.read(target))
        return 0


def _parse_value(target: str | int, text: str) -> int | float:
    """The value of ``regs write`` in the target's format, or a message saying what it needs."""
    from protocol.regmap import REGMAP
    fmt = REGMAP[target].format if isinstance(target, str) else "u32"
    what = f"{target} is {fmt}" if isinstance(target, str) else f"address {target:#x} takes a u32 word"
    if fmt in ("f32", "f64") or fmt.startswith("q31"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{what}: not a number: {text!r}") from None
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{what}: not an integer: {text!r}") from None


def _target(name: str) -> str | int:
    """A register or window name, or an address; an address of a named register becomes its
    name, so it is read and written decoded."""
    from protocol.regmap import REGMAP
    if name[:1].isdigit():
        try:
            addr = int(name, 0)
        except ValueError:
            raise ValueError(f"not a register name or address: {name!r}") from None
        by_addr = {r.address: r.name for r in REGMAP.registers.values()}
        return by_addr.get(addr, addr)
    upper = name.upper()
    if upper not in REGMAP.registers and upper not in REGMAP.windows:
        raise KeyError(f"no register named {name!r} (see `thermohil regs map`)")
    return upper


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from host import calibration
    if args.check and args.load:
        raise ValueError("--check and --load exclude each other (--load checks the saved trims)")
    out: dict = {}
    with _connect(args) as dev:
        serial = dev.info()["serial"]
        if not dev.calibration_capable:
            raise ValueError(f"device {args.device} (serial {serial:#x}) has no calibration routine "
                             "(CAPS.CALIBRATION is 0)")
        if args.check:
            report, action = dev.check_calibration(), "drift check"
        elif args.load:
            report, action = calibration.load(dev), "loaded the saved trims"
            if report is None:
                raise ValueError(f"no calibration saved for serial {serial:#x} in "
                                 f"{calibration.directory()} (run `thermohil calibrate` first)")
        else:
            report, action = dev.calibrate(), "calibrated"
        if args.save and not (args.check or args.load) and report.valid:
            out["saved"] = str(calibration.save(dev, report))
    out.update(action=action, serial=serial, **asdict(report))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"thermohil calibrate: {action} (serial {serial:#x}): {report.describe()}")
        if "saved" in out:
            print(f"trims saved to {out['saved']}")
    return 0 if report.valid else 3


def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import scipy.linalg

    import host
    rng = np.random.default_rng(args.seed)
    n = args.size
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.geomspace(1.0, args.cond, n)
    A = (q * eig) @ q.T
    b = rng.uniform(-1, 1, n)
    exact = scipy.linalg.solve(A, b, assume_a="pos")
    print(f"thermohil demo: {n}x{n} SPD system, condition number {args.cond:g}, device {args.device}")
    with _connect(args) as dev:
        if n > dev.n_cells:
            raise ValueError(f"--size {n} exceeds the device's {dev.n_cells} cells")
        dev.configure(mode="overdamped", temperature=args.temperature)
        burn = 10.0 / eig[0]  # ten relaxation times of the slowest mode
        m = dev.solve_step(coupling=A, bias=b, t=args.time, burn_in=burn)
        info = dev.info()
    err = np.linalg.norm(m - exact) / np.linalg.norm(exact)
    se = np.sqrt(2 * args.temperature * np.diag(np.linalg.inv(A @ A)) / args.time)
    print(f"{'cell':>4} {'device mean':>12} {'scipy solve':>12} {'±1 s.e.':>9}")
    for i in range(n):
        print(f"{i:>4} {m[i]:>12.5f} {exact[i]:>12.5f} {se[i]:>9.5f}")
    print(f"relative error {err:.3%} after {args.time:g} τ0 of averaging "
          f"(device time {info['device_time']:.0f} τ0, substep {info.get('emulator', {}).get('dt', '?')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
