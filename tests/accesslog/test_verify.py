"""Tampering with the access log directly in the database makes verify name the first bad id."""

from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.main import create_app


async def make_entries(client: httpx.AsyncClient, tokens, admin, n: int) -> None:
    await client.put(
        "/v1/datasets/activity.keys",
        json={"owner": "group:r", "sensitivity": "internal", "intended_audience": ["group:r"]},
        headers=admin,
    )
    await client.post(
        "/v1/grants",
        json={
            "principal": "group:r",
            "resource": "activity.*",
            "action": "read",
            "effect": "allow",
        },
        headers=admin,
    )
    checks = [
        {
            "principal": f"user:u{i}",
            "dataset": "activity.keys",
            "action": "read",
            "data_subjects": [f"user:s{i}"],
        }
        for i in range(n)
    ]
    r = await client.post("/v1/check/batch", json={"checks": checks}, headers=tokens["check"])
    assert r.status_code == 200


async def verify(client, admin, query: str = ""):
    r = await client.get(f"/v1/access-log/verify{query}", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


async def sql(sessionmaker, *statements: str) -> None:
    async with sessionmaker() as session, session.begin():
        for statement in statements:
            await session.execute(text(statement))


async def test_intact_log_verifies_with_count_and_head(client, tokens, admin):
    await make_entries(client, tokens, admin, 10)
    result = await verify(client, admin)
    newest = (await client.get("/v1/access-log?limit=1", headers=admin)).json()["items"][0]
    assert result["ok"] is True
    assert result["entries"] == 10
    assert result["head"] == newest["hash"]


async def test_edited_entry_fails_verify_at_its_id(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 10)
    await sql(sessionmaker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 4")
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 4


async def test_deleted_entry_fails_verify_at_its_id(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 10)
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects WHERE entry_id = 6",
        "DELETE FROM access_log WHERE id = 6",
    )
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 6


async def test_reordered_entries_fail_verify_at_the_first(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 10)
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects",
        "UPDATE access_log SET id = 1000 WHERE id = 3",
        "UPDATE access_log SET id = 3 WHERE id = 7",
        "UPDATE access_log SET id = 7 WHERE id = 1000",
        # and the data_subject index made to match the swapped entries
        *(
            f"INSERT INTO access_log_subjects (subject, entry_id) VALUES ('user:s{who}', {at})"
            for at, who in zip(range(1, 11), [0, 1, 6, 3, 4, 5, 2, 7, 8, 9], strict=True)
        ),
    )
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 3


async def test_truncated_tail_fails_verify(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 10)
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects WHERE entry_id > 7",
        "DELETE FROM access_log WHERE id > 7",
    )
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 8


@asynccontextmanager
async def served(settings: Settings):
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test") as c:
            yield c, application.state.sessionmaker


@pytest.fixture
async def checkpointed_client(database_url: str):
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key="k" * 32)
    async with served(settings) as client_and_sessions:
        yield client_and_sessions


async def test_truncation_with_rewritten_head_is_caught_by_signed_checkpoint(
    checkpointed_client, tokens, admin
):
    client, sessionmaker = checkpointed_client
    for _ in range(3):  # three transactions: 4, 4 and 4 entries -> checkpoints at 8 and 12
        await make_entries(client, tokens, admin, 4)
    page = (await client.get("/v1/access-log/checkpoints", headers=admin)).json()
    assert [(c["id"], c["entry_id"]) for c in page["items"]] == [(12, 12), (8, 8)]
    assert all(c["signature"] for c in page["items"])
    ok = await verify(client, admin)
    assert ok["ok"] is True and ok["checkpoints"] == 2 and ok["signed_checkpoints"] is True
    entry9 = (await client.get("/v1/access-log/9", headers=admin)).json()
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects WHERE entry_id > 9",
        "DELETE FROM access_log WHERE id > 9",
        f"UPDATE access_log_head SET last_id = 9, last_hash = '{entry9['hash']}'",
    )
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 10


