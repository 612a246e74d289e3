"""aclaudit as a benchmark target: fresh database, server, tokens, and the policy.

The policy is written straight into the migrated database (`seed_policy`, SQLAlchemy Core bulk
inserts into the real tables, then one policy-version bump), which takes seconds; loading 10k
grants through the HTTP API (`load_policy`, kept for ``--load-over-http``) takes most of an
hour because every grant re-analyses exposure. The server builds its decision index from those
tables exactly as it would after API calls, and the benchmark cross-checks its answers against
Cerbos and the reference before timing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.procs import LOOPBACK, BenchError, Server, free_port, running
from bench.workload import ACTION, Workload

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "aclaudit_bench"


def cli_path() -> Path:
    """The ``aclaudit`` console script of the interpreter running the benchmark (the venv)."""
    path = Path(sys.executable).parent / "aclaudit"
    if not path.exists():
        raise BenchError(f"no aclaudit console script at {path}: run from the project's venv")
    return path


def environment(database_url: str, checkpoint_key: str | None = None) -> dict[str, str]:
    """The benchmark's own environment without any ACLAUDIT_ setting but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLAUDIT_")}
    env["ACLAUDIT_DATABASE_URL"] = database_url
    env["ACLAUDIT_LOG_LEVEL"] = "WARNING"
    if checkpoint_key:
        env["ACLAUDIT_CHECKPOINT_KEY"] = checkpoint_key
    return env


