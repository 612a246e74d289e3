"""The real ``aclaudit`` console script, on fresh SQLite databases."""

import asyncio
import getpass
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app import migrate
from app.auth import service as auth_service
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.main import create_app

ACLAUDIT = Path(sys.executable).with_name("aclaudit")


def _env(database: Path, url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLAUDIT_")}
    env["ACLAUDIT_DATABASE_URL"] = url or f"sqlite:///{database}"
    return env


# Nothing listens on port 1: the CLI must say so without printing the password.
UNREACHABLE = "postgresql://aclaudit:s3cret-pw@127.0.0.1:1/aclaudit"


def start(database: Path, *args: str, url: str | None = None) -> "subprocess.Popen[str]":
    database.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(ACLAUDIT), *args],
        env=_env(database, url),
        cwd=database.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: "subprocess.Popen[str]") -> "subprocess.CompletedProcess[str]":
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


async def create_token(database: Path, name: str, *scopes: str) -> str:
    """A token made in-process (each CLI run costs seconds of start-up)."""
    await asyncio.to_thread(migrate.upgrade, f"sqlite:///{database}")  # it runs its own loop
    engine = create_engine(Settings(database_url=f"sqlite:///{database}"))
    try:
        async with create_sessionmaker(engine, chain_key=None)() as session, session.begin():
            return await auth_service.create_token(session, name=name, scopes=list(scopes))
    finally:
        await engine.dispose()


@asynccontextmanager
async def api(database: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The service, in-process, on the database the CLI wrote."""
    app = create_app(Settings(database_url=f"sqlite:///{database}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test") as c:
            yield c


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


@dataclass(frozen=True)
class Run:
    database: Path
    result: "subprocess.CompletedProcess[str]"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every CLI run the tests look at, each on its own fresh database.

    Started together: each run spends seconds importing before it does anything.
    """
    root = tmp_path_factory.mktemp("cli")
    plan = {
        "upgrade": ["db", "upgrade"],
        "token": ["token", "create", "--name", "n", "--scope", "check"],
        "scim_token": ["scim", "token", "--name", "okta"],
        "unknown_scope": ["token", "create", "--name", "n", "--scope", "superuser"],
        "demo": ["demo"],
        "verify": ["log", "verify"],
        "half_anchor": ["log", "verify", "--anchor-id", "3"],
        "bad_anchor": ["log", "verify", "--anchor-id", "3", "--anchor-hash", "ABC"],
        "unreachable": ["db", "upgrade"],
    }
    databases = {name: root / name / "x.db" for name in plan}
    processes = {
        name: start(databases[name], *args, url=UNREACHABLE if name == "unreachable" else None)
        for name, args in plan.items()
    }
    done = {name: Run(databases[name], finish(p)) for name, p in processes.items()}
    done["demo_again"] = Run(databases["demo"], finish(start(databases["demo"], "demo")))
    return done


def test_db_upgrade_builds_a_fresh_database(runs: dict[str, Run]):
    database, result = runs["upgrade"].database, runs["upgrade"].result
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert {"alembic_version", "api_tokens", "admin_trail", "groups", "datasets", "grants"} <= (
        tables(database)
    )


async def test_scim_token_prints_only_a_token_for_the_scim_endpoints(runs: dict[str, Run]):
    database, result = runs["scim_token"].database, runs["scim_token"].result
    assert result.returncode == 0, result.stderr
    [token] = result.stdout.splitlines()
    headers = {"Authorization": f"Bearer {token}"}
    async with api(database) as client:
        r = await client.get("/scim/v2/Users", headers=headers)
        assert r.status_code == 200, r.text
        assert (await client.get("/v1/groups", headers=headers)).status_code == 403
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT name, scopes FROM api_tokens").fetchall() == [
            ("okta", '["scim"]')
        ]
    assert [e for e in trail(database) if e[1] == "CLI"] == [
        (f"cli:{getpass.getuser()}", "CLI", "aclaudit scim token", "name=okta", 200)
    ]


