"""Findings: open, refresh and resolve them from the analyser, before a change is answered.

Every mutation loads the committed policy once (a `PolicyView`), applies its change to a copy
of the analyser, and reconciles the findings of the datasets the change can affect. On
``guard: block`` datasets a change that lets anyone new in beyond the audience is refused (409,
rolled back) unless the caller accepts the exposure.
"""

import time
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.datasets import repository as datasets_repository
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetRead, DatasetWrite
from app.db import utcnow
from app.directory import repository as directory_repository
from app.directory import service as directory_service
from app.directory.schemas import GroupRead
from app.errors import Conflict, InvalidInput, NotFound
from app.exposure import repository
from app.exposure.analyser import ExposureAnalyser, datasets_covered
from app.exposure.models import Finding
from app.exposure.schemas import (
    ExcessPath,
    ExcessPrincipal,
    ExposureRead,
    FindingChanges,
    FindingRead,
    FindingStatus,
    ScanResult,
    Severity,
    SimulateRequest,
    SimulateResult,
)
from app.policy import repository as policy_repository
from app.policy import service as policy_service
from app.policy import version as policy_version
from app.policy.schemas import AcceptExposure, GrantCreate, GrantRead, GrantStatus
from app.policy.snapshot import to_rule

READ = "read"
SAMPLE = 20
PATHS = 5


@dataclass(frozen=True)
class DatasetFacts:
    id: str
    sensitivity: str
    audience: tuple[str, ...]
    guard: str


@dataclass(frozen=True)
class PolicyView:
    """The policy as the analyser sees it, plus the datasets' audiences."""

    analyser: ExposureAnalyser
    datasets: dict[str, DatasetFacts]
    grant_subjects: dict[int, str]

    def changed(self) -> "PolicyView":
        """A copy whose analyser may be changed without touching this one."""
        return replace(
            self,
            analyser=self.analyser.copy(),
            datasets=dict(self.datasets),
            grant_subjects=dict(self.grant_subjects),
        )


class ExposureRefused(Conflict):
    slug = "exposure-refused"
    title = "Change would expose a guarded dataset"


async def load_view(session: AsyncSession) -> PolicyView:
    grants = await policy_repository.list_unrevoked(session)
    edges = await directory_repository.all_edges(session)
    datasets = await datasets_repository.list_all(session)
    facts = {
        d.id: DatasetFacts(d.id, d.sensitivity, tuple(d.intended_audience), d.guard)
        for d in datasets
    }
    audience = [p for d in facts.values() for p in d.audience]
    analyser = ExposureAnalyser([to_rule(g) for g in grants], edges, audience)
    return PolicyView(analyser, facts, {g.id: g.principal for g in grants})


class _ViewCache:
    """The newest committed view this process knows, and its policy version."""

    def __init__(self) -> None:
        self.version = -1
        self.view: PolicyView | None = None


# One cache per engine (per database), so tests and tools with several databases never mix.
_caches: "WeakKeyDictionary[Engine, _ViewCache]" = WeakKeyDictionary()


def _cache(session: AsyncSession) -> _ViewCache:
    engine = session.sync_session.get_bind()
    assert isinstance(engine, Engine)
    cache = _caches.get(engine)
    if cache is None:
        cache = _caches[engine] = _ViewCache()
    return cache


async def current_view(session: AsyncSession) -> PolicyView:
    """The committed policy for readers; reloaded only when the version moved."""
    cache = _cache(session)
    version = await policy_version.current(session)
    if cache.view is None or cache.version != version:
        view = await load_view(session)
        cache.version, cache.view = version, view
        return view
    return cache.view


async def view_before_change(session: AsyncSession) -> PolicyView:
    """Take the policy write lock; the view of the state this transaction starts from.

    The cached view is reused when it is exactly the last committed version; otherwise (another
    worker wrote, or this transaction already changed something) it is loaded.
    """
    cache = _cache(session)
    version = await policy_version.advance(session)
    dirty = session.info.get(_DIRTY) is session.sync_session.get_transaction()
    if cache.view is not None and cache.version == version - 1 and not dirty:
        return cache.view
    return await load_view(session)


