"""What adding and removing grants would open, resolve and refuse: the findings diff of the
proposal, reported and not written."""

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import InvalidInput
from app.exposure import repository
from app.exposure.diff import Accepting, Stepped, diff
from app.exposure.findings import to_read
from app.exposure.measure import Acceptance, Measured, StoredFinding, would_be
from app.exposure.reconcile import affected_by_resource
from app.exposure.schemas import FindingRead, FindingStatus, SimulateRequest, SimulateResult
from app.exposure.view import current_view
from app.fairness import Pacer
from app.policy import repository as policy_repository
from app.policy.schemas import GrantRead, GrantStatus
from app.policy.snapshot import to_rules


async def simulate(session: AsyncSession, *, body: SimulateRequest) -> SimulateResult:
    """What adding and removing grants would open and resolve. Changes nothing.

    Proposals take ids -1, -2, ... (shown as null); one with `accept_exposure` opens its
    findings accepted and is not refused."""
    before = await current_view(session)
    after = before.changed()
    touched: set[str] = set()
    accepted: dict[int, Acceptance] = {}  # proposed id -> its accept_exposure
    now = utcnow()
    pacer = Pacer()  # seconds of work for a large proposal: checks must not wait for it
    for index, proposal in enumerate(body.add):
        await pacer.pause()
        proposed_id = -(index + 1)
        if proposal.expires_at is not None and proposal.expires_at <= now:
            raise InvalidInput(f"body.add.{index}.expires_at", "must be in the future")
        if proposal.accept_exposure is not None:
            accept = proposal.accept_exposure
            # As an approved request would apply it (given directly on a block dataset, the
            # grant is refused 403: accepting there takes a second person)
            accepted[proposed_id] = Acceptance("simulate", accept.reason, accept.until, True)
        grant = GrantRead(
            id=proposed_id,
            principal=proposal.principal,
            resource=proposal.resource,
            action=proposal.action,
            effect=proposal.effect,
            purposes=proposal.purposes,
            expires_at=proposal.expires_at,
            justification=None,
            created_by="simulate",
            created_at=utcnow(),
            revoked_at=None,
            revoked_by=None,
            status=GrantStatus.active,
        )
        for rule in to_rules(grant):
            after.analyser.add_rule(rule)
        after.grant_subjects[proposed_id] = proposal.principal
        touched.update(affected_by_resource(after, proposal.resource))
    for position, grant_id in enumerate(body.remove):
        row = await policy_repository.get(session, grant_id)
        if row is None or row.revoked_at is not None:
            raise InvalidInput(f"body.remove.{position}", f"grant {grant_id} is not active")
        for rule in to_rules(row):
            after.analyser.remove_rule(rule)
        touched.update(affected_by_resource(after, row.resource))
    at = time.time()
    ids = sorted(touched)
    active = {(f.dataset, f.grant_id): f for f in await repository.active_for(session, ids)}
    stored = {
        key: StoredFinding(
            f.id, f.dataset, f.grant_id, f.excess_count, f.severity, f.status, f.excess_sample
        )
        for key, f in active.items()
    }
    accepting = Accepting(by_grant=accepted)
    would_open: list[FindingRead] = []
    would_refuse: dict[tuple[str, int], FindingRead] = {}
    steps = Stepped(
        diff(before, after, dict.fromkeys(ids), stored, accepting=accepting, guarded=True, at=at)
    )
    for _ in steps:  # checks must not wait for the diff of a large proposal either
        await pacer.pause()
    found = steps.result
    for opened in found.opened:
        await pacer.pause()
        acceptance = opened.acceptance
        if acceptance is None:
            would_open.append(_shown(None, opened.measured))
        else:
            would_open.append(
                _shown(
                    None,
                    opened.measured,
                    status=FindingStatus.accepted,
                    reason=acceptance.reason,
                    until=acceptance.until,
                )
            )
    for reopened in found.reopened:  # accepted findings the change widens: open again
        await pacer.pause()
        would_open.append(_shown(reopened.id, reopened.measured, status=FindingStatus.open))
    # As the policy stands first; then those past the denies that expire.
    for refused in (*found.refused_now, *found.refused_later):
        if refused.key not in would_refuse:
            await pacer.pause()
            would_refuse[refused.key] = _shown(refused.id, refused.measured)
    would_resolve = [to_read(active[(f.dataset, f.grant_id)]) for f in found.resolved]
    # A removed grant's `unused` finding resolves with it.
    would_resolve += [to_read(f) for f in await repository.unused_of(session, body.remove)]
    return SimulateResult(
        would_open=would_open,
        would_resolve=sorted(
            would_resolve, key=lambda f: (f.dataset, f.grant_id or 0, f.kind.value)
        ),
        would_refuse=[would_refuse[key] for key in sorted(would_refuse)],
    )


def _shown(finding_id: int | None, measured: Measured, **changes: Any) -> FindingRead:
    """Proposals have no id yet: their grant shows as null."""
    if measured.grant_id < 0:
        changes["grant_id"] = None
    return would_be(finding_id, measured, **changes)
