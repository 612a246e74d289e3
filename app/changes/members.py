"""Changing a group's members: the findings of the grants above it re-analysed first.

Only the (dataset, grant) pairs whose subjects' member sets differ (the analyser's
`reanalysis_for_membership`), and those whose sampled paths moved, are re-analysed.
"""

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.acceptance import AcceptExposure
from app.changes import audience
from app.changes import holds as holds_change
from app.changes.holds import HoldChanges
from app.db import epoch
from app.directory import repository as directory_repository
from app.directory import service as directory_service
from app.directory.schemas import GroupRead
from app.exposure import repository as exposure_repository
from app.exposure.measure import ACTIONS
from app.exposure.reconcile import affected_by_membership, reconcile
from app.exposure.schemas import FindingChanges
from app.exposure.view import PolicyView, publish_on_commit, view_before_change
from app.policy.casbin_model import READ_ACTIONS
from app.policy.decision_index import Rule
from app.policy.state import PolicyChange


async def change_members(
    session: AsyncSession,
    *,
    gid: str,
    add: list[str] | None = None,
    remove: str | None = None,
    replace_with: list[str] | None = None,
    actor: str,
    accept: AcceptExposure | None = None,
    growth_limit: int | None = None,
) -> tuple[GroupRead, FindingChanges]:
    """Add one member, remove one, or replace the set; refused on guarded over-exposure, on
    audience growth beyond `growth_limit` (`app.changes.audience`; None: alerted only), and
    for a group the IdP owns (its members change only through SCIM)."""
    before = await view_before_change(session)
    await directory_service.refuse_idp_owned(session, gid)
    old = set(await directory_repository.list_members(session, gid))
    # The graph as committed (this transaction holds the policy lock): no need to load it.
    graph = before.analyser.directory
    children, parents = graph.children_map, graph.parents_map
    if replace_with is not None:
        group = await directory_service.replace_members(
            session, gid=gid, members=replace_with, actor=actor, children=children, parents=parents
        )
    elif remove is not None:
        group = await directory_service.remove_member(
            session, gid=gid, member=remove, children=children
        )
    else:
        assert add is not None
        group = await directory_service.add_member(
            session, gid=gid, member=add[0], actor=actor, children=children, parents=parents
        )
    changes, _ = await relink(
        session,
        before=before,
        moved={gid: (old, set(group.members))},
        actor=actor,
        accept=accept,
        growth_limit=growth_limit,
    )
    return group, changes


# group -> (direct members before, after): only their difference counts, so the members that
# stay may be left out of both
Moved = Mapping[str, tuple[set[str], set[str]]]


