from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.accesslog.integrity import Integrity
from app.accesslog.range_verifier import RangeVerified
from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.db import SessionDep
from app.errors import Busy, Forbidden, InvalidInput, Unauthenticated, problem_responses
from app.fairness import OneAtATime
from app.identifiers import ResourcePattern, UTCInstant
from app.pagination import DEFAULT_LIMIT, Cursor, Limit
from app.reports import service
from app.reports.schemas import ExposureReport

router = APIRouter(prefix="/v1/reports", tags=["reports"], route_class=AuthorizedFirst)


async def report_turn(request: Request, caller: AuditReader) -> AsyncIterator[None]:
    """A report rebuilds the policy at `since` and replays the history (seconds at scale): it
    takes its turn with the `at=` requests (before its session opens)."""
    gate: OneAtATime = request.app.state.rebuilds
    async with gate.turn(caller.key):
        yield


@router.get(
    "/exposure",
    response_model=ExposureReport,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Busy),
)
async def exposure_report(
    request: Request,
    caller: AuditReader,
    _: Annotated[None, Depends(report_turn, scope="function")],
    session: SessionDep,
    dataset: Annotated[
        ResourcePattern, Query(description="A dataset id or a pattern: `prefix.*` or `*`.")
    ],
    since: Annotated[
        UTCInstant | None,
        Query(description="RFC 3339; default: where the policy's history starts."),
    ] = None,
    until: Annotated[
        UTCInstant | None, Query(description="RFC 3339, not in the future; default: now.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ExposureReport:
    """The incident report for every dataset matching `dataset` over [since, until]: the
    windows in which it was readable beyond its intended audience (with the changes that
    opened and closed each and who made them), who could read it (a page of principals: pass
    `next_cursor` with the same `since` and `until`), who did (per principal, from the access
    log), and the log's integrity (the chain verified from the checkpoint before the period
    through the one covering it, linked to the head). One at a
    time per worker and caller, with the `at=` requests (429 past that)."""
    integrity: Integrity = request.app.state.integrity

    async def verify(first: int | None, last: int) -> RangeVerified:
        # the period's entries recomputed every time (never resumed past an earlier verify:
        # an entry of the period edited since then would be stated intact), and no others
        return await integrity.verify_range(caller=caller.key, first=first, last=last)

    return await service.exposure_report(
        session,
        pattern=dataset,
        since=since,
        until=until,
        verify=verify,
        cursor=cursor,
        limit=limit,
    )
