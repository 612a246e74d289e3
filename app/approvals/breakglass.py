"""Break-glass: time-boxed read access given at once, reviewed afterwards by a second person.

The access is an ordinary allow grant that expires after `minutes`: Casbin stops matching it
from the second it expires (`isLive`), so the next check after that denies with no work done.

A guard hold on the same principal and dataset is a Casbin *deny* rule, and a matching deny
wins over every allow (the model's effect): a break-glass grant next to a hold would never
allow. So the hold is set aside (released, naming the break-glass) for the window. It cannot be
set aside *only* for the window: a rule can be made to stop at an instant (the `exp` column)
but not to start at one, so nothing in the policy brings the deny back by itself. The sweeper
restores it (a new guard hold) up to two sweep intervals *before* the window closes
(`RESTORE_LEAD_TICKS`), so a late tick shortens the window rather than leaving the held principal
in through their group after it.

A user the IdP deactivated (an `inactive` hold on everything) is refused (409): the IdP is the
truth about who works here. The use opens a `break_glass` finding (critical) and a critical
`break_glass.used` alert; only a principal other than the one who used it closes the finding
(`review`).
"""

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.approvals import repository
from app.approvals.models import BreakGlass
from app.approvals.schemas import BreakGlassCreate, BreakGlassRead
from app.datasets import repository as datasets_repository
from app.db import utcnow
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.exposure import repository as exposure_repository
from app.exposure.findings import finding_alert, to_read
from app.exposure.models import Finding
from app.exposure.reconcile import reconcile
from app.exposure.schemas import FindingKind, FindingStatus
from app.exposure.view import publish_on_commit, view_before_change
from app.holds import repository as holds_repository
from app.holds.models import Hold
from app.holds.schemas import HoldKind
from app.identifiers import Action, Effect
from app.policy import service as policy_service
from app.policy.holds import hold_rules
from app.policy.schemas import GrantCreate
from app.policy.snapshot import to_rules
from app.policy.state import PolicyChange

RESTORE_LEAD_TICKS = 2


class SelfReview(Forbidden):
    slug = "self-review"
    title = "Reviewing your own break-glass"


async def use(session: AsyncSession, *, body: BreakGlassCreate, actor: str) -> BreakGlassRead:
    before = await view_before_change(session)
    if await datasets_repository.get(session, body.dataset) is None:
        raise InvalidInput("body.dataset", f"{body.dataset} is not a registered dataset")
    inactive = await holds_repository.active_on(
        session, kind=HoldKind.inactive.value, principals=[body.principal]
    )
    if inactive:
        raise Conflict(f"{body.principal} was deactivated by the IdP: break-glass cannot undo that")
    now = utcnow()
    expires = now + timedelta(minutes=body.minutes)
    grant = await policy_service.create_grant(
        session,
        body=GrantCreate(
            principal=body.principal,
            resource=body.dataset,
            action=Action.read,
            effect=Effect.allow,
            expires_at=expires,
            purposes=[body.purpose],
            justification=f"break-glass ({body.purpose}): {body.reason}",
        ),
        actor=actor,
    )
    held = await holds_repository.active_on(
        session, kind=HoldKind.guard.value, datasets=[body.dataset], principals=[body.principal]
    )
    change = PolicyChange(added=to_rules(grant))
    if held:
        await holds_repository.release(
            session, held, at=now, by=actor, reason=f"set aside for break-glass: {body.reason}"
        )
        removed = tuple(r for h in held for r in hold_rules(h.id, h.principal, h.dataset))
        change = change.then(PolicyChange(removed=removed))
    after = before.changed(change)
    # The grant's exposure is a finding like any other's (never refused: that is the point).
    await reconcile(
        session, before=before, after=after, dataset_ids=[body.dataset], actor=actor, guarded=False
    )
    finding = Finding(
        kind=FindingKind.break_glass.value,
        dataset=body.dataset,
        grant_id=grant.id,
        principal=body.principal,
        excess_count=1,
        excess_sample=[body.principal],
        paths=[{"principal": body.principal, "via": [body.principal]}],
        severity="critical",
        status=FindingStatus.open.value,
        opened_at=now,
        updated_at=now,
    )
    session.add(finding)
    await session.flush()
    row = BreakGlass(
        principal=body.principal,
        dataset=body.dataset,
        purpose=body.purpose,
        reason=body.reason,
        minutes=body.minutes,
        used_by=actor,
        used_at=now,
        expires_at=expires,
        grant_id=grant.id,
        finding_id=finding.id,
        hold_id=held[0].id if held else None,
    )
    await repository.add(session, row)
    aside = f"; guard hold {held[0].id} set aside for the window" if held else ""
    await alerts_service.emit(
        session,
        [
            AlertEvent(
                type=AlertType.break_glass_used,
                severity="critical",
                summary=f"{actor} broke the glass: {body.principal} may read {body.dataset} "
                f"until {expires:%Y-%m-%dT%H:%M:%SZ} (purpose {body.purpose}; reason: "
                f"{body.reason}){aside}; a second person reviews finding {finding.id}",
                dataset=body.dataset,
                finding_id=finding.id,
            )
        ],
    )
    await publish_on_commit(session, after, actor=actor)
    return BreakGlassRead.model_validate(row)


