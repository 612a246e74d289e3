"""Replaying an entry: its request decided again by the policy as it was at its
`policy_version`, rebuilt from the policy's history (`app.policy.history`, the same rebuild and
cache as `at=`), at the entry's own instant (grants' expiries are decided at it, as the check
decided them: `app.checks.group_commit` decides at the instant it records).

A version the history does not cover (taken before migration 0012 began it) cannot be
replayed: 409 `before-history`, not a guess from a later policy.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.accesslog import service as accesslog_service
from app.accesslog.schemas import Decided, ReplayRead
from app.errors import Conflict
from app.policy.history import service as history_service
from app.policy.snapshot import CHECKS


class BeforeHistory(Conflict):
    """The entry's policy version is older than the policy's history."""

    slug = "before-history"
    title = "Before the policy's history"


async def replay(session: AsyncSession, entry_id: int) -> ReplayRead:
    """Entry `entry_id` as recorded and as replayed (404 unknown, 410 archived, 409 before
    the history)."""
    entry = await accesslog_service.find_entry(session, entry_id)
    version = entry.policy_version
    if not await policy_version.is_recorded(session, version):
        raise BeforeHistory(
            f"access-log entry {entry_id} was decided with policy version {version}, which the "
            "policy's history does not cover (it begins at the migration that introduced it): "
            "it cannot be replayed"
        )
    snapshot = await history_service.view_of(session, version, CHECKS)
    outcome = snapshot.decide(
        entry.principal, entry.dataset, entry.action, entry.purpose, entry.at.timestamp()
    )
    recorded = Decided(
        decision=entry.decision, reason=entry.reason, out_of_audience=entry.out_of_audience
    )
    replayed = Decided(
        decision=outcome.decision,
        reason=outcome.reason(),
        out_of_audience=outcome.out_of_audience,
    )
    return ReplayRead(
        id=entry.id,
        at=entry.at,
        policy_version=version,
        recorded=recorded,
        replayed=replayed,
        matches=recorded == replayed,
    )
