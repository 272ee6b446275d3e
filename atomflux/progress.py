"""Progress on long work: a tqdm bar in a terminal, a periodic one-line status otherwise.

A tqdm bar is invisible when stderr is not a terminal (output redirected to
a file, a batch job, a pipe), which left a 17-minute MD run silent.  There
:class:`StatusLines` prints one line when the work starts, one every
``ATOMFLUX_STATUS_SECONDS`` seconds (default 60) with the count, the rate and
the time left, and one when it ends, so that a log file shows what is going
on without filling up with bar redraws.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

#: environment variable: seconds between status lines when stderr is not a terminal
STATUS_SECONDS_ENV = "ATOMFLUX_STATUS_SECONDS"
DEFAULT_STATUS_SECONDS = 60.0


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True,
             stream: TextIO | None = None) -> Any:
    """A progress reporter with tqdm's ``update``/``set_postfix``/``close`` (and ``with`` support).

    Parameters
    ----------
    total
        Units of work in all (steps, epochs, molecules ...).
    desc
        What is being done, e.g. ``"NVE production"``.
    unit
        Name of one unit of work.
    initial
        Units already done (a resumed run).
    enabled
        ``False``: report nothing.
    stream
        Where to report (default: ``sys.stderr``).

    Returns
    -------
    A tqdm bar when ``stream`` is a terminal, a :class:`StatusLines` otherwise.
    """
    stream = stream or sys.stderr
    if not enabled:
        return tqdm(total=total, initial=initial, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True)
    seconds = float(os.environ.get(STATUS_SECONDS_ENV, DEFAULT_STATUS_SECONDS))
    return StatusLines(total, desc, unit=unit, initial=initial, interval=seconds, stream=stream)


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class StatusLines:
    """One status line at the start, every ``interval`` seconds, and at the end.

    ``NVE production: 12000/50000 steps (24 %), 35.2 steps/s, 18 min 00 s left``
    """

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, interval: float = 60.0,
                 stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.interval = int(total), desc, unit, float(interval)
        self.initial = self.n = int(initial)
        self.stream = stream or sys.stderr
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False
        resumed = f", resuming at {self.n}" if self.n else ""
        self._print(f"{self.desc}: {self.total} {self.unit}s{resumed}; a status line every "
                    f"{format_duration(self.interval)} ({STATUS_SECONDS_ENV} sets it)")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _status(self) -> str:
        elapsed = time.monotonic() - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        percent = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        left = f", {format_duration((self.total - self.n) / rate)} left" if rate > 0 and self.n < self.total else ""
        return (f"{self.desc}: {self.n}/{self.total} {self.unit}s{percent}, {rate:.3g} {self.unit}s/s{left}"
                f"{self.postfix}")

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._print(self._status())

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "; " + ", ".join(f"{k} {v}" for k, v in values.items()) if values else ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = format_duration(time.monotonic() - self.start)
        if self.n >= self.total:
            self._print(f"{self.desc}: done, {self.n} {self.unit}s in {elapsed}{self.postfix}")
        else:
            seconds = time.monotonic() - self.start
            rate = f" ({(self.n - self.initial) / seconds:.3g} {self.unit}s/s)" if seconds > 0 else ""
            self._print(f"{self.desc}: stopped at {self.n}/{self.total} {self.unit}s after {elapsed}{rate}")

    def __enter__(self) -> "StatusLines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
