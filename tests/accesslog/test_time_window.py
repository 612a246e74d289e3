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
    maker: async_sessionmaker[AsyncSession], rng: random.Random, older: int, newer: int
) -> list[datetime]:
    """Entries 1..`older` at shuffled instants (as before 0020), then `newer` entries at
    non-decreasing instants from the newest of those on (ties included); the head says so."""
    older_at = [BASE + timedelta(seconds=rng.randrange(0, 600)) for _ in range(older)]
    at = max(older_at, default=BASE)
    newer_at = []
    for _ in range(newer):
        at += timedelta(seconds=rng.choice((0, 0, 1, 7, 30)))
        newer_at.append(at)
    instants = older_at + newer_at
    rows = [_entry(i, a, rng) for i, a in enumerate(instants, start=1)]
    async with maker() as session, session.begin():
        await session.execute(insert(AccessLogEntry), rows)
        await session.execute(
            update(AccessLogHead)
            .where(AccessLogHead.id == 1)
            .values(last_id=len(rows), last_at=at, monotone_from=older + 1)
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


@pytest.mark.parametrize(("older", "newer", "archived"), [(0, 60, 0), (25, 50, 0), (25, 50, 10)])
async def test_since_and_until_as_id_bounds_select_what_comparing_instants_selects(
    sessionmaker, older, newer, archived
):
    rng = random.Random(older * 1000 + newer + archived)
    instants = await _write_log(sessionmaker, rng, older, newer)
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


async def test_a_check_is_never_stamped_before_the_head_and_replays_exactly(
    client, tokens, admin, sessionmaker
):
    await seed(client, admin)
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    # a replica whose clock runs an hour ahead wrote the head's newest entry
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(AccessLogHead).where(AccessLogHead.id == 1).values(last_at=ahead)
        )
    ids = []
    for principal in ("user:alice", "user:bob"):
        r = await client.post("/v1/check", json=check_body(principal), headers=tokens["check"])
        assert r.status_code == 200, r.text
        ids.append(r.json()["access_log_id"])
    for entry_id in ids:
        entry = (await client.get(f"/v1/access-log/{entry_id}", headers=admin)).json()
        assert datetime.fromisoformat(entry["at"]) == ahead
        replayed = (await client.get(f"/v1/access-log/{entry_id}/replay", headers=admin)).json()
        assert replayed["matches"], replayed
    async with sessionmaker() as session:
        head = await repository.get_head(session)
    assert head.last_at == ahead and head.last_id == ids[-1]
    # the browsing bound agrees: both entries are at `ahead`, none before it
    r = await client.get("/v1/access-log", params={"until": ahead.isoformat()}, headers=admin)
    assert [e["id"] for e in r.json()["items"]] == []
    r = await client.get("/v1/access-log", params={"since": ahead.isoformat()}, headers=admin)
    assert [e["id"] for e in r.json()["items"]] == ids[::-1]
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    later = (await client.get(f"/v1/access-log/{r.json()['access_log_id']}", headers=admin)).json()
    assert datetime.fromisoformat(later["at"]) >= ahead


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