async def test_a_key_set_on_an_existing_log_is_required_from_the_entry_it_names(
    database_url, tokens, admin, sessionmaker
):
    """Checkpoints written before the key are unsigned: verify refuses them by default (so
    that stripping signatures is caught), and accepts them when told where signing began."""
    unsigned = Settings(database_url=database_url, checkpoint_every=5)
    async with served(unsigned) as (client, _):
        await make_entries(client, tokens, admin, 6)  # checkpoint at 6, unsigned
    keyed = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key="k" * 32)
    since = keyed.model_copy(update={"checkpoint_key_since": 7})
    async with served(since) as (client, _):
        await make_entries(client, tokens, admin, 6)  # checkpoint at 12, signed
        page = (await client.get("/v1/access-log/checkpoints", headers=admin)).json()
        assert [(c["entry_id"], bool(c["signature"])) for c in page["items"]] == [
            (12, True),
            (6, False),
        ]
        ok = await verify(client, admin)
        assert (ok["ok"], ok["entries"], ok["checkpoints"]) == (True, 12, 2)
    async with served(keyed) as (client, _):
        refused = await verify(client, admin)
        assert (refused["ok"], refused["first_bad_id"]) == (False, 6)
        assert "signature" in refused["problem"]
    await sql(
        sessionmaker, "UPDATE access_log_checkpoints SET signature = NULL WHERE entry_id = 12"
    )
    for first_signed in (7, 12):  # the checkpoint at the named entry itself must be signed
        named = keyed.model_copy(update={"checkpoint_key_since": first_signed})
        async with served(named) as (client, _):
            stripped = await verify(client, admin)
            assert (stripped["ok"], stripped["first_bad_id"]) == (False, 12)


async def test_forged_checkpoint_is_rejected(checkpointed_client, tokens, admin):
    client, sessionmaker = checkpointed_client
    await make_entries(client, tokens, admin, 6)
    await sql(sessionmaker, "UPDATE access_log_checkpoints SET signature = 'forged'")
    result = await verify(client, admin)
    assert result["ok"] is False and "signature" in result["problem"]


async def test_copied_out_anchor_detects_a_rewritten_chain(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 5)
    anchor = (await client.get("/v1/access-log/5", headers=admin)).json()["hash"]
    assert (await verify(client, admin, f"?anchor_id=5&anchor_hash={anchor}"))["ok"] is True
    assert (await verify(client, admin, f"?anchor_id=5&anchor_hash={'0' * 64}"))["ok"] is False
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects",
        "DELETE FROM access_log",
        f"UPDATE access_log_head SET last_id = 0, last_hash = '{'0' * 64}'",
    )
    result = await verify(client, admin, f"?anchor_id=5&anchor_hash={anchor}")
    assert result["ok"] is False and result["first_bad_id"] == 1


@pytest.mark.parametrize(
    "tamper",
    [
        "DELETE FROM access_log_subjects WHERE entry_id = 6",
        "UPDATE access_log_subjects SET subject = 'user:nobody' WHERE entry_id = 6",
        "INSERT INTO access_log_subjects (subject, entry_id) VALUES ('user:ceo', 6)",
    ],
)
async def test_tampered_data_subject_index_fails_verify(
    client, tokens, admin, sessionmaker, tamper
):
    """?data_subject= answers "who read bob's records" from an index: hiding a read there is
    tampering too, though the chained entry itself is intact."""
    await make_entries(client, tokens, admin, 10)
    await sql(sessionmaker, tamper)
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 6
    assert "data_subject" in result["problem"]


FORGED = (
    "INSERT INTO access_log (id, decision_id, at, principal, dataset, action, purpose, decision, "
    "reason, out_of_audience, data_subjects, request_id, caller, policy_version, prev_hash, hash) "
    "VALUES ({id}, 'forged-{n}', '2026-11-27 10:00:00.000000', 'user:framed', 'activity.keys', "
    "'read', NULL, 'allow', '{{}}', {false}, '[]', NULL, 'svc', 1, '{zeros}', '{zeros}')"
)


# PostgreSQL (the log partitioned by id): a partition for ids below 1, as a forger would add
FORGED_BELOW = "access_log_forged_below"
BELOW_1 = "FOR VALUES FROM (MINVALUE) TO (1)"


