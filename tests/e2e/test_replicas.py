"""Several `aclaudit serve` replicas on one database (docs/operations.md, "Replicas"): they
migrate a fresh database together without racing, a revoke through one is honoured by the next
check through every other, the log stays one linear chain, and the alert feed stays exactly once
and in order whichever replica is polled."""

import asyncio
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import postgres_admin_execute
from tests.e2e.servers import ACLAUDIT, Server
from tests.e2e.test_workers_and_crashes import seed

pytestmark = pytest.mark.slow

REPLICAS = 3
BOB = {"principal": "user:bob", "dataset": "activity.keys", "action": "read"}


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the backend under test, never migrated."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"aclaudit_replicas_{uuid.uuid4().hex[:12]}"
    asyncio.run(postgres_admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_replicas_started_together_migrate_a_fresh_database_once(fresh_url: str) -> None:
    env = {**os.environ, "ACLAUDIT_DATABASE_URL": fresh_url}
    upgrades = [
        subprocess.Popen(
            [ACLAUDIT, "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(REPLICAS)
    ]
    outcomes = [(p.communicate(timeout=120)[0].decode(), p.returncode) for p in upgrades]
    assert [code for _, code in outcomes] == [0] * REPLICAS, outcomes
    check = subprocess.run(
        [ACLAUDIT, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0 and "newest schema" in check.stderr + check.stdout


async def _decision(url: str, headers: dict[str, str], body: dict[str, str]) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:  # a fresh connection
        r = await c.post("/v1/check", json=body, headers=headers)
        assert r.status_code == 200, r.text
        answer: dict[str, object] = r.json()
        return answer


async def test_revoke_through_one_replica_denies_the_next_check_through_every_other(
    database_url, tokens, admin, tmp_path
):
    replicas = [
        Server(database_url, log=tmp_path / f"replica-{i}.log").start() for i in range(REPLICAS)
    ]
    alice = {"principal": "user:alice", "dataset": "activity.keys", "action": "read"}
    checks = 0
    try:
        async with httpx.AsyncClient(base_url=replicas[0].url, timeout=10) as client:
            await seed(client, admin)  # group:r (alice) may read activity.*; audience group:r
        for round_, writer in enumerate(replicas):
            others = [r for r in replicas if r is not writer]
            async with httpx.AsyncClient(base_url=writer.url, timeout=10) as client:
                r = await client.post(
                    "/v1/grants",
                    json={
                        "principal": "user:alice",
                        "resource": "activity.keys",
                        "action": "read",
                        "effect": "deny",
                    },
                    headers=admin,
                )
                assert r.status_code == 201, r.text
                deny_id = r.json()["id"]
            for other in others:  # the deny made through `writer`, honoured by the others
                answer = await _decision(other.url, tokens["check"], alice)
                checks += 1
                assert answer["decision"] == "deny", (round_, other.url, answer)
            async with httpx.AsyncClient(base_url=writer.url, timeout=10) as client:
                r = await client.delete(f"/v1/grants/{deny_id}", headers=admin)
                assert r.status_code in (200, 204), r.text
            for other in others:
                answer = await _decision(other.url, tokens["check"], alice)
                checks += 1
                assert answer["decision"] == "allow", (round_, other.url, answer)

        # bob is outside the audience: every allowed read of his is an out-of-audience alert
        async with httpx.AsyncClient(base_url=replicas[1].url, timeout=10) as client:
            r = await client.post(
                "/v1/groups/r/members", json={"member": "user:bob"}, headers=admin
            )
            assert r.status_code == 200, r.text
            r = await client.put(
                "/v1/datasets/activity.keys",
                json={
                    "owner": "group:r",
                    "sensitivity": "internal",
                    "intended_audience": ["user:alice"],
                },
                headers=admin,
            )
            assert r.status_code == 200, r.text
        per_replica = 20

        async def reads(replica: Server) -> list[int]:
            ids = []
            for _ in range(per_replica):
                answer = await _decision(replica.url, tokens["check"], BOB)
                assert answer["decision"] == "allow" and answer["out_of_audience"] is True
                ids.append(int(str(answer["access_log_id"])))
            return ids

        logged = [i for ids in await asyncio.gather(*map(reads, replicas)) for i in ids]
        checks += len(logged)
        assert len(set(logged)) == len(logged)

        # one chain, whichever replica verifies it
        for replica in replicas:
            async with httpx.AsyncClient(base_url=replica.url, timeout=30) as c:
                r = await c.get("/v1/access-log/verify", headers=tokens["audit:read"])
                assert r.status_code == 200, r.text
                assert r.json()["ok"] is True and r.json()["entries"] == checks, r.json()

        # the feed polled through the replicas in turn: every alert once, in order
        seen: list[dict[str, object]] = []
        after, turn = 0, 0
        while True:
            replica = replicas[turn % REPLICAS]
            turn += 1
            async with httpx.AsyncClient(base_url=replica.url, timeout=10) as c:
                r = await c.get(
                    "/v1/alerts", params={"after": after, "limit": 7}, headers=tokens["alerts:read"]
                )
            assert r.status_code == 200, r.text
            page = r.json()
            if not page["items"]:
                break
            seen += page["items"]
            after = page["last_id"]
        ids = [int(str(alert["id"])) for alert in seen]
        assert ids == sorted(set(ids))
        # bob's reads through every replica: one alert per window among them all, counting
        # every read (an hour boundary during the run may make it two)
        read_alerts = [a for a in seen if a["type"] == "read.out_of_audience"]
        assert {int(str(a["access_log_id"])) for a in read_alerts} <= set(logged)
        assert sum(int(str(a["count"])) for a in read_alerts) == len(logged)
        assert len({a["window_end"] for a in read_alerts}) == len(read_alerts) <= 2
    finally:
        for replica in replicas:
            replica.stop()


@pytest.mark.parametrize("current", [True, False], ids=["current", "behind"])
def test_a_replica_starting_while_sqlite_is_write_locked_waits_or_needs_no_lock(
    tmp_path: Path, current: bool
) -> None:
    """A start during a long SQLite write (a scan, another replica's migration): a current
    database is read and left alone at once; one behind waits past the busy timeout."""
    path = tmp_path / "a.db"
    env = {**os.environ, "ACLAUDIT_DATABASE_URL": f"sqlite:///{path}"}
    if current:
        subprocess.run([ACLAUDIT, "db", "upgrade"], env=env, check=True, capture_output=True)
    holding = threading.Event()

    def long_writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(7)  # past the 5 s busy timeout
        conn.execute("ROLLBACK")
        conn.close()

    writer = threading.Thread(target=long_writer)
    writer.start()
    holding.wait()
    started = time.monotonic()
    try:
        done = subprocess.run(
            [ACLAUDIT, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
        )
        took = time.monotonic() - started
    finally:
        writer.join()
    assert done.returncode == 0, done.stderr
    assert "newest schema" in done.stderr + done.stdout
    if current:
        assert took < 5, "a current database waited for the write lock"
    else:
        assert "waiting for the database's write lock" in done.stderr