def publish_on_commit(session: AsyncSession, view: PolicyView) -> None:
    """Once this transaction commits, ``view`` is the committed policy at its version."""
    cache = _cache(session)
    version = int(session.info[policy_version.TAKEN][1])
    session.info[_DIRTY] = session.sync_session.get_transaction()
    pending = {"live": True}

    def publish(_: Any) -> None:
        if pending["live"]:
            cache.version, cache.view = version, view
        pending["live"] = False

    def discard(_: Any) -> None:
        pending["live"] = False

    event.listen(session.sync_session, "after_commit", publish, once=True)
    event.listen(session.sync_session, "after_rollback", discard, once=True)


_DIRTY = "exposure_view_dirty"


def severity_for(sensitivity: str, reach: int) -> Severity:
    """A restricted dataset readable by more than a handful outside its audience is critical."""
    if sensitivity == "restricted":
        return Severity.critical if reach >= 10 else Severity.high
    if sensitivity == "confidential":
        return Severity.high if reach >= 50 else Severity.medium
    if sensitivity == "internal":
        return Severity.medium if reach >= 500 else Severity.low
    return Severity.low


def to_read(finding: Finding) -> FindingRead:
    return FindingRead.model_validate(finding)


def _paths(
    view: PolicyView, dataset: str, grant_id: int, sample: list[str], now: float
) -> list[ExcessPath]:
    out = []
    for principal in sample[:PATHS]:
        for rule, via in view.analyser.paths_for(principal, dataset, READ, now):
            if rule.id == str(grant_id):
                out.append(ExcessPath(principal=principal, via=list(via)))
                break
    return out


def affected_by_resource(view: PolicyView, resource: str) -> list[str]:
    return datasets_covered(resource, view.datasets)


def affected_by_membership(views: Iterable[PolicyView], group: str) -> list[str]:
    """Datasets whose exposure may change with `group`'s members: those its grants reach, and
    those whose intended audience it is part of (joining or leaving it moves people in or out)."""
    found: dict[str, None] = {}
    for view in views:
        audiences = {id: facts.audience for id, facts in view.datasets.items()}
        found.update(
            dict.fromkeys(
                view.analyser.datasets_affected_by_membership(group, view.datasets, audiences)
            )
        )
    return sorted(found)


