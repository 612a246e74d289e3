"""Each person's `/v1/me` requests are limited per worker, so no employee can flood the admin
trail (every answer to an authorised caller is a chained write, and on SQLite each write holds
the lock that checks need).

A token bucket per person: `ACLAUDIT_PERSON_REQUESTS_PER_MINUTE` a minute, in bursts of as many.
Past it the request is refused (429 with `Retry-After`) before the caller is authorised, so the
refusal is counted and paced like any other, not trailed one by one. The buckets of the least
recently seen people are forgotten past `MAX_PEOPLE` (a forgotten person starts full again).
"""

import math
import time
from collections import OrderedDict

from app.errors import AppError

MAX_PEOPLE = 100_000


class TooManyRequests(AppError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PersonRate:
    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0  # tokens a second
        self._burst = float(per_minute)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, person: str) -> None:
        """Count one request of `person`; raise `TooManyRequests` past their rate."""
        now = time.monotonic()
        tokens, at = self._buckets.pop(person, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1:
            self._buckets[person] = (tokens, now)
            wait = math.ceil((1 - tokens) / self._rate)
            raise TooManyRequests(
                f"{person} sent more than {self._burst:.0f} requests a minute to /v1/me; "
                f"retry in {wait} s",
                retry_after=wait,
            )
        self._buckets[person] = (tokens - 1, now)
        while len(self._buckets) > MAX_PEOPLE:
            self._buckets.popitem(last=False)