async def test_token_create_prints_only_a_token_that_authenticates(runs: dict[str, Run]):
    database, result = runs["token"].database, runs["token"].result
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip() == lines[0] != ""
    token = lines[0]
    reader = await create_token(database, "reader", "audit:read")

    async with api(database) as client:
        # Known but not allowed to read groups: 403, not 401.
        r = await client.get("/v1/groups", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403, r.text
        r = await client.get("/v1/groups", headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 200, r.text
        r = await client.get("/v1/groups", headers={"Authorization": f"Bearer {token}x"})
        assert r.status_code == 401
    with sqlite3.connect(database) as conn:
        stored = conn.execute("SELECT name, scopes, token_hash FROM api_tokens").fetchall()
    assert [(name, json.loads(scopes)) for name, scopes, _ in stored] == [
        ("n", ["check"]),
        ("reader", ["audit:read"]),
    ]
    assert all(token not in h for *_, h in stored)


def trail(database: Path) -> list[tuple[str, str, str, str, int]]:
    with sqlite3.connect(database) as conn:
        query = "SELECT token_name, method, path, query, status FROM admin_trail ORDER BY id"
        return conn.execute(query).fetchall()


def test_commands_leave_admin_trail_entries_naming_the_operator(runs: dict[str, Run]):
    operator = f"cli:{getpass.getuser()}"
    token = runs["token"]
    # (without the refusals counted when another test used this token against the API)
    assert [e for e in trail(token.database) if e[1] == "CLI"] == [
        (operator, "CLI", "aclaudit token create", "name=n&scope=check", 200)
    ]
    assert token.result.stdout.strip() not in repr(trail(token.database))
    assert trail(runs["demo"].database) == [(operator, "CLI", "aclaudit demo", "", 200)] * 2
    assert runs["verify"].result.returncode == 0, runs["verify"].result.stderr
    assert trail(runs["verify"].database) == [(operator, "CLI", "aclaudit log verify", "", 200)]


def test_token_create_with_an_unknown_scope_fails_and_says_what_is_valid(runs: dict[str, Run]):
    database, result = runs["unknown_scope"].database, runs["unknown_scope"].result
    assert result.returncode != 0
    assert result.stdout == ""
    assert "scope" in result.stderr
    for scope in ("check", "audit:read", "policy:write", "alerts:read", "admin"):
        assert scope in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == (0,)


def new_grants(stderr: str) -> int:
    match = re.search(r"(\d+) new grants", stderr)
    assert match, stderr
    return int(match.group(1))


def test_demo_is_idempotent(runs: dict[str, Run]):
    first, second = runs["demo"].result, runs["demo_again"].result
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert new_grants(first.stderr) > 0
    assert new_grants(second.stderr) == 0
    with sqlite3.connect(runs["demo"].database) as conn:
        rules = conn.execute(
            "SELECT principal, resource, action, effect FROM grants WHERE revoked_at IS NULL"
        ).fetchall()
    assert len(rules) == new_grants(first.stderr)
    assert len(set(rules)) == len(rules)


async def test_demo_loads_the_organisation_of_the_spec(runs: dict[str, Run]):
    database = runs["demo_again"].database
    headers = {"Authorization": f"Bearer {await create_token(database, 'auditor', 'audit:read')}"}
    async with api(database) as client:
        everyone = (await client.get("/v1/groups/all-employees", headers=headers)).json()
        assert everyone["transitive_member_count"] >= 2000
        assert all(m.startswith("group:") for m in everyone["members"])  # departments

        r = await client.get("/v1/datasets?limit=1000", headers=headers)
        activity = {
            d["id"]: d for d in r.json()["items"] if d["id"].startswith("employee_activity.")
        }
        assert set(activity) == {
            "employee_activity.keystrokes",
            "employee_activity.mouse_movements",
            "employee_activity.transcripts",
            "employee_activity.performance",
        }
        for dataset in activity.values():
            assert dataset["intended_audience"] == ["group:mci-research", "service:trainer"]

        r = await client.get(
            "/v1/grants?principal=group:all-employees&resource=employee_activity.*&action=read",
            headers=headers,
        )
        grants = r.json()["items"]
        assert [(g["effect"], g["status"]) for g in grants] == [("allow", "active")]

        research = (await client.get("/v1/groups/mci-research", headers=headers)).json()
        assert 0 < research["transitive_member_count"] < everyone["transitive_member_count"]


@pytest.mark.parametrize("run", ["half_anchor", "bad_anchor"])
def test_log_verify_refuses_an_incomplete_or_malformed_anchor(runs: dict[str, Run], run: str):
    """Checked after a restore: a typo must not turn into a pass without the anchor."""
    result = runs[run].result
    assert result.returncode == 2, result
    assert "anchor" in result.stderr and "ok:" not in result.stdout


def test_a_database_error_names_the_url_without_its_password(runs: dict[str, Run]):
    result = runs["unreachable"].result
    assert result.returncode == 2, result
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "aclaudit:***@127.0.0.1:1" in result.stderr


async def test_findings_lists_every_finding_past_the_first_thousand(
    client: httpx.AsyncClient, admin, database_url: str, tmp_path: Path
):
    """One over-broad grant on 1,050 datasets opens 1,050 findings: the CLI lists them all,
    in both formats, and says how many."""
    datasets = {
        f"bulk.d{n:04d}": {
            "owner": "group:owners",
            "sensitivity": "internal",
            "intended_audience": ["group:owners"],
        }
        for n in range(1050)
    }
    document = {
        "datasets": datasets,
        "grants": [
            {"principal": "user:outsider", "resource": "bulk.*", "action": "read"},
        ],
    }
    r = await client.post("/v1/policy/apply", json=document, headers=admin)
    assert r.status_code == 200, r.text
    assert len(r.json()["findings_opened"]) == 1050

    listed = start(tmp_path / "json" / "x.db", "findings", "--json", url=database_url)
    table = start(tmp_path / "table" / "x.db", "findings", url=database_url)
    # waited for off the event loop, where the app may be in the middle of a transaction
    listed_result = await asyncio.to_thread(finish, listed)
    table_result = await asyncio.to_thread(finish, table)
    assert listed_result.returncode == 0, listed_result.stderr
    found = json.loads(listed_result.stdout)
    assert sorted(f["dataset"] for f in found) == sorted(datasets)
    assert listed_result.stderr.strip().endswith("1050 open findings")
    assert table_result.returncode == 0, table_result.stderr
    rows = table_result.stdout.splitlines()[1:]  # below the header
    assert sorted(row.split()[-3] for row in rows) == sorted(datasets)
    assert table_result.stderr.strip().endswith("1050 open findings")