async def reconcile(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    dataset_ids: Iterable[str],
    actor: str,
    accept: AcceptExposure | None = None,
    guarded: bool = True,
    now: float | None = None,
) -> FindingChanges:
    """Bring the findings of ``dataset_ids`` in line with ``after``.

    ``before`` must be the committed state ``after`` was derived from (same leaf numbering), so
    a finding that gains principals is recognised as widened.
    """
    at = time.time() if now is None else now
    stamp = datetime.fromtimestamp(at, UTC)
    ids = sorted(d for d in set(dataset_ids) if d in after.datasets)
    active: dict[tuple[str, int], Finding] = {
        (f.dataset, f.grant_id): f for f in await repository.active_for(session, ids)
    }
    opened: list[Finding] = []
    refused: list[FindingRead] = []
    for dataset_id in ids:
        facts = after.datasets[dataset_id]
        analyser = after.analyser
        exposure = analyser.exposure(dataset_id, READ, at, analyser.intended_bits(facts.audience))
        previous = None
        for rule_id, bits in exposure.by_grant.items():
            if not bits:
                continue
            grant_id = int(rule_id)
            sample = analyser.directory.sample(bits, SAMPLE)
            count = bits.bit_count()
            finding = active.pop((dataset_id, grant_id), None)
            widened = False
            if guarded:
                if previous is None and dataset_id in before.datasets:
                    before_facts = before.datasets[dataset_id]
                    previous = before.analyser.exposure(
                        dataset_id, READ, at, before.analyser.intended_bits(before_facts.audience)
                    )
                widened = bool(bits & ~(previous.by_grant.get(rule_id, 0) if previous else 0))
                # An acceptance covers the exposure as it was: letting more in needs a new one.
                if widened and facts.guard == "block" and accept is None:
                    refused.append(
                        FindingRead(
                            id=finding.id if finding else None,
                            dataset=dataset_id,
                            grant_id=grant_id,
                            principal=after.grant_subjects.get(grant_id, ""),
                            excess_count=count,
                            excess_sample=sample,
                            paths=_paths(after, dataset_id, grant_id, sample, at),
                            severity=severity_for(facts.sensitivity, count),
                            status=FindingStatus.open,
                            opened_at=None,
                        )
                    )
                    continue
            paths = [p.model_dump() for p in _paths(after, dataset_id, grant_id, sample, at)]
            if finding is None:
                finding = Finding(
                    dataset=dataset_id,
                    grant_id=grant_id,
                    principal=after.grant_subjects.get(grant_id, ""),
                    status=FindingStatus.open.value,
                    opened_at=stamp,
                )
                if accept is not None:
                    finding.status = FindingStatus.accepted.value
                    finding.accepted_by = actor
                    finding.reason = accept.reason
                    finding.until = accept.until
                session.add(finding)
                opened.append(finding)
            elif widened and accept is not None:
                finding.status = FindingStatus.accepted.value
                finding.accepted_by = actor
                finding.reason = accept.reason
                finding.until = accept.until
            finding.excess_count = count
            finding.excess_sample = sample
            finding.paths = paths
            finding.severity = severity_for(facts.sensitivity, count).value
            finding.updated_at = stamp
    if refused:
        raise ExposureRefused(
            f"this change would open or widen {len(refused)} finding(s) on block-guarded datasets "
            f"({', '.join(sorted({f.dataset for f in refused})[:5])}): principals outside the "
            "intended audience could read them. Narrow the change, or send accept_exposure "
            "{reason, until} to accept the exposure knowingly",
            findings=[f.model_dump(mode="json") for f in refused],
        )
    resolved = list(active.values())
    for finding in resolved:
        finding.status = FindingStatus.resolved.value
        finding.resolved_at = stamp
        finding.updated_at = stamp
    await session.flush()
    changes = FindingChanges(
        findings_opened=[to_read(f) for f in opened],
        findings_resolved=[to_read(f) for f in resolved],
    )
    await alerts_service.emit(
        session,
        [
            finding_alert(
                f,
                AlertType.finding_accepted if f.status == "accepted" else AlertType.finding_opened,
            )
            for f in changes.findings_opened
        ]
        + [finding_alert(f, AlertType.finding_resolved) for f in changes.findings_resolved],
        stamp,
    )
    return changes


def finding_alert(finding: FindingRead, kind: AlertType) -> AlertEvent:
    verb = {
        AlertType.finding_opened: "opened",
        AlertType.finding_resolved: "resolved",
        AlertType.finding_accepted: "accepted",
        AlertType.finding_reopened: "reopened",
    }[kind]
    return AlertEvent(
        type=kind,
        severity=finding.severity.value,
        summary=f"{finding.severity.value} finding {verb}: {finding.principal} (grant "
        f"{finding.grant_id}) lets {finding.excess_count} principals outside the audience read "
        f"{finding.dataset}",
        dataset=finding.dataset,
        finding_id=finding.id,
    )


# -- mutations: each re-analyses what it touches before its response --------------------------


