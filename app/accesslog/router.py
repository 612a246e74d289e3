from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app import chain
from app.accesslog import replay as replays
from app.accesslog import service as accesslog_service
from app.accesslog.integrity import Integrity
from app.accesslog.schemas import (
    AccessLogEntryRead,
    AccessLogPage,
    CheckpointPage,
    ReplayRead,
    VerifyResult,
)
from app.as_of import RebuildTurn
from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.db import SessionDep
from app.errors import (
    Busy,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    Unauthenticated,
    problem_responses,
)
from app.identifiers import DatasetId, PrincipalId, UTCInstant
from app.pagination import DEFAULT_LIMIT, IdCursor, Limit

router = APIRouter(prefix="/v1/access-log", tags=["access log"], route_class=AuthorizedFirst)
ERRORS = problem_responses(Unauthenticated, Forbidden)
Decision = Annotated[str | None, Query(pattern="^(allow|deny)$")]
Hash = Annotated[str | None, Query(pattern=chain.HASH_PATTERN, description="Anchor hash.")]


@router.get(
    "",
    response_model=AccessLogPage,
    responses=problem_responses(Unauthenticated, Forbidden, Gone),
)
async def list_entries(
    session: SessionDep,
    _: AuditReader,
    principal: Annotated[PrincipalId | None, Query()] = None,
    dataset: Annotated[DatasetId | None, Query()] = None,
    decision: Decision = None,
    out_of_audience: bool | None = None,
    data_subject: Annotated[PrincipalId | None, Query()] = None,
    since: Annotated[UTCInstant | None, Query()] = None,
    until: Annotated[UTCInstant | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> AccessLogPage:
    """Entries newest first; every filter narrows the page. A cursor into the archived
    prefix is answered 410 naming the segment; the last page says where the archive ends."""
    items, next_cursor, archived_through = await accesslog_service.list_entries(
        session,
        principal=principal,
        dataset=dataset,
        decision=decision,
        out_of_audience=out_of_audience,
        data_subject=data_subject,
        since=since,
        until=until,
        before_id=cursor,
        limit=limit,
    )
    return AccessLogPage(items=items, next_cursor=next_cursor, archived_through=archived_through)


@router.get(
    "/verify",
    response_model=VerifyResult,
    responses=problem_responses(Unauthenticated, Forbidden, Busy),
)
async def verify(
    request: Request,
    caller: AuditReader,
    anchor_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    anchor_hash: Hash = None,
    full: Annotated[
        bool,
        Query(
            description="Read every row again. By default a verify trusts what an earlier "
            "verify in this worker already checked (up to its newest checkpoint) and reads "
            "only what was appended since; the sweeper and `aclaudit log verify` run in full."
        ),
    ] = False,
) -> VerifyResult:
    """Recompute the access log's, the admin trail's and the alert feed's hash chains; check
    their signed heads, the checkpoints and an optional anchor. One at a time per worker, callers
    in turn: a verify waits for those of the callers ahead of it (up to 30 s); a caller's second
    verify while its first runs or waits, or one arriving while 8 callers wait, is refused 429
    with Retry-After. A failure is alerted once per worker (and again hourly while it
    persists), however often it is verified or by whom."""
    if (anchor_id is None) != (anchor_hash is None):
        raise InvalidInput("query.anchor_hash", "anchor_id and anchor_hash go together")
    anchor = (anchor_id, anchor_hash) if anchor_id is not None and anchor_hash else None
    integrity: Integrity = request.app.state.integrity
    return await integrity.verify(caller=caller.key, anchor=anchor, full=full)


@router.get("/checkpoints", response_model=CheckpointPage, responses=ERRORS)
async def list_checkpoints(
    session: SessionDep, _: AuditReader, limit: Limit = DEFAULT_LIMIT, cursor: IdCursor = None
) -> CheckpointPage:
    """Checkpoints, newest first: copy them out of the service to anchor the log."""
    return await accesslog_service.list_checkpoints(session, before_id=cursor, limit=limit)


@router.get(
    "/{entry_id}",
    response_model=AccessLogEntryRead,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Gone),
)
async def get_entry(
    entry_id: Annotated[int, Path(ge=1, le=2**62)], session: SessionDep, _: AuditReader
) -> AccessLogEntryRead:
    """One entry; 410 (naming its segment) once `aclaudit log archive` moved it out."""
    return await accesslog_service.get_entry(session, entry_id)


@router.get(
    "/{entry_id}/replay",
    response_model=ReplayRead,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Gone, Conflict, Busy),
)
async def replay_entry(
    entry_id: Annotated[int, Path(ge=1, le=2**62)],
    _: RebuildTurn,
    session: SessionDep,
) -> ReplayRead:
    """The entry's decision recomputed from the policy as of its `policy_version` (rebuilt
    from the policy's history) for its own request, at its own instant, beside the recorded
    one; `matches` says whether they are equal. 410 once archived; 409 for a version older
    than the history. Rebuilding takes turns with `at=` requests (429 past one per caller)."""
    return await replays.replay(session, entry_id)
