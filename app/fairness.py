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

from app.errors import Busy

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
