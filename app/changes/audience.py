"""Growth of a `block`-guarded dataset's expanded intended audience.

The guard measures exposure against the audience, so growing the audience silences it: adding
`group:all-employees` to the group a block dataset is meant for makes the whole company
"intended", and no finding ever opens. A dataset PUT that changes `intended_audience`, and a
membership change of a group inside an audience, are therefore judged here: every growth raises
`audience.grown` (the dataset, how many joined, a sample, who), and one adding more than
`ACLAUDIT_AUDIENCE_GROWTH_APPROVAL` principals is refused (409) unless it comes through an
approval (`app.approvals`).

The IdP is never refused (it is the truth about who is in which group): growth it drives is
alerted only. It does not become holds either: holds keep principals off datasets that
*grants* newly reach; a principal who joined the audience is intended by definition, and the
alert (high above the limit) is what puts a person in the loop.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.acceptance import AcceptExposure
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.errors import Conflict
from app.exposure.view import PolicyView

SAMPLE = 10


class AudienceGrowthRefused(Conflict):
    slug = "audience-growth-refused"
    title = "Audience growth needs an approval"


@dataclass(frozen=True)
class Growth:
    dataset: str
    count: int
    sample: list[str]


def grown(before: PolicyView, after: PolicyView, datasets: Iterable[str]) -> list[Growth]:
    """The block-guarded datasets of `datasets` (existing before) whose expanded intended
    audience `after` lets more principals into than `before`. `after` derives from `before`
    (same leaf numbering; leaves new in `after` are above `before`'s)."""
    found = []
    for dataset in sorted(set(datasets)):
        facts, old = after.datasets.get(dataset), before.datasets.get(dataset)
        if facts is None or old is None or facts.guard != "block":
            continue
        added = after.analyser.intended_bits(facts.audience) & ~before.analyser.intended_bits(
            old.audience
        )
        if added:
            count = added.bit_count()
            sample = after.analyser.directory.sample(added, SAMPLE, count)
            found.append(Growth(dataset, count, sample))
    return found


async def judge(
    session: AsyncSession,
    growths: list[Growth],
    *,
    actor: str,
    accept: AcceptExposure | None,
    limit: int | None,
) -> None:
    """Refuse (`AudienceGrowthRefused`) growth beyond `limit` unless approved; alert every
    growth. `limit` None (the IdP, the demo loader): never refused, every growth alerted high."""
    if not growths:
        return
    is_approved = accept is not None and accept.is_approved
    over = [g for g in growths if limit is None or g.count > limit]
    if over and limit is not None and not is_approved:
        named = ", ".join(f"{g.dataset} (+{g.count})" for g in over[:5])
        raise AudienceGrowthRefused(
            f"this change grows the intended audience of block-guarded datasets by more than "
            f"{limit} principals ({named}): the guard would no longer see them as exposure. "
            "Request it with POST /v1/approvals {change, reason, until}: a second principal "
            "with policy:write approves it",
            approvals="/v1/approvals",
            growth=[{"dataset": g.dataset, "added": g.count, "sample": g.sample} for g in over],
        )
    approved = f" (approval {accept.approval_id})" if is_approved and accept else ""
    await alerts_service.emit(
        session,
        [
            AlertEvent(
                type=AlertType.audience_grown,
                severity="high" if growth in over else "medium",
                summary=f"intended audience of {growth.dataset} grew by {growth.count} "
                f"principals ({', '.join(growth.sample)}"
                f"{', ...' if growth.count > len(growth.sample) else ''}) by {actor}{approved}",
                dataset=growth.dataset,
            )
            for growth in growths
        ],
    )