@pytest.mark.parametrize("forged_id", [0, -5, 11, 1_000_000])
async def test_a_row_outside_the_chain_fails_verify(
    client, tokens, admin, sessionmaker, settings, forged_id
):
    """The API would serve it as an entry (a read that never happened), so verify must not
    vouch for the log: ids below 1, or past the head, are outside the chain."""
    await make_entries(client, tokens, admin, 10)
    false = "false" if not settings.is_sqlite else "0"
    below = not settings.is_sqlite and forged_id < 1
    if below:  # no partition holds ids below 1: the forger makes one first
        await sql(sessionmaker, f"CREATE TABLE {FORGED_BELOW} PARTITION OF access_log {BELOW_1}")
    try:
        await sql(sessionmaker, FORGED.format(id=forged_id, n=1, false=false, zeros="0" * 64))
        listed = (await client.get("/v1/access-log?principal=user:framed", headers=admin)).json()
        assert [e["id"] for e in listed["items"]] == [forged_id]
        result = await verify(client, admin)
        assert result["ok"] is False and result["first_bad_id"] == forged_id
    finally:
        if below:
            await sql(sessionmaker, f"DROP TABLE {FORGED_BELOW}")


async def test_a_head_moved_back_fails_verify(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 10)
    await sql(sessionmaker, f"UPDATE access_log_head SET last_id = 0, last_hash = '{'0' * 64}'")
    result = await verify(client, admin)
    assert (result["ok"], result["first_bad_id"]) == (False, 1)
    assert "beyond the head" in result["problem"]


async def test_a_missing_head_row_fails_verify(client, tokens, admin, sessionmaker):
    await make_entries(client, tokens, admin, 3)
    await sql(sessionmaker, "DELETE FROM access_log_head")
    result = await verify(client, admin)
    assert (result["ok"], result["first_bad_id"]) == (False, 1)


async def test_removed_checkpoints_after_a_rechained_edit_fail_verify(
    checkpointed_client, tokens, admin
):
    """Edit entry 9, chain 9..12 again and drop the signed checkpoint at 12 that no longer
    matches: the checkpoint at 8 does not cover entry 10, a multiple of 5."""
    from app import chain

    client, sessionmaker = checkpointed_client
    for _ in range(3):  # checkpoints at 8 and 12
        await make_entries(client, tokens, admin, 4)
    entries = [(await client.get(f"/v1/access-log/{i}", headers=admin)).json() for i in (8,)]
    prev = entries[0]["hash"]
    statements = []
    for entry_id in range(9, 13):
        entry = (await client.get(f"/v1/access-log/{entry_id}", headers=admin)).json()
        if entry_id == 9:
            entry["principal"] = "user:someone.else"
        entry["at"] = datetime.fromisoformat(entry["at"])
        entry["prev_hash"], entry["hash"] = prev, chain.entry_hash(prev, entry)
        statements.append(
            f"UPDATE access_log SET principal = '{entry['principal']}', "
            f"prev_hash = '{prev}', hash = '{entry['hash']}' WHERE id = {entry_id}"
        )
        prev = entry["hash"]
    await sql(
        sessionmaker,
        *statements,
        f"UPDATE access_log_head SET last_hash = '{prev}'",
        "DELETE FROM access_log_checkpoints WHERE entry_id > 8",
    )
    result = await verify(client, admin)
    assert (result["ok"], result["first_bad_id"]) == (False, 9)
    assert "checkpoints were removed" in result["problem"]


@pytest.mark.parametrize(
    "tamper",
    [
        # the same instant, stored with an offset: ?since= windows compare the stored text
        "UPDATE access_log SET at = replace(at, ' ', 'T') || '+00:00' WHERE id = 11",
        "UPDATE access_log SET out_of_audience = 2 WHERE id = 11",  # out of the partial index
        "UPDATE access_log SET principal = CAST(principal AS BLOB) WHERE id = 11",
        "UPDATE access_log SET reason = '{not json' WHERE id = 11",
        "UPDATE access_log SET at = 'yesterday' WHERE id = 11",
    ],
)
async def test_an_entry_stored_in_another_form_fails_verify_on_sqlite(
    client, tokens, admin, sessionmaker, settings, tamper
):
    """SQLite columns take any type: a value that reads back the same through the ORM (so
    hashes the same) can still escape the filters auditors use, or not read at all."""
    if not settings.is_sqlite:
        pytest.skip("PostgreSQL's column types allow one stored form only")
    await make_entries(client, tokens, admin, 10)
    grant = {
        "principal": "user:x",
        "resource": "activity.keys",
        "action": "read",
        "effect": "allow",
    }
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    check = {"principal": "user:x", "dataset": "activity.keys", "action": "read"}
    read = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    assert (read["access_log_id"], read["out_of_audience"]) == (11, True)
    await sql(sessionmaker, tamper)
    result = await verify(client, admin)
    assert (result["ok"], result["first_bad_id"]) == (False, 11)
