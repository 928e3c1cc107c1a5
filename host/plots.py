"""matplotlib for the figures, when it is installed (the `plots` extra); headless."""
from __future__ import annotations

import sys
from typing import Any


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend, or None (saying why) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'thermohil[plots]'): no figure", file=sys.stderr)
        return None
    return plt
