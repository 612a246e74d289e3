"""`At`: the `at=` parameter of the read endpoints answered from the policy's history
(`app.policy.history`: explain, exposure, principal access; the directory's groups), and its
turn; `RebuildTurn`, the same turn for a request that always rebuilds (an access-log entry's
replay). Outside the domains, as its readers are on both sides of directory -> policy.

A request with `at=` (or a replay) may rebuild a whole policy state and its view (seconds at
scale), so like simulate a worker runs them one at a time, callers in turn
(`app.fairness.OneAtATime`, as `app.state.rebuilds`): a caller's second such request while its
first runs or waits, or one arriving while 8 callers wait, is 429. The turn is taken before the
request's session opens.
"""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request

from app.auth.dependencies import AuditReader
from app.db import utcnow
from app.errors import InvalidInput
from app.fairness import OneAtATime
from app.identifiers import UTCInstant

AtQuery = Annotated[
    UTCInstant | None,
    Query(
        description="Answer as of this RFC 3339 instant (with its offset), from the policy's "
        "history; not in the future (422). Before any history the policy was empty. "
        "Omitted: now. One such request at a time per worker and caller (429 past that)."
    ),
]


async def at_turn(
    request: Request, caller: AuditReader, at: AtQuery = None
) -> AsyncIterator[datetime | None]:
    """`at`, once it is this caller's turn (at once when `at` is not given)."""
    if at is None:
        yield None
        return
    if at > utcnow():
        raise InvalidInput("query.at", "is in the future: the policy then is not known yet")
    gate: OneAtATime = request.app.state.rebuilds
    async with gate.turn(caller.key):
        yield at


At = Annotated[datetime | None, Depends(at_turn, scope="function")]


async def rebuild_turn(request: Request, caller: AuditReader) -> AsyncIterator[None]:
    """This caller's turn to rebuild a past policy."""
    gate: OneAtATime = request.app.state.rebuilds
    async with gate.turn(caller.key):
        yield


RebuildTurn = Annotated[None, Depends(rebuild_turn, scope="function")]