async def review(
    session: AsyncSession, *, break_glass_id: int, note: str, actor: str
) -> BreakGlassRead:
    row = await repository.get_break_glass(session, break_glass_id, for_update=True)
    if row is None:
        raise NotFound(f"break-glass {break_glass_id} does not exist")
    if row.reviewed_by is not None:
        raise Conflict(f"break-glass {break_glass_id} was reviewed by {row.reviewed_by} already")
    if row.used_by == actor:
        raise SelfReview(
            f"{actor} used break-glass {break_glass_id}: a different principal reviews it"
        )
    now = utcnow()
    finding = await exposure_repository.get(session, row.finding_id)
    assert finding is not None  # a foreign key
    finding.status, finding.resolved_at, finding.updated_at = "resolved", now, now
    finding.accepted_by, finding.reason = actor, note
    row.reviewed_by, row.reviewed_at, row.review_note = actor, now, note
    await session.flush()
    await alerts_service.emit(
        session, [finding_alert(to_read(finding), AlertType.finding_resolved)]
    )
    return BreakGlassRead.model_validate(row)


async def list_page(
    session: AsyncSession, *, after_id: int | None, limit: int
) -> tuple[list[BreakGlassRead], str | None]:
    rows = await repository.list_break_glass(session, after_id=after_id, limit=limit + 1)
    page = [BreakGlassRead.model_validate(r) for r in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit else None)


async def restore_holds(session: AsyncSession, *, by: datetime, actor: str) -> list[int]:
    """The guard holds set aside by break-glass windows closing by `by`, back (as new holds),
    where their principal is still outside the dataset's audience. The ids of the windows."""
    closing = await repository.closing_holds(session, by=by)
    if not closing:
        return []
    before = await view_before_change(session)
    now = utcnow()
    restored: list[Hold] = []
    for window in closing:
        facts = before.datasets.get(window.dataset)
        directory = before.analyser.directory
        joined = facts is not None and bool(
            directory.leaf_bits(window.principal) & before.analyser.intended_bits(facts.audience)
        )
        if joined:
            window.restored_hold_id = window.hold_id  # nothing to hold: marked done
            continue
        hold = Hold(
            kind=HoldKind.guard.value,
            principal=window.principal,
            dataset=window.dataset,
            group_id=None,
            created_at=now,
            created_by=actor,
        )
        await holds_repository.add(session, [hold])
        window.restored_hold_id = hold.id
        restored.append(hold)
    await session.flush()
    if restored:
        rules = tuple(r for h in restored for r in hold_rules(h.id, h.principal, h.dataset))
        after = before.changed(PolicyChange(added=rules))
        await reconcile(
            session,
            before=before,
            after=after,
            dataset_ids=sorted({h.dataset for h in restored}),
            actor=actor,
            guarded=False,
        )
        await alerts_service.emit(
            session,
            [
                AlertEvent(
                    type=AlertType.access_held,
                    severity="high",
                    summary=f"{h.principal} held off {h.dataset} again: the break-glass window "
                    "that set their guard hold aside is closing",
                    dataset=h.dataset,
                )
                for h in restored
            ],
        )
        await publish_on_commit(session, after, actor=actor)
    return [window.id for window in closing]
