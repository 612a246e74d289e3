"""The demo organisation told as the incident happened, on a fresh database: each step its own
committed transaction at a past instant (`app.db.dated`), by the person who made it.

- 6 weeks ago, set up by `demo`: the directory, the datasets (the employee_activity ones
  restricted, so block-guarded, for group:mci-research and service:trainer), the grants meant.
- 3 weeks ago, `user:dana.reyes` grants group:all-employees read on employee_activity.*: the
  block guard refuses it without an acceptance, so she requests one for a pilot that ends a
  week ago, and `user:sam.okafor` approves it (two-person control, `app.approvals`).
- 2.5 weeks ago she adds an engineer to group:mci-research; 1.5 weeks ago she removes them
  again (still in all-employees, they are exposed again: accepted until the pilot's end).
- A minute past the pilot's end, the sweeper reopens the lapsed acceptances: the findings are
  open, the grant still stands.

The reads (`demo.record_reads`) come after, at the real instant: since the grant.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import demo, policy_version
from app.acceptance import AcceptExposure
from app.accesslog import repository as accesslog_repository
from app.alerts import repository as alerts_repository
from app.approvals import service as approvals_service
from app.approvals.schemas import ChangeRequest
from app.changes import members as member_changes
from app.db import begin_write, dated
from app.errors import Conflict
from app.exposure import scan
from app.operations import sweeper
from app.policy_version import PolicyVersionRecord

ADMIN = "user:dana.reyes"
APPROVER = "user:sam.okafor"  # the second person: accepting exposure on a block dataset
RESEARCH = "group:mci-research"
PILOT = "pilot: activity dashboards for everyone"
# days before the story is told
SET_UP, GRANTED, JOINED, LEFT, PILOT_ENDS = 42.0, 21.0, 17.5, 10.5, 7.0


def engineer() -> str:
    """The engineer who was in the research group for a week: one of those whose reads went
    through the over-broad grant."""
    reads = demo.demo_reads(demo.build_directory())
    return next(r.principal for r in reads if r.purpose == "dashboard")


class StoryInterrupted(Conflict):
    slug = "demo-story-interrupted"
    title = "The demo's history was interrupted"


async def _mark(session: AsyncSession) -> tuple[int, int, int]:
    """Where the policy, the access log and the alerts stand."""
    return (
        await policy_version.current(session),
        (await accesslog_repository.get_head(session)).last_id,
        await alerts_repository.head(session),
    )


async def _refuse_unless_last(session: AsyncSession, left: tuple[int, int, int]) -> None:
    """Each step goes after the one before it and nothing else: a change, read or alert made
    meanwhile (at the real instant: a sweeper serving this database reopening the lapsed
    acceptance) would precede the step's past one."""
    if await _mark(session) != left:
        raise StoryInterrupted(
            "the database changed while `aclaudit demo` wrote its history (a server's "
            "sweeper?); the steps written are kept: start again on a fresh database, without "
            "`aclaudit serve` running on it until the demo is loaded"
        )


async def tell(
    maker: async_sessionmaker[AsyncSession], progress: demo.Progress
) -> dict[str, int] | None:
    """Write the demo's history if the database is fresh (else None: nothing written)."""
    now = datetime.now(UTC)

    def ago(days: float) -> datetime:
        return now - timedelta(days=days)

    groups = demo.build_directory()
    sets = demo.datasets()
    planned = [g for g in demo.grants() if g != demo.OVER_BROAD]
    left: tuple[int, int, int] | None = None

    async def step(days: float, work: Callable[[AsyncSession], Awaitable[object]]) -> bool:
        nonlocal left
        start = ago(days)
        with dated(start):
            async with maker() as session, session.begin():
                await begin_write(session)
                await policy_version.hold(session)
                if left is None:
                    # Fresh: no policy change, read or alert yet, so the story's past is the
                    # database's own.
                    if await _mark(session) != (0, 0, 0):
                        return False
                    # The empty policy (version 0, recorded at the migration) held since before
                    # the story: on a fresh database nothing was ever granted or joined.
                    await session.execute(
                        update(PolicyVersionRecord)
                        .where(PolicyVersionRecord.version == 0, PolicyVersionRecord.at > start)
                        .values(at=start)
                    )
                else:
                    await _refuse_unless_last(session, left)
                await work(session)
                left = await _mark(session)
        return True

    if not await step(SET_UP, lambda s: demo.set_up_directory(s, groups, demo.ACTOR, progress)):
        return None
    await step(SET_UP - 1 / 24, lambda s: demo.register(s, sets, demo.ACTOR, progress))
    created = 0

    async def grant_meant(session: AsyncSession) -> None:
        nonlocal created
        created = await demo.grant_missing(session, planned, demo.ACTOR, progress)

    await step(SET_UP - 2 / 24, grant_meant)
    who = engineer()

    async def grant_over_broad(session: AsyncSession) -> None:
        # (made within the step: its expiry is in the future of the step's instant)
        pilot = AcceptExposure(reason=PILOT, until=ago(PILOT_ENDS))
        body = demo.OVER_BROAD.model_dump(mode="json", exclude={"accept_exposure"})
        change = ChangeRequest(method="POST", path="/v1/grants", body=body)
        await approvals_service.record_approved(
            session, change=change, accept=pilot, requested_by=ADMIN, approved_by=APPROVER
        )

    async def join(session: AsyncSession) -> None:
        await member_changes.change_members(session, gid=RESEARCH, add=[who], actor=ADMIN)

    async def leave(session: AsyncSession) -> None:
        # Out of the audience again but still in all-employees: the guard asks to accept it.
        still = AcceptExposure(reason=f"{PILOT} (left {RESEARCH})", until=ago(PILOT_ENDS))
        path = f"/v1/groups/{RESEARCH.removeprefix('group:')}/members/{who}"
        await approvals_service.record_approved(
            session,
            change=ChangeRequest(method="DELETE", path=path),
            accept=still,
            requested_by=ADMIN,
            approved_by=APPROVER,
        )

    await step(GRANTED, grant_over_broad)
    await step(JOINED, join)
    await step(LEFT, leave)
    await step(
        PILOT_ENDS - 1 / (24 * 60),
        lambda s: scan.record_time_events(s, actor=sweeper.ACTOR),
    )
    return demo.counts(groups, sets, created + 1)
