"""Two-person control: a change requested by one principal, applied when another approves it.

"Same person" is decided on the identity the admin trail records: a token's name, or a signed-in
person's principal (`Caller.name`). A request is applied with its acceptance in the approver's
transaction; if the world moved so that the change no longer applies (a cycle, a gone finding,
a hold released meanwhile), the approval answers with the change's own error and the request
stays pending: it can be approved again once it applies, rejected, or left to expire.
"""

from collections.abc import Sequence
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.acceptance import AcceptExposure
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.approvals import repository
from app.approvals.changes import parse
from app.approvals.models import Approval
from app.approvals.schemas import (
    ApprovalCreate,
    ApprovalRead,
    ApprovalStatus,
    ChangeKind,
    ChangeRequest,
)
from app.db import begin_write, utcnow
from app.errors import Conflict, Forbidden, NotFound
from app.exposure.schemas import FindingRead


class SelfApproval(Forbidden):
    slug = "self-approval"
    title = "Approving your own request"


def to_read(row: Approval) -> ApprovalRead:
    status = ApprovalStatus(row.status)
    if status is ApprovalStatus.pending and row.expires_at <= utcnow():
        status = ApprovalStatus.expired
    return ApprovalRead(
        id=row.id,
        status=status,
        kind=ChangeKind(row.kind),
        change=ChangeRequest(method=row.method, path=row.path, body=row.body),
        reason=row.reason,
        until=row.until,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        would_open=[FindingRead.model_validate(f) for f in row.would_open],
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_note=row.decision_note,
        result=row.result,
    )


async def request(
    session: AsyncSession, *, body: ApprovalCreate, actor: str, ttl: int, growth_limit: int
) -> ApprovalRead:
    """Validate the change, work out what it would open (applied with the acceptance, then
    rolled back: the same pipeline and diff the approval will run), and record the request.
    A change that could not be applied now is refused with its own error."""
    proposed = parse(body.change)
    accept = AcceptExposure(reason=body.reason, until=body.until)
    try:
        _, opened = await proposed.apply(session, accept.approved(0, actor), actor, growth_limit)
    finally:
        await session.rollback()  # nothing of the preview stays, not even a policy version
    await begin_write(session)
    return await record_pending(
        session,
        change=body.change,
        accept=accept,
        requested_by=actor,
        ttl=ttl,
        would_open=_without_provisional(body.change, opened),
    )


async def record_pending(
    session: AsyncSession,
    *,
    change: ChangeRequest,
    accept: AcceptExposure,
    requested_by: str,
    ttl: int,
    would_open: Sequence[FindingRead] = (),
) -> ApprovalRead:
    """Record a request (its change validated) and alert it; nothing else changes."""
    now = utcnow()
    row = Approval(
        status=ApprovalStatus.pending.value,
        kind=parse(change).kind.value,
        method=change.method,
        path=change.path,
        body=change.body,
        reason=accept.reason,
        until=accept.until,
        requested_by=requested_by,
        requested_at=now,
        expires_at=now + timedelta(seconds=ttl),
        would_open=[f.model_dump(mode="json") for f in would_open],
    )
    await repository.add(session, row)
    await _alert(
        session,
        row,
        AlertType.approval_requested,
        "medium",
        f"{requested_by} requests approval {row.id}: {row.method} {row.path} "
        f"(would open {len(would_open)} finding(s)); reason: {row.reason}",
    )
    return to_read(row)


def _without_provisional(change: ChangeRequest, opened: list[FindingRead]) -> list[FindingRead]:
    """A requested grant's id was rolled back with the preview: its findings show it as null
    (as `simulate` shows its proposals)."""
    if change.method != "POST" or change.path != "/v1/grants":
        return opened
    return [f.model_copy(update={"grant_id": None, "id": None}) for f in opened]


async def _decidable(session: AsyncSession, approval_id: int, actor: str) -> Approval:
    row = await repository.get(session, approval_id, for_update=True)
    if row is None:
        raise NotFound(f"approval {approval_id} does not exist")
    if row.status != ApprovalStatus.pending.value:
        raise Conflict(f"approval {approval_id} was {row.status} already by {row.decided_by}")
    if row.expires_at <= utcnow():
        raise Conflict(
            f"approval {approval_id} expired at {row.expires_at:%Y-%m-%dT%H:%M:%SZ}: request "
            "the change again"
        )
    if row.requested_by == actor:
        raise SelfApproval(
            f"approval {approval_id} was requested by {actor}: a different principal with "
            "policy:write decides it"
        )
    return row


