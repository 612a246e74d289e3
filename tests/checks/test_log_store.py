"""The access-log stores: a held write lock delays a check, never loses it; an answer waits for
the fsync that makes its entry durable, and a failed fsync fails closed."""

import asyncio
import contextlib
import errno
import os
import signal
import sqlite3
import threading
import time

import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from tests.accesslog.test_verify import served
from tests.checks.test_check import check_body, seed


async def test_check_waits_for_a_write_lock_held_elsewhere(client, tokens, admin, settings):
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock; PostgreSQL's head row lock is covered by the e2e tests")
    await seed(client, admin)
    first = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert first.status_code == 200
    path = make_url(settings.database_url).database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker's transaction, say
    try:
        pending = asyncio.create_task(
            client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
        )
        await asyncio.sleep(0.3)
        assert not pending.done()  # waiting for the lock, not answered without its entry
    finally:
        other.execute("ROLLBACK")
        other.close()
    r = await pending
    assert r.status_code == 200 and r.json()["access_log_id"] == first.json()["access_log_id"] + 1
    verify = (await client.get("/v1/access-log/verify", headers=admin)).json()
    assert verify["ok"] is True and verify["entries"] == 2


def sqlite_only(settings) -> None:
    if not settings.is_sqlite:
        pytest.skip("the SQLite store's own fsync of the WAL")


async def test_answer_waits_for_the_fsync_that_covers_its_commit(
    client, tokens, admin, settings, monkeypatch
):
    sqlite_only(settings)
    await seed(client, admin)
    assert (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).status_code == 200
    synced = threading.Event()
    real_fdatasync = os.fdatasync

    def held_fdatasync(fd: int) -> None:
        synced.wait(5)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", held_fdatasync)
    pending = asyncio.create_task(
        client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    )
    await asyncio.sleep(0.3)
    assert not pending.done()  # committed, but not answered before the WAL is synced
    synced.set()
    assert (await pending).status_code == 200


async def test_failed_fsync_answers_503_deny_and_refuses_until_restart(
    client, tokens, admin, settings, monkeypatch
):
    sqlite_only(settings)
    await seed(client, admin)
    assert (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).status_code == 200

    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.status_code == 503 and r.json()["decision"] == "deny"
    monkeypatch.undo()
    # A failed fsync may have dropped pages a later fsync would not bring back: fail closed.
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.status_code == 503 and r.json()["allowed"] is False
    # ... and say so: not ready (an orchestrator takes it out of rotation), though the
    # database itself answers.
    r = await client.get("/readyz")
    assert r.status_code == 503 and "fsync" in r.json()["detail"]
    assert (await client.get("/v1/groups", headers=admin)).status_code == 200


async def test_a_served_worker_whose_fsync_failed_stops_itself_to_be_restarted(
    database_url, settings, tokens, admin, monkeypatch
):
    sqlite_only(settings)
    stops: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: stops.append((pid, sig)))
    async with served(Settings(database_url=database_url, exit_on_log_failure=True)) as (
        client,
        _sessionmaker,
    ):
        await seed(client, admin)
        check = check_body("user:alice")
        assert (
            await client.post("/v1/check", json=check, headers=tokens["check"])
        ).status_code == 200
        assert stops == []

        def failing_fdatasync(fd: int) -> None:
            raise OSError(errno.EIO, "I/O error")

        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        r = await client.post("/v1/check", json=check, headers=tokens["check"])
        assert r.status_code == 503 and r.json()["decision"] == "deny"
    assert stops == [(os.getpid(), signal.SIGTERM)]


async def test_postgres_answer_waits_for_the_flush_barrier_and_fails_closed_without_it(
    client, tokens, admin, settings, monkeypatch
):
    if settings.is_sqlite:
        pytest.skip("PostgreSQL's synchronous-commit barrier")
    from app.checks.postgres_store import PostgresLogStore

    await seed(client, admin)
    assert (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).status_code == 200
    flushed = asyncio.Event()
    real_barrier = PostgresLogStore._sync

    async def held_barrier(self: PostgresLogStore, loop) -> None:
        await flushed.wait()
        await real_barrier(self, loop)

    monkeypatch.setattr(PostgresLogStore, "_sync", held_barrier)
    pending = asyncio.create_task(
        client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    )
    await asyncio.sleep(0.3)
    assert not pending.done()  # committed, but not answered before the WAL is flushed
    flushed.set()
    assert (await pending).status_code == 200

    async def failing_barrier(self: PostgresLogStore, loop) -> None:
        raise OSError("connection lost")

    monkeypatch.setattr(PostgresLogStore, "_sync", failing_barrier)
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.status_code == 503 and r.json()["decision"] == "deny"
    monkeypatch.undo()
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.status_code == 200  # the server's own fsync is trusted again once a barrier holds


