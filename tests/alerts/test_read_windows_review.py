"""Review of the windowed read alerts (cede9be): what a window must not hide."""

from sqlalchemy import text

from app.config import Settings
from tests.accesslog.test_integrity import KEY
from tests.accesslog.test_verify import make_entries, served, sql, verify
from tests.alerts.test_feed import poll, setup_exposed
from tests.alerts.test_read_windows import read, read_alerts


async def test_a_rollback_past_reads_a_window_counted_is_caught(database_url, tokens, admin):
    """The window counts bob's second read (entry 8), so it has no alert of its own: a log
    rolled back to the signed head at entry 7 must still fail verify, as it did when every
    read had an alert (the window row still says 2 reads, the last one entry 8)."""
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 6)  # entries 1-6, checkpoint at 6
        await setup_exposed(client, admin)
        first = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        assert (first.json()["access_log_id"], first.json()["out_of_audience"]) == (7, True)
        async with maker() as session:
            old_head = (await session.execute(text("SELECT * FROM access_log_head"))).one()
        second = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        assert (second.json()["access_log_id"], second.json()["out_of_audience"]) == (8, True)
        await make_entries(client, tokens, admin, 6)  # 9-14, checkpoint at 14
        assert [a["count"] for a in await read_alerts(client, tokens)] == [2]
        assert (await verify(client, admin))["ok"] is True
        await sql(
            maker,
            "DELETE FROM access_log_subjects WHERE entry_id > 7",
            "DELETE FROM access_log WHERE id > 7",
            "DELETE FROM access_log_checkpoints WHERE entry_id > 7",
            f"UPDATE access_log_head SET last_id = {old_head.last_id}, "
            f"last_hash = '{old_head.last_hash}', signature = '{old_head.signature}'",
        )
        result = await verify(client, admin, "?full=true")
        assert (result["ok"], result["first_bad_id"]) == (False, 8), result


async def test_reads_after_the_dataset_became_restricted_are_alerted_as_critical(
    client, tokens, admin
):
    """bob's first read of an internal dataset raises a medium alert; the dataset is then
    classified restricted (guard kept at alert) and bob reads it again within the window. A
    poller that handled the medium alert must learn of the critical read: the feed must hold
    a critical read.out_of_audience alert for it (not just a count on the medium one)."""
    await setup_exposed(client, admin)
    dataset = {
        "owner": "group:research",
        "intended_audience": ["group:research"],
        "guard": "alert",
    }
    r = await client.put(
        "/v1/datasets/activity.keys", json={**dataset, "sensitivity": "internal"}, headers=admin
    )
    assert r.is_success, r.text
    first = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
    assert first.json()["out_of_audience"] is True
    assert [a["severity"] for a in await read_alerts(client, tokens)] == ["medium"]
    r = await client.put(
        "/v1/datasets/activity.keys", json={**dataset, "sensitivity": "restricted"}, headers=admin
    )
    assert r.is_success, r.text
    later = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
    assert later.json()["out_of_audience"] is True
    severities = [a["severity"] for a in await read_alerts(client, tokens)]
    assert "critical" in severities, severities


async def test_window_lookups_in_a_batch_do_not_grow_with_its_principals(
    app, client, tokens, admin, settings
):
    """Statements under the chain's lock: a batch of 50 out-of-audience reads by 50
    principals (windows open) looks its windows up in one statement, not one per principal
    (on PostgreSQL each is a round trip while every other check of every worker waits)."""
    await setup_exposed(client, admin)
    readers = [f"user:r{n}" for n in range(50)]
    members = {"members": ["group:research", *readers]}
    assert (await client.put("/v1/groups/all/members", json=members, headers=admin)).is_success
    batch = {"checks": [read(r) for r in readers]}
    opened = await client.post("/v1/check/batch", json=batch, headers=tokens["check"])
    assert opened.status_code == 200, opened.text
    statements: list[str] = []
    conn = app.state.log_writer._store._conn

    def logged(record) -> None:
        statements.append(record.query)

    if settings.is_sqlite:
        conn.set_trace_callback(statements.append)
    else:
        conn.add_query_logger(logged)
    try:
        counted = await client.post("/v1/check/batch", json=batch, headers=tokens["check"])
    finally:
        if settings.is_sqlite:
            conn.set_trace_callback(None)
        else:
            conn.remove_query_logger(logged)
    assert counted.status_code == 200, counted.text
    assert sorted(a["count"] for a in await read_alerts(client, tokens)) == [2] * 50
    lookups = [s for s in statements if " ".join(s.split()).upper().startswith("SELECT")]
    lookups = [s for s in lookups if "read_alert_windows" in s]
    assert len(lookups) <= 1, f"{len(lookups)} window lookups of {len(statements)} statements"


async def test_the_feed_still_pages_every_alert_once_with_windows(client, tokens, admin):
    """Sanity (passes): counted reads add no alert ids, so the feed stays gap-free."""
    await setup_exposed(client, admin)
    for _ in range(3):
        await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
    items = (await poll(client, tokens))["items"]
    assert [a["id"] for a in items] == list(range(1, len(items) + 1))
