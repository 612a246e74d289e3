"""Read alerts by window: one ``read.out_of_audience`` alert per principal, dataset and window.

A principal reading a dataset from outside its audience raises an alert at the first read of
each window (``ACLAUDIT_READ_ALERT_WINDOW_SECONDS``, aligned to the Unix epoch so that every
worker and replica agrees on the windows); the window's row (`ReadAlertWindow`) counts every
read it stands for. A read that is news within a window (another action, another grant, or a
higher severity, e.g. after the dataset was classified restricted) raises its own alert and
opens its own window: what a poller already handled never hides it. The access-log group commit
applies this under the chain's lock, so two workers can never both open one window. Pure
functions; the store does the I/O.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app.alerts.service import AlertEvent

# (principal, dataset, action, grant id, severity): reads of one key share a window's alert
Key = tuple[str, str, str, int, str]


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def window_at(now: float, seconds: int) -> Window:
    """The window of `seconds` (> 0) that holds the instant `now` (Unix seconds)."""
    start = int(now // seconds) * seconds
    return Window(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + seconds, UTC))


def key_of(event: AlertEvent) -> Key:
    return (
        event.principal or "",
        event.dataset or "",
        event.action or "",
        event.grant_id or 0,
        event.severity,
    )


def principals_of(events: Iterable[AlertEvent]) -> list[str]:
    """The batch's readers, each once (the open windows are looked up by them)."""
    return sorted({key_of(e)[0] for e in events})


@dataclass(frozen=True)
class WindowedReads:
    raised: list[AlertEvent]  # the alerts to raise: each key's first read without an open window
    opened: list[Key]  # the key of each raised alert, in the same order
    reads: dict[Key, tuple[int, int]]  # every key's reads in this batch, and its last entry id


def split_reads(events: Sequence[AlertEvent], is_open: set[Key]) -> WindowedReads:
    """Which read alerts to raise, given the keys whose window already has its alert."""
    raised: list[AlertEvent] = []
    opened: list[Key] = []
    reads: dict[Key, tuple[int, int]] = {}
    for event in events:
        key = key_of(event)
        count, _last = reads.get(key, (0, 0))
        reads[key] = (count + 1, event.access_log_id or 0)
        if count == 0 and key not in is_open:
            raised.append(event)
            opened.append(key)
    return WindowedReads(raised, opened, reads)
