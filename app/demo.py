"""The demo organisation of SPEC: nested groups, the employee_activity datasets, one bad grant.

Deterministic (seeded) and idempotent: running it again changes nothing. On a fresh database
it is written as a history (`app.demo_story`); on one with history, re-asserted at the present.
"""

import random
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import repository as accesslog_repository
from app.auth.token_cache import TokenCache
from app.changes import datasets as dataset_changes
from app.changes import grants as grant_changes
from app.changes import members as member_changes
from app.checks.batch import CheckInput, Submission
from app.checks.writer import AccessLogWriter
from app.config import Settings
from app.datasets.schemas import DatasetWrite, Guard, Sensitivity
from app.identifiers import Action, Effect
from app.policy.models import Grant
from app.policy.published import states_of
from app.policy.schemas import GrantCreate
from app.policy.snapshot import PolicyCache

ACTOR = "demo"
SEED = 2026
Progress = Callable[[str, int, int], None]
FIRST = [
    "ana",
    "ben",
    "chloe",
    "dev",
    "eli",
    "fay",
    "gus",
    "hana",
    "ivan",
    "jo",
    "kai",
    "lea",
    "max",
    "nia",
    "omar",
    "pia",
    "quinn",
    "raj",
    "sara",
    "tom",
    "uma",
    "vic",
    "wen",
    "yan",
    "zoe",
]
LAST = [
    "adams",
    "baker",
    "chen",
    "diaz",
    "evans",
    "fox",
    "garcia",
    "hill",
    "ito",
    "jones",
    "khan",
    "lopez",
    "mori",
    "ng",
    "okafor",
    "patel",
    "quist",
    "rossi",
    "smith",
    "tanaka",
]
# department -> (teams, people per team)
DEPARTMENTS: dict[str, tuple[list[str], int]] = {
    "engineering": (["platform", "data", "mobile", "web", "infra", "security", "ml-platform"], 90),
    "sales": (["emea", "amer", "apac", "sales-ops"], 110),
    "marketing": (["brand", "growth", "content"], 70),
    "finance": (["accounting", "fp-and-a", "treasury"], 40),
    "people": (["recruiting", "people-ops", "payroll"], 35),
    "research": (["mci-research", "applied-ml", "ux-research"], 30),
    "operations": (["facilities", "it-support", "procurement"], 60),
    "support": (["tier1", "tier2", "support-tooling"], 120),
    "legal": (["contracts", "privacy"], 25),
}
INTENDED = ["group:mci-research", "service:trainer"]
ACTIVITY = {
    "keystrokes": "Per-employee keystroke timing captured by the desktop agent.",
    "mouse_movements": "Cursor paths and click streams captured by the desktop agent.",
    "transcripts": "Meeting and chat transcripts of recorded employees.",
    "performance": "Performance review notes and ratings joined to activity.",
}
TRAINING = "model-training"  # the one purpose the activity data is collected for
# For any purpose (["*"]): a dashboard is a purpose too, so the finding stays critical.
OVER_BROAD = GrantCreate(
    principal="group:all-employees",
    resource="employee_activity.*",
    action=Action.read,
    effect=Effect.allow,
    justification="pilot: activity dashboards for everyone",
)


