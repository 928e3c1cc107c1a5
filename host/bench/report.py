"""Markdown tables of the suite's results, one per part, ratios first."""
from __future__ import annotations

from host.bench.timing import fmt_time


def kernels_table(rows: list[dict]) -> str:
    out = ["| case | ours per substep | floor | ours / floor | numpy loop / ours |", "|---|---|---|---|---|"]
    for r in rows:
        peer = f"{r['peer_over_ours']:.1f}×" if "peer_over_ours" in r else "—"
        extra = f" ({r['gflops']:.1f} GFLOP/s)" if "gflops" in r else ""
        out.append(f"| {r['case']} | {fmt_time(r['ours_s'])}{extra} | {fmt_time(r['floor_s'])} | "
                   f"{r['ours_over_floor']:.2f} | {peer} |")
    return "\n".join(out)


def transport_table(rows: list[dict]) -> str:
    out = ["| case | bytes | ours | raw pyzmq | ours / raw |", "|---|---|---|---|---|"]
    for r in rows:
        rate = f" ({r['ours_MBps']:.0f} MB/s)" if "ours_MBps" in r else ""
        raw_rate = f" ({r['raw_MBps']:.0f} MB/s)" if "raw_MBps" in r else ""
        out.append(f"| {r['case']} | {r['bytes']} | {fmt_time(r['ours_s'])}{rate} | "
                   f"{fmt_time(r['raw_s'])}{raw_rate} | {r['ours_over_raw']:.1f} |")
    return "\n".join(out)


def tngd_table(rows: list[dict]) -> str:
    out = ["| case | iteration | digital | protocol | emulation | Euler–Maruyama iteration | "
           "exact / EM | daemon peak memory |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = (f"{fmt_time(r['reference_iteration_s'])} | {r['ratio']:.2f}"
               if "reference_iteration_s" in r else "— | —")
        out.append(f"| {r['case']} | {fmt_time(r['iteration_s'])} | {r['digital_frac']:.0%} "
                   f"({fmt_time(r['digital_s'])}) | {r['protocol_frac']:.0%} ({fmt_time(r['protocol_s'])}) | "
                   f"{r['emulation_frac']:.0%} ({fmt_time(r['emulation_s'])}) | {ref} | "
                   f"{r.get('daemon_peak_rss_mib', float('nan')):.0f} MiB |")
    return "\n".join(out)


def sampling_table(rows: list[dict]) -> str:
    out = ["| case | ours | reference | ours / reference (time: lower is better; points/s: "
           "higher) | Euler–Maruyama |", "|---|---|---|---|---|"]
    for r in rows:
        show = (lambda v: f"{v:.0f} points/s") if r["unit"] == "points/s" else fmt_time
        em = fmt_time(r["em"]) if r.get("em") == r.get("em") and "em" in r else "—"
        out.append(f"| {r['case']} | {show(r['ours'])} | {show(r['reference'])} | "
                   f"{r['ratio']:.3g} | {em} |")
    return "\n".join(out)


TABLES = {"kernels": kernels_table, "transport": transport_table, "tngd": tngd_table,
          "sampling": sampling_table}
