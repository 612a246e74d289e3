"""Long CPU work shares the event loop with the check path: it yields, and runs one at a time.

A simulate of 1,000 proposals computes for seconds; on the event loop, in one piece, it held up
every check of its process for as long. `Pacer` pauses such work for as long as each slice of it
took, so checks get at least half the worker's time and wait at most a slice per step (a
single turn of the loop between slices was not enough: a check takes a few turns, and checks
fell to 40% of their rate); the work takes up to twice as long. `OneAtATime` refuses a second
such request in a process (429, Retry-After) instead of letting callers stack them.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import AppError

# CPU time between two turns of the event loop: a check's own work is well under a
# millisecond, and it needs a few turns (request, log write, answer).
SLICE_SECONDS = 0.001


class Pacer:
    def __init__(self, slice_seconds: float = SLICE_SECONDS) -> None:
        self._slice = slice_seconds
        self._until = time.perf_counter() + slice_seconds

    async def pause(self) -> None:
        """Once this slice of work is used up, let the event loop run for as long."""
        if time.perf_counter() >= self._until:
            await asyncio.sleep(self._slice)
            self._until = time.perf_counter() + self._slice


class StepPacer:
    """For async work in steps whose CPU is spent partly off the event loop (verify: SQL in the
    driver's thread, hashing in another; on one core they take it from checks all the same):
    after each step, rest `rest` times as long as the step took, so the work uses at most
    1 / (1 + rest) of the worker's time (while it works, checks get less than their share)."""

    def __init__(self, rest: float = 2.0) -> None:
        self._rest = rest
        self._started = time.perf_counter()

    async def pause(self) -> None:
        await asyncio.sleep((time.perf_counter() - self._started) * self._rest)
        self._started = time.perf_counter()


class Busy(AppError):
    status = 429
    slug = "busy"
    title = "Too many requests"


class OneAtATime:
    """One request at a time per process for an endpoint; others are refused at once."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._running = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._running:
            raise Busy(f"another {self._what} is running in this worker; retry shortly")
        self._running = True
        try:
            yield
        finally:
            self._running = False
