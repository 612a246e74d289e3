"""Browsing the access log by the out-of-audience flag: the right entries, through the partial
index that holds only out-of-audience reads."""

from sqlalchemy import select, text

from app.accesslog.models import OUT_OF_AUDIENCE, AccessLogEntry
from tests.checks.test_check import check_body, seed


async def test_the_flag_filter_returns_exactly_the_reads_outside_the_audience(
    client, tokens, admin
):
    await seed(client, admin)
    decided = {}
    for principal in ["user:bob", "user:alice", "user:bob", "user:carol", "user:alice"]:
        r = await client.post("/v1/check", json=check_body(principal), headers=tokens["check"])
        assert r.status_code == 200, r.text
        decided[r.json()["access_log_id"]] = r.json()["out_of_audience"]
    outside = sorted((i for i, flag in decided.items() if flag), reverse=True)
    inside = sorted((i for i, flag in decided.items() if not flag), reverse=True)
    assert len(outside) == 2 and len(inside) == 3  # bob twice; alice twice and carol (denied)

    for flag, expected in [("true", outside), ("false", inside)]:
        r = await client.get(
            "/v1/access-log", params={"out_of_audience": flag, "limit": 1}, headers=admin
        )
        ids = [e["id"] for e in r.json()["items"]]
        while r.json()["next_cursor"]:
            r = await client.get(
                "/v1/access-log",
                params={"out_of_audience": flag, "limit": 1, "cursor": r.json()["next_cursor"]},
                headers=admin,
            )
            ids += [e["id"] for e in r.json()["items"]]
        assert ids == expected
    r = await client.get("/v1/datasets/employee_activity.keystrokes/exposure", headers=admin)
    assert r.json()["out_of_audience_reads"] == 2


async def test_out_of_audience_pages_are_read_through_the_partial_index(sessionmaker):
    query = select(AccessLogEntry.id).where(OUT_OF_AUDIENCE).order_by(AccessLogEntry.id.desc())
    async with sessionmaker() as session:
        dialect = session.get_bind().dialect
        sql = str(query.limit(100).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "sqlite":
            rows = await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            plan = "\n".join(str(r[-1]) for r in rows)
            assert "ix_access_log_out_of_audience" in plan, plan
            return
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in await session.execute(text(f"EXPLAIN {sql}")))
        # the log is partitioned by id: each partition's part of the index is read
        children = await session.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'ix_access_log_out_of_audience'::regclass"
            )
        )
        names = [str(name) for (name,) in children]
        assert names and all(f"Index Scan on {name} " in plan for name in names), plan
