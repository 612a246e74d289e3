"""The policy as it was: rebuilt from the history for the `at=` of the read endpoints.

An instant in the future is refused (422 naming `query.at`): the policy then is not known yet.
An instant before any history answers with the policy as it was then: empty (nothing
registered, granted or joined), so a dataset is unknown at it. A migrated database's history
starts with its policy as it was at the migration, valid from each row's own instant (see
migration 0012); what was revoked or removed before that is not known.
"""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.policy.history import repository, timeline
from app.policy.state import PolicyRows, PolicyState


async def state_at(session: AsyncSession, at: datetime) -> tuple[PolicyState, PolicyRows]:
    """The policy state at instant `at`, and its rows (to build views from)."""
    if at > datetime.now(UTC):
        raise InvalidInput("query.at", "is in the future: the policy then is not known yet")
    history = await repository.load(session, at=at)
    return timeline.state_as_of(history, at=at)