async def create_grant(
    session: AsyncSession, *, body: GrantCreate, actor: str
) -> tuple[GrantRead, FindingChanges]:
    if body.accept_exposure is not None and body.accept_exposure.until <= utcnow():
        raise InvalidInput("body.accept_exposure.until", "must be in the future")
    before = await view_before_change(session)
    grant = await policy_service.create_grant(session, body=body, actor=actor)
    after = before.changed()
    after.analyser.add_rule(to_rule(grant))
    after.grant_subjects[grant.id] = grant.principal
    changes = await reconcile(
        session,
        before=before,
        after=after,
        dataset_ids=affected_by_resource(after, grant.resource),
        actor=actor,
        accept=body.accept_exposure,
    )
    publish_on_commit(session, after)
    return grant, changes


async def revoke_grant(
    session: AsyncSession, *, grant_id: int, actor: str, accept: AcceptExposure | None = None
) -> tuple[GrantRead, FindingChanges]:
    before = await view_before_change(session)
    grant = await policy_service.revoke_grant(session, grant_id=grant_id, actor=actor)
    after = before.changed()
    after.analyser.remove_rule(to_rule(grant))
    changes = await reconcile(
        session,
        before=before,
        after=after,
        dataset_ids=affected_by_resource(after, grant.resource),
        actor=actor,
        accept=accept,  # revoking a deny widens access too
    )
    publish_on_commit(session, after)
    return grant, changes


async def change_members(
    session: AsyncSession,
    *,
    gid: str,
    add: list[str] | None = None,
    remove: str | None = None,
    replace_with: list[str] | None = None,
    actor: str,
    accept: AcceptExposure | None = None,
) -> tuple[GroupRead, FindingChanges]:
    """Add one member, remove one, or replace the set; refused on guarded over-exposure."""
    before = await view_before_change(session)
    old = set(await directory_repository.list_members(session, gid))
    if replace_with is not None:
        group = await directory_service.replace_members(
            session, gid=gid, members=replace_with, actor=actor
        )
    elif remove is not None:
        group = await directory_service.remove_member(session, gid=gid, member=remove)
    else:
        assert add is not None
        group = await directory_service.add_member(session, gid=gid, member=add[0], actor=actor)
    new = set(group.members)
    after = before.changed()
    for member in old - new:
        after.analyser.remove_link(member, gid)
    for member in new - old:
        after.analyser.add_link(member, gid)
    changes = await reconcile(
        session,
        before=before,
        after=after,
        dataset_ids=affected_by_membership((before, after), gid),
        actor=actor,
        accept=accept,
    )
    publish_on_commit(session, after)
    return group, changes


async def put_dataset(
    session: AsyncSession, *, dataset_id: str, body: DatasetWrite, actor: str
) -> tuple[DatasetRead, bool, FindingChanges]:
    """Registering or re-scoping a dataset reports its exposure; it never refuses."""
    before = await view_before_change(session)
    dataset, created = await datasets_service.put_dataset(
        session, dataset_id=dataset_id, body=body, actor=actor
    )
    after = before.changed()
    after.datasets[dataset.id] = DatasetFacts(
        dataset.id, dataset.sensitivity.value, tuple(dataset.intended_audience), dataset.guard.value
    )
    changes = await reconcile(
        session, before=before, after=after, dataset_ids=[dataset.id], actor=actor, guarded=False
    )
    publish_on_commit(session, after)
    return dataset, created, changes


async def accept_finding(
    session: AsyncSession, *, finding_id: int, body: AcceptExposure, actor: str
) -> FindingRead:
    finding = await repository.get(session, finding_id)
    if finding is None:
        raise NotFound(f"finding {finding_id} does not exist")
    if finding.status == FindingStatus.resolved:
        raise Conflict(f"finding {finding_id} is resolved; there is nothing to accept")
    if body.until <= utcnow():
        raise InvalidInput("body.until", "must be in the future")
    finding.status = FindingStatus.accepted.value
    finding.accepted_by, finding.reason, finding.until = actor, body.reason, body.until
    finding.updated_at = utcnow()
    await session.flush()
    accepted = to_read(finding)
    await alerts_service.emit(session, [finding_alert(accepted, AlertType.finding_accepted)])
    return accepted