async def relink(
    session: AsyncSession,
    *,
    before: PolicyView,
    moved: Moved,
    actor: str,
    accept: AcceptExposure | None = None,
    holding: bool = False,
    rules: PolicyChange = PolicyChange(),
    touched: int = 0,
    growth_limit: int | None = None,
) -> tuple[FindingChanges, HoldChanges]:
    """The findings and holds of a change whose membership rows are written: `moved` groups'
    members, plus `rules` (holds of a user the IdP deactivated) whose leaves are in `touched`.
    `holding` (the IdP's changes): what would widen a block-guarded dataset is held back
    instead of refused. The growth of block-guarded datasets' audiences is judged
    (`app.changes.audience`: refused beyond `growth_limit` unless approved; never the IdP's).
    Published on commit."""
    await policy_version.advance(session)
    links = PolicyChange(
        links_added=tuple((m, g) for g, (old, new) in moved.items() for m in sorted(new - old)),
        links_removed=tuple((m, g) for g, (old, new) in moved.items() for m in sorted(old - new)),
    )
    after = before.changed(links.then(rules))
    # Holds change only on block-guarded datasets and those holding some (usually few); the
    # audiences that may grow are among them too.
    guarded = holds_change.guarded_datasets(after)
    by_membership: set[str] = set()
    if guarded:
        for gid in moved:
            by_membership.update(affected_by_membership([before, after], gid, among=guarded))
    await audience.judge(
        session,
        audience.grown(before, after, by_membership),
        actor=actor,
        accept=accept,
        limit=None if holding else growth_limit,
    )
    # The leaves whose membership paths may differ: those under a member that came or went.
    for old, new in moved.values():
        for member in old ^ new:
            touched |= before.analyser.directory.leaf_bits(member)
            touched |= after.analyser.directory.leaf_bits(member)
    # Only the grants whose subjects' member sets (or whose datasets' denies and audiences)
    # actually differ between `before` and `after`, and those a rule changed meets.
    targets: dict[str, set[Rule]] = {}
    audiences = {id: facts.audience for id, facts in after.datasets.items()}
    for action in ACTIONS:
        plans = [
            after.analyser.reanalysis_for_membership(
                before.analyser, list(moved), after.datasets, audiences, action
            )
        ]
        plans += [
            view.analyser.reanalysis_for_rule(rule, after.datasets, action)
            for rule in rules.added + rules.removed
            for view in (before, after)
        ]
        for plan in plans:
            for dataset, found in plan.grants.items():
                targets.setdefault(dataset, set()).update(found)
    # A shortcut added or a redundant link removed changes paths but no member set: findings
    # of grants above a moved group whose sample shows a moved leaf need their paths redone.
    repaths = []
    for gid in moved:
        repaths += await _paths_through(session, before, after, gid, touched)
    for dataset, rule in repaths:
        targets.setdefault(dataset, set()).add(rule)
    affected = (set(targets) & guarded) | by_membership
    after, holds = await holds_change.settle(
        session,
        before=before,
        after=after,
        datasets=affected,
        actor=actor,
        holding=holding,
        group=next(iter(moved)) if len(moved) == 1 else None,
        at=epoch(),
    )
    changes = await reconcile(
        session,
        before=before,
        after=after,
        plan=targets,
        dataset_ids=holds.datasets,
        actor=actor,
        accept=accept,
        # The IdP is never refused: what it would newly let in is held above; what is left
        # is a second way in for someone who could already read (a finding, not a refusal).
        guarded=not holding,
        touched=touched,
        within=touched,  # only leaves under a member that came or went reach anything new
        repaths=[(dataset, int(rule.id)) for dataset, rule in repaths],
    )
    await publish_on_commit(session, after, actor=actor)
    return changes, holds


async def _paths_through(
    session: AsyncSession, before: PolicyView, after: PolicyView, gid: str, touched: int
) -> list[tuple[str, Rule]]:
    """(dataset, allow rule) of the active findings whose grant's subject is `gid` or above it
    and whose sample names a leaf of `touched` that reaches that subject both before and after
    the change, by another path: their sampled paths moved though their excess did not."""
    if not touched:
        return []
    rules = {
        int(rule.id): rule
        for rule in after.analyser.rules_affected_by_membership(gid)
        if rule.eft == "allow" and rule.act in READ_ACTIONS
    }
    names = after.analyser.directory.names(touched)
    if len(names) <= TOUCHED_QUERY:
        # Usually none: a member that came or went changes the excess (re-analysed anyway),
        # and the shortest paths to the subjects above it seldom move.
        old, new = before.analyser.directory, after.analyser.directory
        moved = set()
        for subject in {rule.sub for rule in rules.values()}:
            for name in names:
                was, now = old.path(name, subject), new.path(name, subject)
                if was is not None and now is not None and was != now:
                    moved.add(subject)
                    break
        rules = {grant_id: rule for grant_id, rule in rules.items() if rule.sub in moved}
        if not rules:
            return []
    found = await exposure_repository.sampling(
        session, sorted(rules), names if len(names) <= TOUCHED_QUERY else None
    )
    wanted = set(names)
    return [(d, rules[g]) for d, g, sample in found if wanted.intersection(sample)]


TOUCHED_QUERY = 50  # up to this many moved leaves, the database filters samples by name