def build_directory() -> dict[str, list[str]]:
    """group id -> direct members, for the whole company."""
    rng = random.Random(SEED)
    groups: dict[str, list[str]] = {"group:all-employees": []}
    used: set[str] = set()
    for dept, (teams, size) in DEPARTMENTS.items():
        dept_id = f"group:{dept}"
        groups["group:all-employees"].append(dept_id)
        groups[dept_id] = []
        for team in teams:
            team_id = f"group:{team}"
            groups[dept_id].append(team_id)
            people = 12 if team == "mci-research" else rng.randint(size // 2, size + size // 2)
            members: list[str] = []
            while len(members) < people:
                name = f"user:{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 999)}"
                if name not in used:
                    used.add(name)
                    members.append(name)
            groups[team_id] = members
    groups["group:contractors"] = sorted(rng.sample(sorted(used), 40))
    return groups


def datasets() -> dict[str, DatasetWrite]:
    out = {
        f"employee_activity.{name}": DatasetWrite(
            description=text,
            owner="group:mci-research",
            sensitivity=Sensitivity.restricted,
            intended_audience=INTENDED,
        )
        for name, text in ACTIVITY.items()
    }
    out["finance.ledger"] = DatasetWrite(
        description="General ledger.",
        owner="group:finance",
        sensitivity=Sensitivity.confidential,
        intended_audience=["group:finance"],
    )
    out["people.payroll"] = DatasetWrite(
        description="Salaries and bank details.",
        owner="group:payroll",
        sensitivity=Sensitivity.restricted,
        intended_audience=["group:payroll"],
    )
    out["product.usage_metrics"] = DatasetWrite(
        description="Aggregated product usage.",
        owner="group:data",
        sensitivity=Sensitivity.internal,
        intended_audience=["group:all-employees"],
        guard=Guard.alert,
    )
    out["public.handbook"] = DatasetWrite(
        description="The employee handbook.",
        owner="group:people-ops",
        sensitivity=Sensitivity.public,
        intended_audience=["group:all-employees"],
    )
    return out


def grants() -> list[GrantCreate]:
    why = "research charter MCI-7, approved by the privacy office"
    return [
        # The activity data is collected for training, and read for training only (the
        # datasets, restricted, require every check to say why it reads).
        GrantCreate(
            principal="group:mci-research",
            resource="employee_activity.*",
            action=Action.read,
            effect=Effect.allow,
            purposes=[TRAINING],
            justification=why,
        ),
        GrantCreate(
            principal="service:trainer",
            resource="employee_activity.*",
            action=Action.read,
            effect=Effect.allow,
            purposes=[TRAINING],
            justification=why,
        ),
        GrantCreate(
            principal="service:activity-store",
            resource="employee_activity.*",
            action=Action.write,
            effect=Effect.allow,
            justification="the store writes what the agent captures",
        ),
        GrantCreate(
            principal="group:contractors",
            resource="finance.*",
            action=Action.read,
            effect=Effect.deny,
        ),
        GrantCreate(
            principal="group:finance",
            resource="finance.*",
            action=Action.read,
            effect=Effect.allow,
            justification="finance team works the ledger",
        ),
        GrantCreate(
            principal="group:payroll",
            resource="people.payroll",
            action=Action.read,
            effect=Effect.allow,
            justification="payroll runs",
        ),
        GrantCreate(
            principal="group:all-employees",
            resource="product.*",
            action=Action.read,
            effect=Effect.allow,
        ),
        GrantCreate(
            principal="group:all-employees",
            resource="public.*",
            action=Action.read,
            effect=Effect.allow,
        ),
        OVER_BROAD,
    ]


async def _was_granted(session: AsyncSession, g: GrantCreate) -> bool:
    """Whether `g` was ever made here, standing or revoked: one revoked since (the over-broad
    grant the walkthrough revokes) is not the demo's to make again."""
    query = select(Grant.id).where(
        Grant.principal == g.principal,
        Grant.resource == g.resource,
        Grant.action == g.action.value,
        Grant.effect == g.effect.value,
    )
    return (await session.execute(query)).first() is not None


async def set_up_directory(
    session: AsyncSession, groups: dict[str, list[str]], actor: str, progress: Progress
) -> None:
    # Teams first, so departments and all-employees nest groups that already hold people.
    ordered = sorted(
        groups, key=lambda g: (g == "group:all-employees", g in {f"group:{d}" for d in DEPARTMENTS})
    )
    for done, gid in enumerate(ordered, 1):
        await member_changes.change_members(session, gid=gid, replace_with=groups[gid], actor=actor)
        progress("groups", done, len(ordered))


async def grant_missing(
    session: AsyncSession, planned: list[GrantCreate], actor: str, progress: Progress
) -> int:
    """Create the planned grants never made yet (standing or revoked); how many."""
    created = 0
    for done, grant in enumerate(planned, 1):
        if not await _was_granted(session, grant):
            await grant_changes.create_grant(session, body=grant, actor=actor)
            created += 1
        progress("grants", done, len(planned))
    return created


async def register(
    session: AsyncSession,
    sets: dict[str, DatasetWrite],
    actor: str,
    progress: Progress,
    *,
    guarded: bool = True,
) -> None:
    for done, (dataset_id, body) in enumerate(sets.items(), 1):
        await dataset_changes.put_dataset(
            session, dataset_id=dataset_id, body=body, actor=actor, guarded=guarded
        )
        progress("datasets", done, len(sets))


def counts(
    groups: dict[str, list[str]], sets: dict[str, DatasetWrite], created: int
) -> dict[str, int]:
    users = {m for members in groups.values() for m in members if m.startswith("user:")}
    return {
        "users": len(users),
        "groups": len(groups),
        "datasets": len(sets),
        "grants_created": created,
    }


async def load(session: AsyncSession, progress: Progress) -> dict[str, int]:
    """Re-assert the demo organisation at the present (a database with history: on a fresh one
    `app.demo_story.tell` writes it as it happened); ``progress(stage, done, total)``."""
    groups = build_directory()
    await set_up_directory(session, groups, ACTOR, progress)
    created = await grant_missing(session, grants(), ACTOR, progress)
    sets = datasets()
    # Registered over the over-broad grant, if it was made here: the findings open
    # (unaccepted) instead of the registration being refused.
    await register(session, sets, ACTOR, progress, guarded=False)
    return counts(groups, sets, created)


async def record_reads(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    progress: Progress,
) -> int:
    """A day of reads, so the finding has reads behind it: the trainer and researchers read as
    intended, engineers browse through the over-broad grant, a contractor is refused.

    Only on an empty access log (the log is append-only, so re-running adds nothing).
    """
    async with maker() as session:
        if (await accesslog_repository.get_head(session)).last_id:
            return 0
        states = states_of(session)
    reads = demo_reads(build_directory())
    writer = AccessLogWriter(maker, PolicyCache(states), TokenCache(), settings)
    writer.start()
    try:
        for done in range(0, len(reads), 10):
            await writer.submit(Submission(reads[done : done + 10], ACTOR, None))
            progress("reads", min(done + 10, len(reads)), len(reads))
    finally:
        await writer.stop()
    return len(reads)


def demo_reads(groups: dict[str, list[str]]) -> list[CheckInput]:
    """The demo's day of reads (deterministic), each returning three employees' records."""
    employees = sorted({m for ms in groups.values() for m in ms if m.startswith("user:")})
    activity = [f"employee_activity.{name}" for name in ACTIVITY]
    rng = random.Random(SEED + 1)

    def read(principal: str, dataset: str, purpose: str) -> CheckInput:
        subjects = tuple(rng.sample(employees, 3))
        return CheckInput(principal, dataset, "read", purpose, None, subjects)

    reads = [read("service:trainer", rng.choice(activity), TRAINING) for _ in range(40)]
    reads += [read(m, rng.choice(activity), TRAINING) for m in groups["group:mci-research"][:6]]
    for engineer in rng.sample(groups["group:data"] + groups["group:web"], 12):
        reads.append(read(engineer, rng.choice(activity), "dashboard"))
    reads += [read(c, "finance.ledger", "curiosity") for c in groups["group:contractors"][:3]]
    return reads


def an_employee_who_was_read() -> str:
    """A demo employee whose records the demo's reads returned (`aclaudit dev-idp` signs them
    in, so `/v1/me/reads` shows real entries)."""
    return demo_reads(build_directory())[0].data_subjects[0]
