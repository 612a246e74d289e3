"""Demo records, generated locally and deterministically for the employees of ``aclaudit demo``.

Nothing is stored: a subject's records are derived from a hash of (kind, subject), so every run
and every replica serves the same data without a database or a download.
"""

import hashlib
import random
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from app.demo import build_directory  # the same seeded directory `aclaudit demo` loads

DATASET_PREFIX = "employee_activity"
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
APPS = ["ide", "browser", "chat", "mail", "terminal", "spreadsheet"]
CHANNELS = ["#team-standup", "1:1", "all-hands", "#incident", "customer call"]
LINES = [
    "can we push the release to thursday",
    "I am still blocked on the review",
    "the dashboard numbers look off again",
    "let me share my screen",
    "I will take that action item",
    "honestly I am exhausted this week",
    "who approved this change",
    "we should loop in legal before we ship",
]
NOTES = [
    "consistently meets expectations",
    "strong collaborator, needs focus on delivery dates",
    "activity below team median in weeks 2-3",
    "exceeds expectations on incident response",
    "flagged for low keyboard activity during core hours",
]


class Kind(StrEnum):
    keystrokes = "keystrokes"
    mouse_movements = "mouse_movements"
    transcripts = "transcripts"
    performance = "performance"

    @property
    def dataset(self) -> str:
        return f"{DATASET_PREFIX}.{self.value}"


@lru_cache(maxsize=1)
def employees() -> tuple[str, ...]:
    """Every demo employee (``user:...``), sorted."""
    return tuple(
        sorted({m for members in build_directory().values() for m in members if m[:5] == "user:"})
    )


def is_employee(subject: str) -> bool:
    return subject in _employee_set()


@lru_cache(maxsize=1)
def _employee_set() -> frozenset[str]:
    return frozenset(employees())


def _rng(kind: Kind, subject: str) -> random.Random:
    digest = hashlib.sha256(f"{kind.value}:{subject}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def records(kind: Kind, subject: str, count: int = 5) -> list[dict[str, Any]]:
    """``count`` records of ``kind`` for one employee."""
    rng = _rng(kind, subject)
    out: list[dict[str, Any]] = []
    for i in range(count):
        at = (START + timedelta(hours=i * 7, minutes=rng.randint(0, 59))).isoformat()
        if kind is Kind.keystrokes:
            out.append(
                {
                    "at": at,
                    "app": rng.choice(APPS),
                    "keys": rng.randint(40, 900),
                    "mean_interval_ms": round(rng.uniform(80, 400), 1),
                }
            )
        elif kind is Kind.mouse_movements:
            out.append(
                {
                    "at": at,
                    "path_px": rng.randint(500, 40_000),
                    "clicks": rng.randint(0, 300),
                    "idle_s": rng.randint(0, 1800),
                }
            )
        elif kind is Kind.transcripts:
            out.append({"at": at, "channel": rng.choice(CHANNELS), "text": rng.choice(LINES)})
        else:
            out.append(
                {
                    "period": f"2026-W{44 + i}",
                    "rating": rng.randint(1, 5),
                    "note": rng.choice(NOTES),
                }
            )
    return out
