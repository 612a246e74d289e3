"""Who can read and who did: a principal's effective access now, who could read a dataset
beyond its audience, and a finding's reads."""

import time
from bisect import bisect_right
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog import service as accesslog_service
from app.accesslog.schemas import AccessLogEntryRead, AccessLogPage
from app.datasets import repository as datasets_repository
from app.errors import Conflict, NotFound
from app.exposure import findings, repository
from app.exposure.measure import READ
from app.exposure.schemas import (
    AccessItem,
    ExcessPrincipal,
    ExposureRead,
    FindingKind,
    PrincipalAccess,
)
from app.exposure.view import ANALYSER, current_view
from app.policy.history import service as history_service
from app.policy.snapshot import PolicySnapshot, now


async def principal_access(
    session: AsyncSession,
    snapshot: PolicySnapshot,
    *,
    principal: str,
    after: str | None,
    limit: int,
    when: datetime | None = None,
) -> PrincipalAccess:
    """The registered datasets `principal` can read under `snapshot` now, in dataset-id order,
    after the dataset `after`; at most `limit`, with the cursor of the next page. `when`: the
    instant `snapshot` was rebuilt for (from the history), whose datasets are its own."""
    if when is None:
        at = now()
        ids = [dataset.id for dataset in await datasets_repository.list_all(session)]
    else:
        at = when.timestamp()
        ids = sorted(snapshot.audiences)
    items: list[AccessItem] = []
    for dataset_id in ids:
        if after is not None and dataset_id <= after:
            continue
        outcome, purposes = snapshot.decide_purposes(principal, dataset_id, "read", at)
        if outcome.allowed and outcome.grant_id is not None:
            if len(items) == limit:
                return PrincipalAccess(
                    principal=principal, items=items, next_cursor=items[-1].dataset
                )
            items.append(
                AccessItem(
                    dataset=dataset_id,
                    grant_id=outcome.grant_id,
                    via=list(outcome.via),
                    out_of_audience=outcome.out_of_audience,
                    purposes=purposes,
                )
            )
    return PrincipalAccess(principal=principal, items=items)


async def finding_reads(
    session: AsyncSession, *, finding_id: int, before_id: int | None, limit: int
) -> AccessLogPage:
    """Who did: the allowed reads that went through the finding's grant by principals in its
    excess then (outside the dataset's audience, as each read's check recorded), newest first
    (404 for an unknown finding); the last page says up to which entry the log was archived
    (those reads are in the archive, counted in the dataset's exposure).

    A (dataset, grant) pair has one finding at a time, opened when the grant first put
    principals into the excess and resolved when it no longer did; a later finding of the
    pair takes the reads from its opening on. A read through the grant from outside the
    audience is always in some finding's life: its check's policy gave the grant that excess.
    A `break_glass` finding's are every such read by its principal since the window opened.
    """
    finding = await findings.find(session, finding_id)
    if finding.kind == FindingKind.unused:
        raise Conflict(
            f"finding {finding_id} is an unused-access finding: no principal is in an excess "
            "through it, and no read went through its grant since last_used_at"
        )
    since = until = None
    principal = None
    if finding.kind == FindingKind.break_glass:
        # Everything the principal read of the dataset from outside its audience since the
        # window opened, through whichever grant the check named: with the hold set aside, a
        # grant of their group may be the one named, and the second person reviews the
        # window, not a grant (after it, such reads are denied or are findings of their own).
        principal, since = finding.principal, finding.opened_at
    else:
        openings = await repository.pair_openings(
            session, dataset=finding.dataset, grant_id=finding.grant_id
        )
        index = [i for i, _at in openings].index(finding.id)
        since = openings[index][1] if index > 0 else None  # the first takes what came before
        until = openings[index + 1][1] if index + 1 < len(openings) else None
    rows = await repository.reads_through(
        session,
        dataset=finding.dataset,
        grant_id=finding.grant_id,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit + 1,
        principal=principal,
    )
    items = [AccessLogEntryRead.model_validate(r) for r in rows[:limit]]
    if len(rows) > limit:
        return AccessLogPage(items=items, next_cursor=str(items[-1].id))
    archived = await accesslog_service.archived_through(session)
    return AccessLogPage(items=items, next_cursor=None, archived_through=archived)


async def dataset_exposure(
    session: AsyncSession,
    *,
    dataset_id: str,
    after: str | None,
    limit: int,
    when: datetime | None = None,
) -> ExposureRead:
    """Who could read it beyond its audience (a page), and how many such reads were recorded.
    `when`: as of that instant (the policy rebuilt from its history; the reads recorded up
    to it), else now.

    For the action `read`, as the contract defines it; findings also cover `export` grants."""
    if when is None:
        view = await current_view(session)
        at = time.time()
    else:
        view = await history_service.view_at(session, when, ANALYSER)
        at = when.timestamp()
    facts = view.datasets.get(dataset_id)
    if facts is None:
        moment = "" if when is None else f" at {when.isoformat()}"
        raise NotFound(f"dataset {dataset_id} is not registered{moment}")
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
        out_of_audience_reads=await repository.out_of_audience_reads(
            session, dataset_id, until=when
        ),
        at=when,
    )