async def test_a_database_file_deleted_under_the_service_fails_closed(
    client, tokens, admin, settings
):
    """The open connections would go on writing the deleted file: nothing committed there can
    be answered as recorded, and the service is not ready."""
    sqlite_only(settings)
    await seed(client, admin)
    assert (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).status_code == 200
    assert settings.sqlite_file
    for suffix in ("", "-wal", "-shm"):
        os.remove(settings.sqlite_file + suffix)
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.status_code == 503 and r.json()["decision"] == "deny"
    batch = {"checks": [check_body("user:alice")]}
    r = await client.post("/v1/check/batch", json=batch, headers=tokens["check"])
    assert r.status_code == 503 and r.json()["allowed"] is False
    assert (await client.get("/readyz")).status_code == 503


async def test_a_lock_held_elsewhere_fails_checks_closed_within_the_timeout(
    database_url, tokens, admin
):
    """PostgreSQL waits for row locks without end unless told otherwise: a session holding the
    chain head must not hold every check in the process past the database timeout."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's row locks; SQLite's write lock is covered above")
    import asyncpg

    settings = Settings(database_url=database_url, database_timeout=1.0)
    async with served(settings) as (client, _):
        await seed(client, admin)
        ok = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
        assert ok.status_code == 200
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        other = await asyncpg.connect(dsn)
        try:
            await other.execute("BEGIN")
            await other.execute("SELECT * FROM access_log_head WHERE id = 1 FOR UPDATE")
            started = time.monotonic()
            r = await asyncio.wait_for(  # fails here, rather than hangs, if the wait is unbounded
                client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"]),
                timeout=10,
            )
            waited = time.monotonic() - started
        finally:
            await other.close()
        assert r.status_code == 503 and r.json()["decision"] == "deny"
        assert waited < 4, waited
        after = await client.post(
            "/v1/check", json=check_body("user:alice"), headers=tokens["check"]
        )
        assert after.status_code == 200


async def test_checks_get_through_while_another_worker_keeps_changing_the_policy(
    database_url, tokens, admin, monkeypatch
):
    """Each change from another worker makes this worker's batch stale, and reloading the
    snapshot takes time (seconds at 100k grants; 50 ms here): reloaded while the policy moves
    on, a batch would stay stale and be refused. The store holds the policy still meanwhile."""
    from app.policy import snapshot as snapshot_module

    real_build = snapshot_module.CheckIndex.build

    async def slow_build(kind, rows, state):
        await asyncio.sleep(0.05)
        return await real_build(kind, rows, state)

    monkeypatch.setattr(snapshot_module.CheckIndex, "build", slow_build)
    settings = Settings(database_url=database_url)
    deny = {"principal": "user:zed", "resource": "employee_activity.keystrokes",
            "action": "read", "effect": "deny"}  # fmt: skip
    async with served(settings) as (checker, _), served(settings) as (changer, _):
        await seed(checker, admin)
        stop = asyncio.Event()
        changes = 0

        async def churn() -> None:
            nonlocal changes
            while not stop.is_set():
                made = await changer.post("/v1/grants", json=deny, headers=admin)
                assert made.status_code == 201, made.text
                gone = await changer.delete(f"/v1/grants/{made.json()['id']}", headers=admin)
                assert gone.status_code == 200, gone.text
                changes += 2

        churning = asyncio.create_task(churn())
        try:
            await asyncio.sleep(0.2)
            answers: list[int] = []
            # at least 5 checks, and on until the policy has changed 10 times meanwhile (a
            # loaded machine changes it more slowly; the bound keeps a stuck churn visible)
            while (len(answers) < 5 or changes < 10) and len(answers) < 200:
                r = await checker.post(
                    "/v1/check", json=check_body("user:alice"), headers=tokens["check"]
                )
                answers.append(r.status_code)
        finally:
            stop.set()
            await churning
    assert answers == [200] * len(answers)
    assert changes >= 10  # the policy did keep changing meanwhile


async def test_checks_queued_behind_a_stuck_batch_fail_within_the_timeout(
    database_url, settings, tokens, admin
):
    """A batch waiting for a lock held elsewhere holds up the checks queued behind it: each is
    denied within the database timeout of its own arrival, not after one timeout per batch."""
    timeout = 1.0
    async with served(Settings(database_url=database_url, database_timeout=timeout)) as (
        client,
        _sessionmaker,
    ):
        await seed(client, admin)
        batch = {"checks": [check_body("user:alice")] * 50}
        assert (
            await client.post("/v1/check/batch", json=batch, headers=tokens["check"])
        ).status_code == 200
        async with held_log_lock(settings):

            async def timed() -> tuple[int, float]:
                started = time.monotonic()
                r = await client.post("/v1/check/batch", json=batch, headers=tokens["check"])
                return r.status_code, time.monotonic() - started

            tasks = []
            for _ in range(4):
                tasks.append(asyncio.create_task(timed()))
                await asyncio.sleep(0.1)
            answers = await asyncio.gather(*tasks)
        assert [status for status, _ in answers] == [503] * 4, answers
        assert max(seconds for _, seconds in answers) < timeout + 0.5, answers
        r = await client.post("/v1/check/batch", json=batch, headers=tokens["check"])
        assert r.status_code == 200  # the lock is free again
    verify = await client_verify(database_url, admin)
    assert verify["ok"] is True and verify["entries"] == 100


@contextlib.asynccontextmanager
async def held_log_lock(settings):
    """What another writer holding the access log's lock looks like to this process."""
    if settings.is_sqlite:
        assert settings.sqlite_file is not None
        other = sqlite3.connect(settings.sqlite_file, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        import asyncpg

        url = make_url(settings.database_url).set(drivername="postgresql")
        other = await asyncpg.connect(url.render_as_string(hide_password=False))
        try:
            await other.execute("BEGIN")
            await other.execute("LOCK TABLE access_log_head IN ACCESS EXCLUSIVE MODE")
            yield
        finally:
            await other.execute("ROLLBACK")
            await other.close()


async def client_verify(database_url, admin):
    async with served(Settings(database_url=database_url)) as (client, _sessionmaker):
        return (await client.get("/v1/access-log/verify", headers=admin)).json()


async def test_the_alert_feed_is_locked_only_after_the_entries_are_written(
    app, client, tokens, admin, settings
):
    """A batch with an out-of-audience read takes the alert feed's head (a row lock on
    PostgreSQL, which every policy change's alerts wait for) after writing its entries, so the
    feed is held for the alerts alone, not for the batch's bulk inserts."""
    sqlite_only(settings)
    await seed(client, admin)
    warm = check_body("user:alice")  # inside the audience: no alert
    assert (await client.post("/v1/check", json=warm, headers=tokens["check"])).status_code == 200
    body = check_body("user:bob")  # allowed through eng, outside the audience: an alert
    statements: list[str] = []
    conn = app.state.log_writer._store._conn
    conn.set_trace_callback(statements.append)
    try:
        r = await client.post("/v1/check", json=body, headers=tokens["check"])
    finally:
        conn.set_trace_callback(None)
    assert r.status_code == 200 and r.json()["out_of_audience"] is True
    firsts: dict[str, int] = {}
    for i, sql in enumerate(statements):
        words = " ".join(sql.split()).upper()
        for name, start in [
            ("entries", "INSERT INTO ACCESS_LOG "),
            ("head", "UPDATE ACCESS_LOG_HEAD"),
            ("alert_head", "SELECT ALERT_HEAD"),
            ("alerts", "INSERT INTO ALERTS"),
            ("commit", "COMMIT"),
        ]:
            if words.startswith(start):
                firsts.setdefault(name, i)
    assert list(firsts) == ["entries", "head", "alert_head", "alerts", "commit"], statements
