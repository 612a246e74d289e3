"""kill -9 of a real `aclaudit log archive` at any point never loses an entry: each entry is
in the database or in a recorded, verifying segment; a rerun cleans up and finishes."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.accesslog import repository
from app.config import Settings
from tests.accesslog.archive_helpers import (
    EVERY,
    KEY,
    archive_settings,
    check_archive,
    make_batches,
)
from tests.accesslog.paused_archive import STEPS

ACLAUDIT = Path(sys.executable).with_name("aclaudit")
# `aclaudit` with a pause at a named step (the service has no pause of its own)
PAUSED = Path(__file__).with_name("paused_archive.py")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return archive_settings(database_url)


def archive_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLAUDIT_")}
    env.update(
        ACLAUDIT_DATABASE_URL=database_url,
        ACLAUDIT_CHECKPOINT_EVERY=str(EVERY),
        ACLAUDIT_CHECKPOINT_KEY=KEY,
    )
    return env


def start_archive(
    database_url: str,
    directory: Path,
    pause_at: str | None = None,
    *,
    segment_entries: int = EVERY,
    env: dict[str, str] | None = None,
):
    command = [str(ACLAUDIT)] if pause_at is None else [sys.executable, str(PAUSED), pause_at]
    return subprocess.Popen(
        [
            *command,
            *("log", "archive", "--before", "2100-01-01T00:00:00Z"),
            *("--to", str(directory), "--segment-entries", str(segment_entries)),
        ],
        env={**archive_env(database_url), **(env or {})},
        cwd=directory.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], start: str) -> bool:
    """Read the command's stderr up to a line that starts with `start` (False: the command
    ended without printing one, successfully)."""
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if line.strip().startswith(start):
            return True
        if not line:
            _, err = process.communicate(timeout=30)  # closes the pipes
            if process.returncode == 0:
                return False
            seen.append(err)
            break
    process.kill()
    process.communicate(timeout=30)
    raise AssertionError(f"never printed {start!r}: {''.join(seen)}")


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


async def assert_nothing_lost(client, admin, sessionmaker, settings, directory, head: int) -> int:
    """Every entry 1..head is in a verifying recorded segment or in the database, which
    verifies as one chain with the archive. Returns how many entries are archived."""
    archived = await check_archive(sessionmaker, settings, directory)
    assert archived.ok, archived
    r = await client.get("/v1/access-log/verify?full=true", headers=admin)
    result = r.json()
    assert result["ok"] is True, result
    assert result["entries"] == head
    async with sessionmaker() as session:
        records = await repository.archive_records(session)
        through = records[-1].last_id if records else 0
        rows = await repository.entry_rows(session, after=0, up_to=head)
    assert [row["id"] for row in rows] == list(range(through + 1, head + 1))
    return archived.entries


def finish_archive(database_url: str, directory: Path) -> None:
    process = start_archive(database_url, directory)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err


@pytest.mark.parametrize("step", STEPS)
async def test_kill_at_each_step_loses_nothing_and_a_rerun_finishes(
    step, client, tokens, admin, sessionmaker, settings, database_url, tmp_path
):
    await make_batches(client, tokens, admin, 3)
    directory = tmp_path / "archive"
    process = start_archive(database_url, directory, pause_at=step)
    assert wait_for_line(process, f"paused at {step}")
    kill(process)
    archived = await assert_nothing_lost(client, admin, sessionmaker, settings, directory, 30)
    assert archived == (10 if step == "committed" else 0)

    finish_archive(database_url, directory)
    assert await assert_nothing_lost(client, admin, sessionmaker, settings, directory, 30) == 30
    leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert len(list(directory.glob("*.manifest.json"))) == 3


async def test_kill_after_random_delays_never_loses_an_entry(
    client, tokens, admin, sessionmaker, settings, database_url, tmp_path
):
    """Killed a random few milliseconds into the work (after start-up), several times over."""
    await make_batches(client, tokens, admin, 30)
    directory = tmp_path / "archive"
    chance = random.Random(22)
    progress = []
    for _ in range(5):
        process = start_archive(database_url, directory)
        if not wait_for_line(process, "segment 1/"):
            break  # a kill landed after the last segment: nothing was left to do
        await asyncio.sleep(chance.uniform(0.0, 0.25))
        kill(process)
        progress.append(
            await assert_nothing_lost(client, admin, sessionmaker, settings, directory, 300)
        )
    finish_archive(database_url, directory)
    assert await assert_nothing_lost(client, admin, sessionmaker, settings, directory, 300) == 300
    assert progress == sorted(progress), progress
    assert progress[0] < 300  # the kills did land in the middle of the work
