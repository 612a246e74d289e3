"""Policy as code: bring the groups, datasets and grants a document names to the state it states.

`plan` and `apply` run the same code in one transaction; a plan rolls it back. The whole
document is re-analysed once, so the block guard judges its net effect (a new deny that offsets
a new allow in the same document is not an exposure) and `apply` is all or nothing.
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.acceptance import AcceptExposure, ApprovalRequired
from app.changes import audience
from app.changes import guard as guard_change
from app.changes import holds as holds_change
from app.changes.schemas import GuardChangeRead
from app.datasets import repository as datasets_repository
from app.datasets import service as datasets_service
from app.datasets.models import Dataset
from app.datasets.schemas import DatasetWrite
from app.db import epoch, utcnow
from app.directory import repository as directory_repository
from app.directory import service as directory_service
from app.exposure import reconcile as exposure_reconcile
from app.exposure import unused as exposure_unused
from app.exposure.reconcile import ExposureRefused
from app.exposure.schemas import FindingChanges, FindingRead
from app.exposure.view import PolicyView, publish_on_commit, view_before_change
from app.plans.schemas import GrantSpec, MembershipChange, PlanResult, PolicyDocument
from app.policy import repository as policy_repository
from app.policy import service as policy_service
from app.policy.models import Grant
from app.policy.schemas import GrantCreate, GrantRead
from app.policy.snapshot import to_rules
from app.policy.state import DatasetFacts, PolicyChange

GrantKey = tuple[str, str, str, str, tuple[str, ...], datetime | None]


def _spec_key(spec: GrantSpec) -> GrantKey:
    return (
        spec.principal,
        spec.resource,
        spec.action.value,
        spec.effect.value,
        tuple(sorted(spec.purposes)),
        spec.expires_at,
    )


def _grant_key(grant: Grant) -> GrantKey:
    return (
        grant.principal,
        grant.resource,
        grant.action,
        grant.effect,
        tuple(sorted(grant.purposes)),
        grant.expires_at,
    )


def _unchanged(current: Dataset | None, wanted: DatasetWrite) -> bool:
    if current is None:
        return False
    guard = datasets_service.guard_for(current, wanted).value
    return (
        current.description == wanted.description
        and current.owner == wanted.owner
        and current.sensitivity == wanted.sensitivity.value
        and sorted(current.intended_audience) == sorted(set(wanted.intended_audience))
        and current.guard == guard
        and current.purpose_required == datasets_service.purpose_required_for(current, wanted)
    )


@dataclass
class _Applied:
    """What the document changed, and the view of the policy after it."""

    after: PolicyView
    touched: set[str] = field(default_factory=set)
    datasets: list[str] = field(default_factory=list)
    memberships: list[MembershipChange] = field(default_factory=list)
    created: list[GrantRead] = field(default_factory=list)
    revoked: list[GrantRead] = field(default_factory=list)
    guards: guard_change.Pending = field(default_factory=guard_change.Pending)

    @property
    def empty(self) -> bool:
        return not (self.datasets or self.memberships or self.created or self.revoked)


async def _apply_changes(
    session: AsyncSession, doc: PolicyDocument, before: PolicyView, actor: str
) -> _Applied:
    done = _Applied(after=before)
    facts: list[DatasetFacts] = []
    links_added: list[tuple[str, str]] = []
    links_removed: list[tuple[str, str]] = []
    current = {d.id: d for d in await datasets_repository.list_all(session)}
    moves = {
        dataset_id: (stored.guard, datasets_service.guard_for(stored, wanted))
        for dataset_id, wanted in doc.datasets.items()
        if (stored := current.get(dataset_id)) is not None
    }
    done.guards = await guard_change.prepare(session, moves)
    for dataset_id, wanted in doc.datasets.items():
        if _unchanged(current.get(dataset_id), wanted):
            continue
        dataset, _ = await datasets_service.put_dataset(
            session, dataset_id=dataset_id, body=wanted, actor=actor
        )
        facts.append(
            DatasetFacts(
                dataset.id,
                dataset.sensitivity.value,
                tuple(dataset.intended_audience),
                dataset.guard.value,
                dataset.purpose_required,
            )
        )
        done.datasets.append(dataset.id)
        done.touched.add(dataset.id)

    changed_groups = []
    for name, members in doc.groups.items():
        gid = directory_service.group_id(name)
        old = set(await directory_repository.list_members(session, gid))
        new = set(members)
        if old == new:
            continue
        await directory_service.refuse_idp_owned(session, gid)
        await directory_service.replace_members(
            session, gid=gid, members=members, actor=actor, field=f"body.groups.{name}"
        )
        links_removed += [(member, gid) for member in sorted(old - new)]
        links_added += [(member, gid) for member in sorted(new - old)]
        done.memberships.append(
            MembershipChange(group=gid, added=sorted(new - old), removed=sorted(old - new))
        )
        changed_groups.append(gid)

    live: dict[GrantKey, list[Grant]] = {}
    for grant in await policy_repository.list_unrevoked(session):
        live.setdefault(_grant_key(grant), []).append(grant)
    for index, spec in enumerate(doc.grants):
        if live.pop(_spec_key(spec), None) is not None:
            continue
        created = await policy_service.create_grant(
            session,
            body=GrantCreate(**spec.model_dump()),
            actor=actor,
            field=f"body.grants.{index}",
        )
        live[_spec_key(spec)] = []  # a duplicate line in the document creates nothing more
        done.created.append(created)
    if doc.prune_grants:
        for grant in sorted((g for gs in live.values() for g in gs), key=lambda g: g.id):
            revoked = await policy_service.revoke_grant(session, grant_id=grant.id, actor=actor)
            done.revoked.append(revoked)
    done.after = after = before.changed(
        PolicyChange(
            added=tuple(rule for grant in done.created for rule in to_rules(grant)),
            removed=tuple(rule for grant in done.revoked for rule in to_rules(grant)),
            links_added=tuple(links_added),
            links_removed=tuple(links_removed),
            datasets=tuple(facts),
        )
    )
    for changed in done.created + done.revoked:
        done.touched.update(exposure_reconcile.affected_by_resource(after, changed.resource))
    for gid in changed_groups:
        done.touched.update(exposure_reconcile.affected_by_membership((before, after), gid))
    # Holds whose principals the document moves into their dataset's audience are released.
    done.after, _ = await holds_change.settle(
        session,
        before=before,
        after=after,
        datasets=done.touched,
        actor=actor,
        holding=False,
        at=epoch(),
    )
    return done


def _result(
    done: _Applied,
    changes: FindingChanges,
    *,
    applied: bool,
    version: int | None,
    guards: list[GuardChangeRead],
    refused: list[FindingRead] | None = None,
) -> PlanResult:
    refused = list(refused or [])
    seen = {(f.dataset, f.grant_id) for f in refused}
    for change in guards:
        if change.refused:
            refused += [f for f in change.findings if (f.dataset, f.grant_id) not in seen]
    return PlanResult(
        applied=applied,
        policy_version=version,
        datasets_changed=done.datasets,
        memberships_changed=done.memberships,
        grants_created=done.created,
        grants_revoked=done.revoked,
        findings_opened=changes.findings_opened,
        findings_resolved=changes.findings_resolved,
        guards_changed=guards,
        refused=refused,
    )


async def _reconcile(
    session: AsyncSession,
    before: PolicyView,
    done: _Applied,
    actor: str,
    *,
    accept: AcceptExposure | None = None,
    guarded: bool = True,
) -> FindingChanges:
    """Findings in line with the document's result, over every dataset it touched; the
    revoked grants' `unused` findings resolved."""
    changes = await exposure_reconcile.reconcile(
        session,
        before=before,
        after=done.after,
        dataset_ids=done.touched,
        actor=actor,
        accept=accept,
        guarded=guarded,
    )
    revoked = [grant.id for grant in done.revoked]
    changes.findings_resolved += await exposure_unused.resolve_revoked(session, revoked, utcnow())
    return changes


