"""``thermohil bench``: the performance suite. Every figure is a ratio to a
reference measured in the same run on the same machine — never an absolute time, never a timed
test. Parts (``--only``):

- ``kernels``: the Numba Euler–Maruyama kernels against their floors (BLAS + numpy's normal
  draws) and against a plain numpy loop (``host/bench/kernels.py``);
- ``transport``: a register read round trip and a 4 MiB upload through a real daemon, over tcp
  and ipc, against raw pyzmq DEALER/ROUTER of the same sizes (``host/bench/transport.py``);
- ``tngd``: one TNGD iteration on the digits MLP split into digital / protocol / emulation
  (``host/bench/tngd_split.py``);
- ``sampling``: trajectory points per second and the COMMIT's cost, with the substep's rate
  from the Lanczos estimate against the Gershgorin / exact bounds it replaced
  (``host/bench/sampling.py``).

Results print as markdown tables (for docs/performance.md) and, with ``--json FILE``, as data.
"""
from __future__ import annotations

PARTS = ("kernels", "transport", "tngd", "sampling")
