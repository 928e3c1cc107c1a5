"""Sample FIFO: whole samples in, words out through a non-incrementing port."""
from __future__ import annotations

from collections import deque

import numpy as np


class SampleFifo:
    def __init__(self, depth_words: int) -> None:
        self.depth = depth_words
        self._chunks: deque[np.ndarray] = deque()
        self.level = 0
        self.overrun = False

    def push(self, sample: np.ndarray) -> bool:
        """Push one sample (int32 words); drop it whole and flag overrun if it does not fit."""
        if self.level + sample.size > self.depth:
            self.overrun = True
            return False
        self._chunks.append(np.asarray(sample, dtype=np.int32).copy())
        self.level += sample.size
        return True

    def push_block(self, samples: np.ndarray) -> int:
        """Push the rows of ``samples`` (k × words) as ``push`` would one by one: those that fit,
        in one piece; the rest dropped, flagging overrun. Returns how many were kept."""
        k, width = samples.shape
        fits = min(k, (self.depth - self.level) // max(width, 1))
        if fits:
            self._chunks.append(np.ascontiguousarray(samples[:fits], dtype=np.int32).reshape(-1))
            self.level += fits * width
        if fits < k:
            self.overrun = True
        return fits

    def pop(self, n: int) -> np.ndarray:
        """Pop n words, oldest first (the caller has checked n <= level)."""
        out = np.empty(n, dtype=np.int32)
        filled = 0
        while filled < n:
            head = self._chunks[0]
            take = min(n - filled, head.size)
            out[filled:filled + take] = head[:take]
            if take == head.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = head[take:]
            filled += take
        self.level -= n
        return out

    def clear(self) -> None:
        self._chunks.clear()
        self.level = 0
        self.overrun = False
