from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from app.acceptance import AcceptExposure
from app.accesslog.schemas import AccessLogPage
from app.as_of import At
from app.auth.dependencies import AuditReader, AuthorizedFirst, PolicyWriter
from app.db import ReadSessionDep, SessionDep
from app.errors import (
    Busy,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    problem_responses,
)
from app.exposure import access, findings
from app.exposure import scan as scans
from app.exposure import simulate as simulation
from app.exposure.schemas import (
    ExposureRead,
    FindingKind,
    FindingPage,
    FindingRead,
    FindingStatus,
    PrincipalAccess,
    ScanResult,
    Severity,
    SimulateRequest,
    SimulateResult,
)
from app.fairness import OneAtATime
from app.identifiers import DatasetId, PrincipalId
from app.pagination import DEFAULT_LIMIT, Cursor, IdCursor, Limit
from app.policy.history import service as history_service
from app.policy.snapshot import CHECKS, PolicyCache

router = APIRouter(tags=["exposure"], route_class=AuthorizedFirst)
FindingId = Annotated[int, Path(ge=1, le=2**62)]
READ_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, InvalidInput)
AS_OF_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, InvalidInput, Busy)


@router.get("/v1/findings", response_model=FindingPage, responses=READ_ERRORS)
async def list_findings(
    session: SessionDep,
    _: AuditReader,
    kind: FindingKind | None = None,
    status: FindingStatus | None = None,
    severity: Severity | None = None,
    dataset: Annotated[DatasetId | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> FindingPage:
    """Findings, oldest first: grants that let principals outside a dataset's audience read
    it (`kind=exposure`), and allow grants no read went through for ACLAUDIT_UNUSED_AFTER_DAYS
    (`kind=unused`, with `last_used_at`; opened and resolved by the sweeper)."""
    items, next_cursor = await findings.list_findings(
        session,
        kind=kind.value if kind else None,
        status=status.value if status else None,
        severity=severity.value if severity else None,
        dataset=dataset,
        after_id=cursor,
        limit=limit,
    )
    return FindingPage(items=items, next_cursor=next_cursor)


@router.get("/v1/findings/{finding_id}", response_model=FindingRead, responses=READ_ERRORS)
async def get_finding(finding_id: FindingId, session: SessionDep, _: AuditReader) -> FindingRead:
    return await findings.get_finding(session, finding_id)


@router.post(
    "/v1/findings/{finding_id}/accept",
    response_model=FindingRead,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict),
)
async def accept_finding(
    finding_id: FindingId, body: AcceptExposure, session: SessionDep, caller: PolicyWriter
) -> FindingRead:
    """Accept the exposure (or, for an `unused` finding, keeping the grant) knowingly until
    `until`; it reopens by itself afterwards. An accepted `unused` finding still resolves once
    the grant is used, revoked or expires. On a `block`-guarded dataset accepting exposure takes
    two people: 403, request it with `POST /v1/approvals`. A `break_glass` finding is closed
    by its review (`POST /v1/break-glass/{id}/review`): 409."""
    return await findings.accept_finding(
        session, finding_id=finding_id, body=body, actor=caller.name
    )


@router.get(
    "/v1/findings/{finding_id}/reads",
    response_model=AccessLogPage,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, InvalidInput, Conflict),
)
async def finding_reads(
    finding_id: FindingId,
    session: SessionDep,
    _: AuditReader,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> AccessLogPage:
    """Who did: the allowed reads that went through the finding's grant by principals in its
    excess at the time (outside the dataset's audience), newest first. 409 for an `unused`
    finding (no excess; its `last_used_at` is the grant's last use)."""
    return await access.finding_reads(session, finding_id=finding_id, before_id=cursor, limit=limit)


@router.post(
    "/v1/scan",
    response_model=ScanResult,
    responses=problem_responses(Unauthenticated, Forbidden),
)
async def scan(session: SessionDep, caller: PolicyWriter) -> ScanResult:
    """Re-analyse every dataset; returns counts."""
    return await scans.scan(session, actor=caller.name)


@router.get("/v1/datasets/{dataset}/exposure", response_model=ExposureRead, responses=AS_OF_ERRORS)
async def dataset_exposure(
    dataset: DatasetId,
    at: At,
    session: SessionDep,
    _: AuditReader,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ExposureRead:
    """Who could read it: intended, effective and excess counts, a page of excess principals
    with the grant and path that reaches each, and the out-of-audience reads recorded; now,
    or as of `at` (the policy rebuilt from its history; 404 if not registered then)."""
    return await access.dataset_exposure(
        session, dataset_id=dataset, after=cursor, limit=limit, when=at
    )


@router.get(
    "/v1/principals/{principal}/access", response_model=PrincipalAccess, responses=AS_OF_ERRORS
)
async def principal_access(
    principal: PrincipalId,
    request: Request,
    at: At,
    session: SessionDep,
    _: AuditReader,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> PrincipalAccess:
    """Every registered dataset the principal can read now (or could at `at`, from the
    policy's history), with the grant and group path, by dataset id (the cursor is the last
    one of the previous page)."""
    if at is not None:
        snapshot = await history_service.view_at(session, at, CHECKS)
    else:
        cache: PolicyCache = request.app.state.policy
        snapshot = await cache.current(session)
    return await access.principal_access(
        session, snapshot, principal=principal, after=cursor, limit=limit, when=at
    )


async def simulation_turn(request: Request, caller: AuditReader) -> AsyncIterator[None]:
    """Wait for this caller's turn (before the session opens: waiting holds no connection)."""
    gate: OneAtATime = request.app.state.simulations
    async with gate.turn(caller.key):
        yield


@router.post(
    "/v1/grants/simulate",
    tags=["grants"],
    response_model=SimulateResult,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Busy),
)
async def simulate(
    body: SimulateRequest,
    _: Annotated[None, Depends(simulation_turn, scope="function")],
    session: ReadSessionDep,
) -> SimulateResult:
    """The findings these additions and removals would open and resolve. Nothing is changed.

    A large proposal computes for seconds (sharing the worker with checks), so a worker runs
    one simulate at a time, callers in turn: a request waits for those of the callers ahead of
    it (up to 30 s). A caller's second request while its first runs or waits, or one arriving
    while 8 callers wait, is refused 429 with Retry-After."""
    return await simulation.simulate(session, body=body)
