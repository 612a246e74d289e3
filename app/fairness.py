"""Long CPU work shares the event loop with the check path: it yields, and callers take turns.

A simulate of 1,000 proposals computes for seconds; on the event loop, in one piece, it held up
every check of its process for as long. `Pacer` pauses such work for twice as long as each
slice of it took, so checks get about two thirds of the worker's time and wait at most two
slices per step (a single turn of the loop between slices was not enough: a check takes a few
turns, and checks fell to 40% of their rate; pausing as long as the slice gave them half, which
the work's unpaced parts, its queries and diff, ate into); the work takes up to three times as
long.

`OneAtATime` runs such requests one at a time per process, in arrival order, with at most one
running or waiting request per caller: a caller looping them back to back cannot shut another
out (first come, first refused did: one loop got every other caller 429), since each new request
queues behind whoever is already waiting, so another caller waits at most one run per caller
ahead of it. A caller's second concurrent request, or one arriving while `MAX_WAITING` callers
already wait, is refused at once (429, Retry-After); a waiter gives up after `PATIENCE_SECONDS`
(429 too). Waiting holds nothing: it happens before the request's session or any lock is taken.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

from app.errors import Busy

# CPU time between two turns of the event loop: a check's own work is well under a
# millisecond, and it needs a few turns (request, log write, answer).
SLICE_SECONDS = 0.001
# Callers that may wait for a turn; beyond them a caller is refused at once.
MAX_WAITING = 8
# How long a request waits for its turn: under common client timeouts (60 s), and well past
# one run (a 1,000-proposal simulate takes up to ~15 s paced on a busy worker).
PATIENCE_SECONDS = 30.0


# How many times a slice of long work the event loop then gets to itself.
REST = 2


class Pacer:
    def __init__(self, slice_seconds: float = SLICE_SECONDS) -> None:
        self._slice = slice_seconds
        self._until = time.perf_counter() + slice_seconds

    async def pause(self) -> None:
        """Once this slice of work is used up, let the event loop run `REST` times as long."""
        if time.perf_counter() >= self._until:
            await asyncio.sleep(self._slice * REST)
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


class OneAtATime:
    """One request at a time per process for an endpoint, first come first served, one per
    caller (see the module)."""

    def __init__(
        self,
        what: str,
        *,
        max_waiting: int = MAX_WAITING,
        patience_seconds: float = PATIENCE_SECONDS,
    ) -> None:
        self._what = what
        self._max_waiting = max_waiting
        self._patience = patience_seconds
        self._turn = asyncio.Lock()  # hands over to its oldest waiter: first come, first served
        self._callers: set[Hashable] = set()  # running or waiting
        self._waiting = 0  # callers waiting who count against `max_waiting`

    @property
    def busy(self) -> bool:
        """A request is running or waiting."""
        return bool(self._callers)

    @property
    def callers(self) -> frozenset[Hashable]:
        """Callers with a request running or waiting."""
        return frozenset(self._callers)

    def has(self, caller: Hashable) -> bool:
        """`caller` has a request running or waiting."""
        return caller in self._callers

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def turn(self, caller: Hashable, *, is_patient: bool = False) -> AsyncIterator[None]:
        """Run when it is `caller`'s turn. A patient caller (the sweeper) waits as long as it
        takes and is not counted against the waiting bound."""
        if caller in self._callers:
            raise Busy(
                f"your previous {self._what} is still running or waiting in this worker: "
                "send the next one after its answer"
            )
        if not is_patient and self._callers and self._waiting >= self._max_waiting:
            raise Busy(f"{self._waiting} callers are waiting for a {self._what} in this worker")
        self._callers.add(caller)
        counted = not is_patient  # while waiting: a free turn is taken without a pause
        self._waiting += counted
        try:
            try:
                if is_patient:
                    await self._turn.acquire()
                else:
                    async with asyncio.timeout(self._patience):
                        await self._turn.acquire()
            except TimeoutError:
                raise Busy(
                    f"no turn for this {self._what} within {self._patience:g} s: the worker "
                    "is busy with other callers' requests"
                ) from None
            finally:
                self._waiting -= counted
            try:
                yield
            finally:
                self._turn.release()
        finally:
            self._callers.discard(caller)
