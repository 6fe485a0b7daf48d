"""Clocks: where the rate limiter, the circuit breakers and the caches read the time.

A :class:`Clock` has the two readings :mod:`time` has:

* ``monotonic()`` — seconds that only go forward, for durations and deadlines (a breaker's
  cooldown, a cache entry's expiry, a stale concurrency slot);
* ``time()`` — seconds since the epoch, for what is counted in calendar seconds (the limiter's
  one-second buckets).

:data:`SYSTEM_CLOCK` reads the machine's clocks and is the default of every constructor that
takes a clock. Its readings *are* :func:`time.monotonic` and :func:`time.time`, so a part that
keeps the bound reading (``self._now = clock.monotonic``) pays nothing over calling
:mod:`time` itself on the request path. :class:`ManualClock` stands still until it is
advanced: tests move time forward instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The machine's clocks."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when :meth:`advance` is called, both readings together.

    ``start`` is the epoch time it reads at first (a whole second, so one-second buckets
    start on a boundary); its monotonic reading starts at 0.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._monotonic = 0.0
        self._start = start

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._start + self._monotonic

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (a clock never goes back)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._monotonic += seconds
