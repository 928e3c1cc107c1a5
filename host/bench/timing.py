"""The one timing rule of the suite: the best (smallest) mean time per call over a few repeats,
each repeat long enough for the clock — the least disturbed estimate on a shared machine."""
from __future__ import annotations

import time
from typing import Callable


def per_call(fn: Callable[[], object], *, calls: int = 0, repeats: int = 5, min_s: float = 0.05) -> float:
    """Seconds per call of ``fn``: ``calls`` calls per repeat (0: enough for ``min_s``)."""
    fn()                                            # warm up (compile, caches, first allocation)
    if calls <= 0:
        calls, t0 = 1, time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        calls = max(1, int(min_s / one))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"