async def approve(
    session: AsyncSession, *, approval_id: int, actor: str, note: str | None, growth_limit: int
) -> ApprovalRead:
    """Apply the request's change with its acceptance, approved by `actor`, in this
    transaction. Errors of the change are the approval's (the request stays pending)."""
    row = await _decidable(session, approval_id, actor)
    try:
        accept = AcceptExposure(reason=row.reason, until=row.until)
    except ValidationError:
        raise Conflict(
            f"approval {approval_id} accepts the exposure until {row.until:%Y-%m-%dT%H:%M:%SZ}, "
            "which has passed: request the change again"
        ) from None
    await _apply(session, row, accept, actor, note, growth_limit)
    return to_read(row)


async def record_approved(
    session: AsyncSession,
    *,
    change: ChangeRequest,
    accept: AcceptExposure,
    requested_by: str,
    approved_by: str,
) -> ApprovalRead:
    """A request and its approval at once, as they happened (the demo's story tells one)."""
    if requested_by == approved_by:
        raise SelfApproval(f"{requested_by} cannot approve their own request")
    read = await record_pending(
        session, change=change, accept=accept, requested_by=requested_by, ttl=0
    )
    row = await repository.get(session, read.id)
    assert row is not None
    await _apply(session, row, accept, approved_by, None, None)
    return to_read(row)


async def _apply(
    session: AsyncSession,
    row: Approval,
    accept: AcceptExposure,
    actor: str,
    note: str | None,
    growth_limit: int | None,
) -> None:
    proposed = parse(ChangeRequest(method=row.method, path=row.path, body=row.body))
    result, opened = await proposed.apply(
        session, accept.approved(row.id, actor), row.requested_by, growth_limit
    )
    row.status = ApprovalStatus.approved.value
    row.decided_by, row.decided_at, row.decision_note = actor, utcnow(), note
    row.result = result
    await session.flush()
    await _alert(
        session,
        row,
        AlertType.approval_approved,
        "high",
        f"{actor} approved {row.requested_by}'s request {row.id}: {row.method} {row.path} "
        f"applied, {len(opened)} finding(s) opened accepted until "
        f"{row.until:%Y-%m-%dT%H:%M:%SZ}; reason: {row.reason}",
    )


async def reject(
    session: AsyncSession, *, approval_id: int, actor: str, note: str | None
) -> ApprovalRead:
    row = await _decidable(session, approval_id, actor)
    row.status = ApprovalStatus.rejected.value
    row.decided_by, row.decided_at, row.decision_note = actor, utcnow(), note
    await session.flush()
    await _alert(
        session,
        row,
        AlertType.approval_rejected,
        "low",
        f"{actor} rejected {row.requested_by}'s request {row.id}: {row.method} {row.path}"
        + (f"; note: {note}" if note else ""),
    )
    return to_read(row)


async def get(session: AsyncSession, approval_id: int) -> ApprovalRead:
    row = await repository.get(session, approval_id)
    if row is None:
        raise NotFound(f"approval {approval_id} does not exist")
    return to_read(row)


async def list_page(
    session: AsyncSession, *, status: ApprovalStatus | None, after_id: int | None, limit: int
) -> tuple[list[ApprovalRead], str | None]:
    now = utcnow()
    if status is ApprovalStatus.pending:
        rows = await repository.list_live(session, now=now, after_id=after_id, limit=limit + 1)
    else:
        stored = ApprovalStatus.pending if status is ApprovalStatus.expired else status
        rows = await repository.list_page(
            session,
            status=None if stored is None else stored.value,
            expired_before=now if status is ApprovalStatus.expired else None,
            after_id=after_id,
            limit=limit + 1,
        )
    page = [to_read(row) for row in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit else None)


async def _alert(
    session: AsyncSession, row: Approval, kind: AlertType, severity: str, summary: str
) -> None:
    dataset = row.path.removeprefix("/v1/datasets/") if row.kind == "dataset.put" else None
    await alerts_service.emit(
        session, [AlertEvent(type=kind, severity=severity, summary=summary, dataset=dataset)]
    )
