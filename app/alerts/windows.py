"""Read alerts by window: one ``read.out_of_audience`` alert per (principal, dataset, window).

A principal reading a dataset from outside its audience raises an alert at the first read of
each window (``ACLAUDIT_READ_ALERT_WINDOW_SECONDS``, aligned to the Unix epoch so that every
worker and replica agrees on the windows); the window's row (`ReadAlertWindow`) counts every
read it stands for. The access-log group commit applies this under the chain's lock, so two
workers can never both open one window. Pure functions; the store does the I/O.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app.alerts.service import AlertEvent

Pair = tuple[str | None, str | None]  # (principal, dataset)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def window_at(now: float, seconds: int) -> Window:
    """The window of `seconds` (> 0) that holds the instant `now` (Unix seconds)."""
    start = int(now // seconds) * seconds
    return Window(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + seconds, UTC))


@dataclass(frozen=True)
class WindowedReads:
    raised: list[AlertEvent]  # the alerts to raise: each pair's first read without an open window
    opened: list[Pair]  # the pair of each raised alert, in the same order
    reads: dict[Pair, tuple[int, int]]  # every pair's reads in this batch, and its last entry id


def pairs_of(events: Iterable[AlertEvent]) -> list[Pair]:
    """The batch's (principal, dataset) pairs, in first-read order."""
    return list(dict.fromkeys((e.principal, e.dataset) for e in events))


def split_reads(events: Sequence[AlertEvent], is_open: set[Pair]) -> WindowedReads:
    """Which read alerts to raise, given the pairs whose window already has its alert."""
    raised: list[AlertEvent] = []
    opened: list[Pair] = []
    reads: dict[Pair, tuple[int, int]] = {}
    for event in events:
        pair = (event.principal, event.dataset)
        count, _last = reads.get(pair, (0, 0))
        reads[pair] = (count + 1, event.access_log_id or 0)
        if count == 0 and pair not in is_open:
            raised.append(event)
            opened.append(pair)
    return WindowedReads(raised, opened, reads)
