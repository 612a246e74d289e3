"""Creating and revoking a grant: the findings of the grants it can affect re-analysed first.

Each re-analyses only the (dataset, grant) pairs that the analyser's `reanalysis_for_rule`
names: every other finding is provably unchanged. (AcceptExposure itself refuses an `until`
that is not in the future.)
"""

from sqlalchemy.ext.asyncio import AsyncSession

from app.acceptance import AcceptExposure, ApprovalRequired
from app.db import utcnow
from app.exposure import unused as exposure_unused
from app.exposure.measure import READ
from app.exposure.reconcile import ExposureRefused, reconcile
from app.exposure.schemas import FindingChanges
from app.exposure.view import publish_on_commit, view_before_change
from app.policy import service as policy_service
from app.policy.casbin_model import READ_ACTIONS
from app.policy.decision_index import Rule
from app.policy.schemas import GrantCreate, GrantRead
from app.policy.snapshot import to_rules
from app.policy.state import PolicyChange


def _action(rule: Rule) -> str:
    """The action to re-analyse a rule's change for: its own when it reads (a rule of any other
    action changes no finding, and asking for `read` then plans nothing)."""
    return rule.act if rule.act in READ_ACTIONS else READ


async def create_grant(
    session: AsyncSession, *, body: GrantCreate, actor: str, field: str = "body"
) -> tuple[GrantRead, FindingChanges]:
    """`field`: where the body's invalid fields are named (an approval's `change.body`)."""
    before = await view_before_change(session)
    grant = await policy_service.create_grant(session, body=body, actor=actor, field=field)
    rules = to_rules(grant)
    after = before.changed(PolicyChange(added=rules))
    try:
        changes = await reconcile(
            session,
            before=before,
            after=after,
            plan=after.analyser.reanalysis_for_rules(rules, after.datasets, _action(rules[0])),
            actor=actor,
            accept=body.accept_exposure,
        )
    except ExposureRefused as refused:
        raise refused.without_grants({grant.id}) from None
    except ApprovalRequired as refused:  # (its would-be findings: the grant rolled back too)
        refused.extra["findings"] = [
            {**f, "grant_id": None} if f["grant_id"] == grant.id else f
            for f in refused.extra.get("findings", [])
        ]
        raise
    await publish_on_commit(session, after, actor=actor)
    return grant, changes


async def revoke_grant(
    session: AsyncSession, *, grant_id: int, actor: str, accept: AcceptExposure | None = None
) -> tuple[GrantRead, FindingChanges]:
    before = await view_before_change(session)
    grant = await policy_service.revoke_grant(session, grant_id=grant_id, actor=actor)
    rules = to_rules(grant)
    after = before.changed(PolicyChange(removed=rules))
    changes = await reconcile(
        session,
        before=before,
        after=after,
        plan=before.analyser.reanalysis_for_rules(rules, before.datasets, _action(rules[0])),
        actor=actor,
        accept=accept,  # revoking a deny widens access too
    )
    unused = await exposure_unused.resolve_revoked(session, [grant.id], utcnow())
    changes.findings_resolved += unused
    await publish_on_commit(session, after, actor=actor)
    return grant, changes