def create_token(database_url: str, name: str, scope: str) -> str:
    result = subprocess.run(
        [str(cli_path()), "token", "create", "--name", name, "--scope", scope],
        env=environment(database_url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    token = result.stdout.strip()
    if result.returncode != 0 or not token or len(token.split()) != 1:
        raise BenchError(
            f"aclaudit token create --name {name} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return token


async def _recreate_pg(drop_only: bool) -> None:
    import asyncpg  # the project's PostgreSQL driver

    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"cannot reach PostgreSQL at {PG_ADMIN_DSN}: {exc}") from exc
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()


def recreate_pg_database() -> str:
    """Drop and create the benchmark database; returns its URL."""
    asyncio.run(_recreate_pg(drop_only=False))
    return f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"


def drop_pg_database() -> None:
    asyncio.run(_recreate_pg(drop_only=True))


@contextmanager
def serve(
    database_url: str,
    log_path: Path,
    ready_timeout: float = 120.0,
    *,
    cpus: str | None = None,
    checkpoint_key: str | None = None,
) -> Iterator[Server]:
    """``aclaudit serve --workers 1`` on a free loopback port (it applies migrations itself),
    on `cpus` only when given, signing its log's heads with `checkpoint_key` when given."""
    port = free_port()
    argv = [str(cli_path()), "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "1"]
    with running(
        "aclaudit",
        argv,
        base_url=f"http://{LOOPBACK}:{port}",
        ready_path="/healthz",
        log_path=log_path,
        env=environment(database_url, checkpoint_key),
        cwd=REPO,
        ready_timeout=ready_timeout,
        cpus=cpus,
    ) as server:
        yield server


async def _seed(database_url: str, workload: Workload) -> None:
    from sqlalchemy import insert, update

    from app.config import Settings
    from app.datasets.models import Dataset
    from app.db import create_engine, utcnow
    from app.directory.models import Group, Membership
    from app.policy.models import Grant as GrantRow
    from app.policy_version import PolicyVersion

    org = workload.org
    now = utcnow()
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.begin() as conn:
            groups = [{"id": f"group:{g}", "created_at": now} for g in org.memberships]
            await conn.execute(insert(Group), groups)
            links = [
                {"group_id": group, "member": member, "created_at": now, "created_by": "bench"}
                for member, group in org.links()
            ]
            await conn.execute(insert(Membership), links)
            datasets = [
                {
                    "id": dataset,
                    "description": "",
                    "owner": org.owner(dataset),
                    "sensitivity": "internal",
                    "intended_audience": [org.owner(dataset)],
                    "guard": "alert",
                    "created_at": now,
                    "updated_at": now,
                    "updated_by": "bench",
                }
                for dataset in org.datasets
            ]
            # Every check names a purpose (check_body): on trees with purposes (issue #21) the
            # datasets require one, so the check path asks about it.
            if hasattr(Dataset, "purpose_required"):
                for row in datasets:
                    row["purpose_required"] = True
            await conn.execute(insert(Dataset), datasets)
            grants = [
                {
                    "principal": grant.principal,
                    "resource": grant.resource,
                    "action": ACTION,
                    "effect": grant.effect,
                    "expires_at": None,
                    "justification": "bench",
                    "created_by": "bench",
                    "created_at": now,
                }
                for grant in workload.grants
            ]
            for start in range(0, len(grants), 5000):
                await conn.execute(insert(GrantRow), grants[start : start + 5000])
            await conn.execute(
                update(PolicyVersion)
                .where(PolicyVersion.id == 1)
                .values(version=PolicyVersion.version + 1, updated_at=now)
            )
    finally:
        await engine.dispose()


def seed_policy(database_url: str, workload: Workload) -> float:
    """Migrate, then write the organisation, datasets and grants in one transaction.

    Returns the seconds taken. Exposure findings are not computed (the check path does not use
    them; ``aclaudit scan`` would).
    """
    from app import migrate

    started = time.monotonic()
    migrate.upgrade(database_url)
    asyncio.run(_seed(database_url, workload))
    return time.monotonic() - started


def check_body(principal: str, dataset: str, request_id: str) -> dict[str, Any]:
    return {
        "principal": principal,
        "dataset": dataset,
        "action": ACTION,
        "purpose": "bench",
        "request_id": request_id,
    }


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any]


class _Progress:
    def __init__(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done, self.retries = stage, total, 0, 0
        self.started = time.monotonic()
        self._shown = -1

    def step(self) -> None:
        self.done += 1
        percent = self.done * 100 // self.total
        if percent != self._shown or self.done == self.total:
            self._shown = percent
            rate = self.done / max(time.monotonic() - self.started, 1e-6)
            end = "\n" if self.done == self.total else ""
            retried = f", {self.retries} retried after 503" if self.retries else ""
            sys.stderr.write(
                f"\r    {self.stage:<9} {self.done:>6}/{self.total} ({percent:>3}%, "
                f"{rate:,.0f}/s{retried}){end}"
            )
            sys.stderr.flush()


@asynccontextmanager
async def _client(base_url: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(120.0),
        limits=limits,
    ) as client:
        yield client


async def _send_all(
    client: httpx.AsyncClient, stage: str, calls: list[Call], concurrency: int
) -> None:
    if not calls:
        return
    progress = _Progress(stage, len(calls))
    queue: asyncio.Queue[Call] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)

    async def worker() -> None:
        while True:
            try:
                call = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await _send(client, call, progress)
            progress.step()

    await _gather([worker() for _ in range(max(1, concurrency))])


RETRIES = 8


async def _send(client: httpx.AsyncClient, call: Call, progress: _Progress) -> None:
    """One API call; a 503 (e.g. SQLite busy) is retried as its Retry-After header asks."""
    for attempt in range(RETRIES + 1):
        response = await client.request(call.method, call.path, json=call.body)
        if response.status_code in (200, 201):
            return
        if response.status_code != 503 or attempt == RETRIES:
            break
        progress.retries += 1
        retry_after = response.headers.get("Retry-After", "1")
        await asyncio.sleep(float(retry_after) if retry_after.isdigit() else 1.0)
    raise BenchError(
        f"{call.method} {call.path} {call.body} -> {response.status_code}: {response.text[:500]}"
    )


def _policy_calls(workload: Workload) -> list[tuple[str, list[Call], bool]]:
    """(stage, calls, may run concurrently) in the order they must be applied."""
    org = workload.org
    # Leaves first: teams, then departments, then everyone (memberships is in that order).
    groups = [
        Call("PUT", f"/v1/groups/{group}/members", {"members": members})
        for group, members in org.memberships.items()
    ]
    datasets = [
        Call(
            "PUT",
            f"/v1/datasets/{dataset}",
            {
                "owner": org.owner(dataset),
                "sensitivity": "internal",
                "intended_audience": [org.owner(dataset)],
            },
        )
        for dataset in org.datasets
    ]
    grants = [
        Call(
            "POST",
            "/v1/grants",
            {
                "principal": grant.principal,
                "resource": grant.resource,
                "action": ACTION,
                "effect": grant.effect,
                "justification": "bench",
            },
        )
        for grant in workload.grants
    ]
    return [("groups", groups, False), ("datasets", datasets, True), ("grants", grants, True)]


async def load_policy(
    base_url: str, admin_token: str, workload: Workload, concurrency: int
) -> float:
    """Load the organisation, datasets and grants through the API; returns the seconds taken."""
    started = time.monotonic()
    async with _client(base_url, admin_token) as client:
        for stage, calls, concurrent in _policy_calls(workload):
            await _send_all(client, stage, calls, concurrency if concurrent else 1)
    return time.monotonic() - started


async def decisions(
    base_url: str, token: str, bodies: list[dict[str, Any]], concurrency: int = 4
) -> list[str]:
    """aclaudit's ``decision`` for each body; raises unless every answer is a 200."""
    results = [""] * len(bodies)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int, client: httpx.AsyncClient) -> None:
        async with semaphore:
            response = await client.post("/v1/check", json=bodies[i])
        if response.status_code == 404 and "decision" not in response.text:
            raise EndpointMissing(response.text[:200])
        if response.status_code != 200:
            raise BenchError(
                f"POST /v1/check {bodies[i]} -> {response.status_code}: {response.text[:500]}"
            )
        results[i] = response.json()["decision"]

    async with _client(base_url, token) as client:
        await _gather([one(i, client) for i in range(len(bodies))])
    return results


async def _gather(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run the jobs concurrently; the first failure cancels the rest and is raised as is."""
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


class EndpointMissing(BenchError):
    """POST /v1/check answers 404: the endpoint is not built yet."""
