"""Shared by the archive tests: a signed log with a checkpoint every 10 entries."""

import gzip
import json
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import archiver, repository
from app.config import Settings

KEY = "archive-test-key-0123456789abcdef-0123456789"
EVERY = 10


def archive_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, checkpoint_every=EVERY, checkpoint_key=KEY)


async def make_batches(client: httpx.AsyncClient, tokens, admin, batches: int) -> None:
    """`batches` checks of 10 entries each: one checkpoint at the end of each."""
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
    for b in range(batches):
        checks = [
            {
                "principal": f"user:u{b}x{i}",
                "dataset": "activity.keys",
                "action": "read",
                "data_subjects": [f"user:s{i}"],
            }
            for i in range(EVERY)
        ]
        r = await client.post("/v1/check/batch", json={"checks": checks}, headers=tokens["check"])
        assert r.status_code == 200, r.text


async def at_of(client: httpx.AsyncClient, admin, entry_id: int) -> datetime:
    r = await client.get(f"/v1/access-log/{entry_id}", headers=admin)
    assert r.status_code == 200, r.text
    return datetime.fromisoformat(r.json()["at"])


async def check_archive(
    maker: async_sessionmaker[AsyncSession], settings: Settings, directory: Path
) -> archiver.ArchiveVerified:
    async with maker() as session:
        records = await repository.archive_records(session)
    return archiver.check_archive(
        records, directory, settings.checkpoint_key_bytes, settings.checkpoint_key_since, print
    )


def rewrite_segment(path: Path, edit) -> None:
    """Decompress, edit each entry (a function of the parsed line), compress again."""
    with gzip.open(path, "rb") as f:
        lines = [json.loads(line) for line in f]
    with gzip.open(path, "wb") as f:
        for doc in lines:
            f.write(json.dumps(edit(doc), sort_keys=True, separators=(",", ":")).encode() + b"\n")
