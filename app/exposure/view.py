"""The policy as the analyser sees it (a `PolicyView`): a view of the policy state
(`app.policy.state`), and how a change to it is made and published."""

import asyncio
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncSession

from app.exposure.analyser import ExposureAnalyser
from app.policy.published import states_of
from app.policy.state import DatasetFacts, PolicyChange, PolicyRows, PolicyState


@dataclass(frozen=True)
class PolicyView:
    """The policy as the analyser sees it, plus the datasets' audiences.

    `change` is what this view made to the state it came from (`changed`), which
    `publish_on_commit` publishes: a view to publish is changed only through `changed`.
    """

    analyser: ExposureAnalyser
    datasets: dict[str, DatasetFacts]
    grant_subjects: dict[int, str]
    change: PolicyChange = field(default_factory=PolicyChange)

    def changed(self, change: PolicyChange = PolicyChange()) -> "PolicyView":
        """A copy with `change` made, whose analyser may be changed further without touching
        this one (what `simulate` does with a copy it never publishes)."""
        analyser = self.analyser.copy()
        subjects = dict(self.grant_subjects)
        for member, group in change.links_removed:
            analyser.remove_link(member, group)
        for member, group in change.links_added:
            analyser.add_link(member, group)
        for rule in change.removed:
            analyser.remove_rule(rule)
            subjects.pop(int(rule.id), None)
        for rule in change.added:
            analyser.add_rule(rule)
            subjects[int(rule.id)] = rule.sub
        datasets = {**self.datasets, **{facts.id: facts for facts in change.datasets}}
        return PolicyView(analyser, datasets, subjects, self.change.then(change))


class AnalyserView:
    """The analyser's view as a kind of view of the policy state."""

    async def build(self, rows: PolicyRows, state: PolicyState) -> PolicyView:
        """Built in a thread (seconds at scale), as the check index is."""
        return await asyncio.to_thread(self._build, rows)

    @staticmethod
    def _build(rows: PolicyRows) -> PolicyView:
        audience = [p for d in rows.datasets.values() for p in d.audience]
        analyser = ExposureAnalyser(rows.rules, rows.links, audience)
        return PolicyView(analyser, dict(rows.datasets), {int(r.id): r.sub for r in rows.rules})

    def carry(self, view: PolicyView, change: PolicyChange, state: PolicyState) -> PolicyView:
        # the state's datasets: a state derived from a nearby one may lack one (unregistered)
        return replace(view.changed(change), datasets=dict(state.datasets), change=PolicyChange())


ANALYSER = AnalyserView()


async def current_view(session: AsyncSession) -> PolicyView:
    """The committed policy for readers; reloaded only when the version moved."""
    return await states_of(session).current(session, ANALYSER)


async def view_before_change(session: AsyncSession) -> PolicyView:
    """Take the policy write lock; the view of the state this transaction starts from."""
    return await states_of(session).before_change(session, ANALYSER)


async def publish_on_commit(session: AsyncSession, view: PolicyView, *, actor: str | None) -> None:
    """Once this transaction commits, the state it started from with `view.change` made is the
    committed policy at its version, with `view` as its analyser view (the check index and any
    other view follow from it on demand). Its history rows, by `actor`, are written now."""
    published = replace(view, change=PolicyChange())
    await states_of(session).publish_on_commit(
        session, view.change, {ANALYSER: published}, actor=actor
    )
