"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable


def timed(fn: Callable[[], object], min_seconds: float = 2.0) -> float:
    """Mean wall time (s) of ``fn()`` after one warm-up call, over ≥ 3 calls and ≥ ``min_seconds``."""
    fn()
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < min_seconds:
        fn()
        count += 1
    return (time.perf_counter() - start) / count
