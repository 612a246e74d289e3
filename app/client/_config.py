"""Explicit defaults for timeouts, the overall deadline, the connection pool and retries."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_LIMITS",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "Limits",
    "Retries",
    "Timeout",
]

Timeout = httpx.Timeout
Limits = httpx.Limits

# A check is on the caller's read path: answer in milliseconds or deny. Connecting on loopback or
# in a cluster takes well under a second; aclaudit's p99 under load is a few hundred ms.
DEFAULT_TIMEOUT = Timeout(connect=1.0, read=2.0, write=2.0, pool=1.0)
# The timeouts above bound each socket operation, not a call: a server trickling a byte a second
# would never trip them. Every call (retries, request and the whole answer) ends within this many
# seconds; past it a check is a deny and a security-staff read raises TimeoutException.
DEFAULT_DEADLINE = 5.0
# One pool per client: keep connections alive so a check costs one round trip, not a handshake.
DEFAULT_LIMITS = Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)


@dataclass(frozen=True)
class Retries:
    """How often to try again, and only where it is safe.

    - security-staff GETs (idempotent): on transport errors and on 502/503/504;
    - checks (logged by aclaudit): only when the connection could not be made, i.e. the request
      was certainly not sent. A check that timed out after sending is *not* retried: aclaudit may
      have logged it, and a retry would log a second entry for one read. The caller gets a
      fail-closed deny instead.

    ``attempts`` counts every try, the first included (``Retries(attempts=1)`` never retries).
    Delays grow as ``backoff * 2**n`` up to ``max_backoff``, with jitter; a ``Retry-After`` header
    on a GET's 503 is honoured up to ``max_backoff``.
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts counts the first try: it must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must not be negative")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        base: float = min(self.backoff * 2.0**retry, self.max_backoff)
        return base * random.uniform(0.5, 1.0)  # jitter, so clients do not retry in lockstep


DEFAULT_RETRIES = Retries()
