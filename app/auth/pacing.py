"""Refusals are slowed past a per-worker rate, so a refused client cannot take checks' time.

A client looping on requests that are refused before their caller is authorised (no token, a
junk or revoked one, a low-privilege token's 403s, unknown paths) gets its first
`FREE_REFUSALS_PER_SECOND` refusals a second (a burst of as many) at once, and the rest each
after `REFUSAL_DELAY` seconds: a few a second per connection. Only the refusal waits, after
everything it took was given back (no lock, no database connection); authorised requests are
never paced.
"""

import asyncio
import time

FREE_REFUSALS_PER_SECOND = 20
REFUSAL_DELAY = 0.25


class RefusalPacing:
    def __init__(self, per_second: int = FREE_REFUSALS_PER_SECOND) -> None:
        self._rate = float(per_second)
        self._allowance = self._rate
        self._at = time.monotonic()

    def _is_free(self) -> bool:
        now = time.monotonic()
        self._allowance = min(self._rate, self._allowance + (now - self._at) * self._rate)
        self._at = now
        if self._allowance >= 1:
            self._allowance -= 1
            return True
        return False

    async def pace(self) -> None:
        """Before a refusal is sent: at once within the rate, after `REFUSAL_DELAY` past it."""
        if not self._is_free():
            await asyncio.sleep(REFUSAL_DELAY)
