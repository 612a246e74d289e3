"""Instants as id bounds: the group commit never stamps an entry before the head's instant, and
``?since=``/``?until=`` (turned into id bounds from the head's ``monotone_from`` on) select
exactly the entries that comparing ``at`` selects, older out-of-order entries included."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import repository
from app.accesslog.models import AccessLogEntry, AccessLogHead
from tests.checks.test_check import check_body, seed

BASE = datetime(2026, 3, 1, tzinfo=UTC)
PRINCIPALS = ("user:a", "user:b", "user:c")


def _entry(entry_id: int, at: datetime, rng: random.Random) -> dict[str, object]:
    return {
        "id": entry_id,
        "decision_id": str(uuid.uuid4()),
        "at": at,
        "principal": rng.choice(PRINCIPALS),
        "dataset": "d.x",
        "action": "read",
        "purpose": None,
        "decision": "allow",
        "reason": {"code": "granted"},
        "out_of_audience": False,
        "data_subjects": [],
        "request_id": None,
        "caller": "t",
        "policy_version": 1,
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
    }


async def _write_log(
    maker: async_sessionmaker[AsyncSession],
    rng: random.Random,
    older: int,
    newer: int,
    step: int = 0,
) -> list[datetime]:
    """Entries 1..`older` at shuffled instants (as before 0020), then `newer` entries at
    non-decreasing instants from the newest of those on (ties included); the head says so.
    With a `step`, the last `step` of those follow a clock stepped back (by up to 20 minutes,
    into the older entries' instants), as the group commit writes them: monotone again from
    the step's first entry, which the head's `monotone_from` names."""
    older_at = [BASE + timedelta(seconds=rng.randrange(0, 600)) for _ in range(older)]
    at = max(older_at, default=BASE)
    newer_at = []
    for i in range(newer):
        if step and i == newer - step:
            at -= timedelta(seconds=rng.randrange(1, 1200))
        at += timedelta(seconds=rng.choice((0, 0, 1, 7, 30)))
        newer_at.append(at)
    instants = older_at + newer_at
    rows = [_entry(i, a, rng) for i, a in enumerate(instants, start=1)]
    monotone_from = older + newer - step + 1 if step else older + 1
    async with maker() as session, session.begin():
        await session.execute(insert(AccessLogEntry), rows)
        await session.execute(
            update(AccessLogHead)
            .where(AccessLogHead.id == 1)
            .values(last_id=len(rows), last_at=at, monotone_from=monotone_from)
        )
    return instants


async def _naive(session: AsyncSession, **filters: object) -> list[int]:
    e = AccessLogEntry
    query = select(e.id).order_by(e.id.desc()).limit(int(filters["limit"]))  # type: ignore[call-overload]
    if filters["before_id"] is not None:
        query = query.where(e.id < filters["before_id"])
    if filters["principal"] is not None:
        query = query.where(e.principal == filters["principal"])
    if filters["since"] is not None:
        query = query.where(e.at >= filters["since"])
    if filters["until"] is not None:
        query = query.where(e.at < filters["until"])
    return list((await session.execute(query)).scalars())


@pytest.mark.parametrize(
    ("older", "newer", "archived", "step"),
    [(0, 60, 0, 0), (25, 50, 0, 0), (25, 50, 10, 0), (0, 60, 0, 25), (25, 50, 10, 20)],
)
async def test_since_and_until_as_id_bounds_select_what_comparing_instants_selects(
    sessionmaker, older, newer, archived, step
):
    rng = random.Random(older * 1000 + newer + archived + step * 7)
    instants = await _write_log(sessionmaker, rng, older, newer, step)
    if archived:  # the oldest entries gone, as an archive leaves the log
        async with sessionmaker() as session, session.begin():
            await session.execute(text(f"DELETE FROM access_log WHERE id <= {archived}"))
    probes = [None, BASE - timedelta(days=1), instants[-1] + timedelta(days=1)]
    probes += [a + timedelta(microseconds=d) for a in instants for d in (-1, 0, 1)]
    for _ in range(300):
        filters = {
            "since": rng.choice(probes),
            "until": rng.choice(probes),
            "before_id": rng.choice((None, None, rng.randrange(1, len(instants) + 2))),
            "principal": rng.choice((None, None, *PRINCIPALS)),
            "limit": rng.choice((1, 3, 10, 100)),
        }
        async with sessionmaker() as session:
            expected = await _naive(session, **filters)
            got = await repository.list_entries(
                session,
                decision=None,
                dataset=None,
                out_of_audience=None,
                data_subject=None,
                **filters,  # type: ignore[arg-type]
            )
        assert [e.id for e in got] == expected, filters


async def _head_at(maker: async_sessionmaker[AsyncSession], at: datetime) -> None:
    async with maker() as session, session.begin():
        await session.execute(update(AccessLogHead).where(AccessLogHead.id == 1).values(last_at=at))


async def _steps(client, tokens) -> float:
    text = (await client.get("/metrics", headers=tokens["metrics:read"])).text
    line = next(
        x for x in text.splitlines() if x.startswith("aclaudit_access_log_clock_steps_total")
    )
    return float(line.split()[-1])


async def test_a_head_slightly_ahead_is_waited_out_and_the_check_replays_exactly(
    client, tokens, admin, sessionmaker
):
    """A replica whose clock runs 60 ms fast (NTP skew) wrote the head's newest entry: the next
    batch waits until its own clock reaches that instant, so it is stamped at or after it and
    decided at the instant recorded (never later than its clock); monotonicity is kept."""
    await seed(client, admin)
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    first = r.json()["access_log_id"]
    async with sessionmaker() as session:
        monotone_from = (await repository.get_head(session)).monotone_from
    ahead = datetime.now(UTC) + timedelta(milliseconds=60)
    await _head_at(sessionmaker, ahead)
    ids = []
    for principal in ("user:alice", "user:bob"):
        r = await client.post("/v1/check", json=check_body(principal), headers=tokens["check"])
        assert r.status_code == 200, r.text
        ids.append(r.json()["access_log_id"])
    assert datetime.now(UTC) >= ahead
    for entry_id in ids:
        entry = (await client.get(f"/v1/access-log/{entry_id}", headers=admin)).json()
        assert datetime.fromisoformat(entry["at"]) >= ahead
        replayed = (await client.get(f"/v1/access-log/{entry_id}/replay", headers=admin)).json()
        assert replayed["matches"], replayed
    async with sessionmaker() as session:
        head = await repository.get_head(session)
    assert head.monotone_from == monotone_from and head.last_id == ids[-1]
    assert head.last_at is not None and head.last_at >= ahead
    assert await _steps(client, tokens) == 0
    r = await client.get("/v1/access-log", params={"until": ahead.isoformat()}, headers=admin)
    assert [e["id"] for e in r.json()["items"]] == [first]
    r = await client.get("/v1/access-log", params={"since": ahead.isoformat()}, headers=admin)
    assert [e["id"] for e in r.json()["items"]] == ids[::-1]


async def test_a_head_far_ahead_restarts_monotone_instants_and_browsing_stays_exact(
    client, tokens, admin, sessionmaker
):
    """A head an hour ahead (a clock stepped back, a replica off NTP, an edited head) is not
    waited for: the batch is stamped and decided at its own clock, starts the monotone part
    again (`monotone_from`), is counted in /metrics, and ?since=/?until= stay exact."""
    await seed(client, admin)
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    first = r.json()["access_log_id"]
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    await _head_at(sessionmaker, ahead)
    r = await client.post("/v1/check", json=check_body("user:bob"), headers=tokens["check"])
    stepped = r.json()["access_log_id"]
    entry = (await client.get(f"/v1/access-log/{stepped}", headers=admin)).json()
    stepped_at = datetime.fromisoformat(entry["at"])
    assert stepped_at < ahead and stepped_at <= datetime.now(UTC)
    replayed = (await client.get(f"/v1/access-log/{stepped}/replay", headers=admin)).json()
    assert replayed["matches"], replayed
    async with sessionmaker() as session:
        head = await repository.get_head(session)
    assert head.monotone_from == stepped and head.last_at == stepped_at
    assert await _steps(client, tokens) == 1
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    later = r.json()["access_log_id"]
    assert await _steps(client, tokens) == 1  # the log is monotone again from `stepped` on
    r = await client.get("/v1/access-log", params={"until": stepped_at.isoformat()}, headers=admin)
    assert [e["id"] for e in r.json()["items"]] == [first]
    r = await client.get("/v1/access-log", params={"since": stepped_at.isoformat()}, headers=admin)
    assert [e["id"] for e in r.json()["items"]] == [later, stepped]


async def test_a_head_ahead_of_the_clock_does_not_end_a_deny_early(
    client, tokens, admin, sessionmaker
):
    """Review (h-review-browse): deciding at max(clock, head.last_at) is not fail-closed for
    expiring *deny* grants. A replica whose clock runs ahead (or an NTP step back) puts the
    head's instant past a deny's expires_at; a check on an honest clock then decides at that
    later instant, where the deny no longer matches, and allows through the group grant while
    the deny is still in force by the real clock."""
    await seed(client, admin)  # alice reads through group:mci-research's allow
    expires = datetime.now(UTC) + timedelta(minutes=30)
    r = await client.post(
        "/v1/grants",
        json={
            "principal": "user:alice",
            "resource": "employee_activity.keystrokes",
            "action": "read",
            "effect": "deny",
            "expires_at": expires.isoformat(),
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.json()["decision"] == "deny", r.text  # the deny is in force now
    ahead = datetime.now(UTC) + timedelta(hours=1)  # another replica's fast clock
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(AccessLogHead).where(AccessLogHead.id == 1).values(last_at=ahead)
        )
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert datetime.now(UTC) < expires  # by the real clock the deny still holds
    assert r.json()["decision"] == "deny", r.text


async def test_until_holds_for_an_entry_committed_while_the_page_is_read(
    client, tokens, admin, monkeypatch
):
    """Review (h-review-browse): `time_window` and the page are two statements, two snapshots
    under PostgreSQL's READ COMMITTED (SQLite's read transaction keeps one: it passes). When
    no entry is yet at or after ``until``, the window has no upper id bound at all, so a
    check committed between the two is listed although it was written after ``until``.
    Comparing ``at`` in one statement (as before) could not list it."""
    await seed(client, admin)
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    first = r.json()["access_log_id"]
    until = datetime.now(UTC) + timedelta(microseconds=1)
    window = repository.time_window

    async def then_a_check_commits(*args: object) -> object:
        bounds = await window(*args)  # type: ignore[arg-type]
        r = await client.post("/v1/check", json=check_body("user:bob"), headers=tokens["check"])
        assert r.status_code == 200, r.text
        return bounds

    monkeypatch.setattr(repository, "time_window", then_a_check_commits)
    r = await client.get("/v1/access-log", params={"until": until.isoformat()}, headers=admin)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert all(datetime.fromisoformat(e["at"]) < until for e in items), items
    assert [e["id"] for e in items] == [first]