async def reopen_expired_acceptances(session: AsyncSession) -> list[FindingRead]:
    """Accepted findings whose ``until`` has passed are open again."""
    now = utcnow()
    reopened = []
    for finding in await repository.all_active(session):
        if finding.status == FindingStatus.accepted and finding.until and finding.until <= now:
            finding.status = FindingStatus.open.value
            finding.updated_at = now
            reopened.append(finding)
    await session.flush()
    reads = [to_read(f) for f in reopened]
    await alerts_service.emit(
        session, [finding_alert(f, AlertType.finding_reopened) for f in reads]
    )
    return reads


@dataclass(frozen=True)
class TimeEvents:
    """What the passage of time changed: recorded expiries, reopened acceptances, findings."""

    expired_grants: list[int]
    reopened: list[FindingRead]
    changes: FindingChanges


async def record_time_events(session: AsyncSession, *, actor: str) -> TimeEvents:
    """Record grants whose ``expires_at`` passed and reopen acceptances whose ``until`` passed.

    Runs under the policy write lock, so concurrent sweepers (and policy writers) take turns
    and each event is recorded once. An expired grant already never allows; here it becomes a
    ``grant.expired`` alert and the datasets it covered are re-analysed, which resolves the
    findings it caused.
    """
    view = await view_before_change(session)
    stamp = utcnow()
    reopened = await reopen_expired_acceptances(session)
    lapsed = await policy_repository.list_lapsed(session, stamp)
    touched: dict[str, None] = {}
    events = []
    for grant in lapsed:
        grant.expired_at = stamp
        covered = affected_by_resource(view, grant.resource)
        touched.update(dict.fromkeys(covered))
        events.append(
            AlertEvent(
                type=AlertType.grant_expired,
                severity="low",
                summary=f"grant {grant.id} ({grant.effect} {grant.principal} {grant.action} "
                f"{grant.resource}) expired at {grant.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                dataset=covered[0] if len(covered) == 1 else None,
            )
        )
    await session.flush()
    await alerts_service.emit(session, events, stamp)
    changes = await reconcile(
        session,
        before=view,
        after=view,
        dataset_ids=touched,
        actor=actor,
        guarded=False,
        now=stamp.timestamp(),
    )
    publish_on_commit(session, view)
    return TimeEvents([g.id for g in lapsed], reopened, changes)


async def scan(session: AsyncSession, *, actor: str) -> ScanResult:
    """Full re-analysis of every dataset (also expires lapsed acceptances)."""
    started = time.perf_counter()
    await reopen_expired_acceptances(session)
    view = await view_before_change(session)  # also serialises with policy writers
    changes = await reconcile(
        session,
        before=view,
        after=view,
        dataset_ids=list(view.datasets),
        actor=actor,
        guarded=False,
    )
    publish_on_commit(session, view)
    return ScanResult(
        datasets=len(view.datasets),
        opened=len(changes.findings_opened),
        resolved=len(changes.findings_resolved),
        open_findings=await repository.count_open(session),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )


async def simulate(session: AsyncSession, *, body: SimulateRequest) -> SimulateResult:
    """What adding and removing grants would open and resolve. Changes nothing."""
    before = await current_view(session)
    after = before.changed()
    touched: set[str] = set()
    for index, proposal in enumerate(body.add):
        proposed_id = -(index + 1)
        grant = GrantRead(
            id=proposed_id,
            principal=proposal.principal,
            resource=proposal.resource,
            action=proposal.action,
            effect=proposal.effect,
            expires_at=proposal.expires_at,
            justification=None,
            created_by="simulate",
            created_at=utcnow(),
            revoked_at=None,
            revoked_by=None,
            status=GrantStatus.active,
        )
        after.analyser.add_rule(to_rule(grant))
        after.grant_subjects[proposed_id] = proposal.principal
        touched.update(affected_by_resource(after, proposal.resource))
    for position, grant_id in enumerate(body.remove):
        row = await policy_repository.get(session, grant_id)
        if row is None or row.revoked_at is not None:
            raise InvalidInput(f"body.remove.{position}", f"grant {grant_id} is not active")
        after.analyser.remove_rule(to_rule(row))
        touched.update(affected_by_resource(after, row.resource))
    at = time.time()
    ids = sorted(touched)
    active = {(f.dataset, f.grant_id): f for f in await repository.active_for(session, ids)}
    would_open: list[FindingRead] = []
    still: set[tuple[str, int]] = set()
    for dataset_id in ids:
        facts = after.datasets[dataset_id]
        intended = after.analyser.intended_bits(facts.audience)
        exposure = after.analyser.exposure(dataset_id, READ, at, intended)
        for rule_id, bits in exposure.by_grant.items():
            if not bits:
                continue
            key = (dataset_id, int(rule_id))
            still.add(key)
            if key in active:
                continue
            sample = after.analyser.directory.sample(bits, SAMPLE)
            count = bits.bit_count()
            would_open.append(
                FindingRead(
                    id=None,
                    dataset=dataset_id,
                    grant_id=key[1] if key[1] > 0 else None,
                    principal=after.grant_subjects.get(key[1], ""),
                    excess_count=count,
                    excess_sample=sample,
                    paths=_paths(after, dataset_id, key[1], sample, at),
                    severity=severity_for(facts.sensitivity, count),
                    status=FindingStatus.open,
                    opened_at=None,
                )
            )
    would_resolve = [to_read(f) for key, f in sorted(active.items()) if key not in still]
    return SimulateResult(would_open=would_open, would_resolve=would_resolve)


# -- reads ---------------------------------------------------------------------------------------


async def get_finding(session: AsyncSession, finding_id: int) -> FindingRead:
    finding = await repository.get(session, finding_id)
    if finding is None:
        raise NotFound(f"finding {finding_id} does not exist")
    return to_read(finding)


async def list_findings(
    session: AsyncSession,
    *,
    status: str | None,
    severity: str | None,
    dataset: str | None,
    after_id: int | None,
    limit: int,
) -> tuple[list[FindingRead], str | None]:
    rows = await repository.list_page(
        session,
        status=status,
        severity=severity,
        dataset=dataset,
        after_id=after_id,
        limit=limit + 1,
    )
    page = [to_read(f) for f in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit and page[-1].id else None)


async def dataset_exposure(
    session: AsyncSession, *, dataset_id: str, after: str | None, limit: int
) -> ExposureRead:
    """Who could read it beyond its audience (a page), and how many such reads were recorded."""
    view = await current_view(session)
    facts = view.datasets.get(dataset_id)
    if facts is None:
        raise NotFound(f"dataset {dataset_id} is not registered")
    at = time.time()
    analyser = view.analyser
    intended = analyser.intended_bits(facts.audience)
    exposure = analyser.exposure(dataset_id, READ, at, intended)
    excess = sorted(analyser.directory.names(exposure.excess))
    start = 0 if after is None else bisect_right(excess, after)
    page = excess[start : start + limit]
    items = []
    for principal in page:
        reach = analyser.paths_for(principal, dataset_id, READ, at)
        rule, via = min(reach, key=lambda r: len(r[1]))
        items.append(ExcessPrincipal(principal=principal, grant_id=int(rule.id), via=list(via)))
    return ExposureRead(
        dataset=dataset_id,
        sensitivity=facts.sensitivity,
        guard=facts.guard,
        intended_count=intended.bit_count(),
        effective_count=exposure.effective_count,
        excess_count=exposure.excess_count,
        items=items,
        next_cursor=page[-1] if start + limit < len(excess) and page else None,
        out_of_audience_reads=await repository.out_of_audience_reads(session, dataset_id),
    )