async def apply(
    session: AsyncSession, *, doc: PolicyDocument, actor: str, growth_limit: int | None
) -> PlanResult:
    """Make the document true, or change nothing (409 when the block guard refuses it, or the
    document grows a block dataset's intended audience beyond `growth_limit` unapproved:
    `app.changes.audience`)."""
    before = await view_before_change(session)
    done = await _apply_changes(session, doc, before, actor)
    if done.empty:
        await session.rollback()  # nothing to record, not even a new policy version
        return _result(done, FindingChanges(), applied=True, version=None, guards=[])
    accept = doc.accept_exposure
    blocked = [d for d, facts in done.after.datasets.items() if facts.guard == "block"]
    grown = audience.grown(before, done.after, blocked)
    await audience.judge(session, grown, actor=actor, accept=accept, limit=growth_limit)
    try:
        changes = await _reconcile(session, before, done, actor, accept=accept)
        guards = await guard_change.settle(session, done.guards, accept=accept, actor=actor)
    except ExposureRefused as refused:
        raise refused.without_grants({g.id for g in done.created}) from None
    await publish_on_commit(session, done.after, actor=actor)
    version = await policy_version.advance(session)  # the version this transaction took
    return _result(done, changes, applied=True, version=version, guards=guards)


async def plan(session: AsyncSession, *, doc: PolicyDocument, actor: str) -> PlanResult:
    """What `apply` would do, and what it would refuse. Changes nothing.

    The findings are reconciled exactly as `apply` would (guarded, accepting what the document
    accepts); only when the guard refuses are they reconciled again without it, to show what
    the document would open. Guard changes are judged after, as `apply` judges them, and
    listed (`refused` where `apply` would refuse them). Ids of grants and findings in a plan
    are provisional: they are rolled back.
    """
    try:
        before = await view_before_change(session)
        done = await _apply_changes(session, doc, before, actor)
        probe = await session.begin_nested()
        accept = doc.accept_exposure
        refused: list[FindingRead] = []
        try:
            changes = await _reconcile(session, before, done, actor, accept=accept)
        except (ExposureRefused, ApprovalRequired) as exc:
            # (an acceptance on a block dataset without approval: what apply would refuse)
            await probe.rollback()
            refused = [FindingRead.model_validate(f) for f in exc.extra["findings"]]
            changes = await _reconcile(session, before, done, actor, guarded=False)
        guards = await guard_change.settle(
            session, done.guards, accept=accept, actor=actor, refuse=False
        )
        return _result(done, changes, applied=False, version=None, guards=guards, refused=refused)
    finally:
        await session.rollback()
