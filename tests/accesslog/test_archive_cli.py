"""`aclaudit log verify --archive DIR` verifies archive and database as one chain and names a
tampered segment; `aclaudit log archive` refuses an instant without an offset."""

import subprocess

import pytest

from app.config import Settings
from tests.accesslog.archive_helpers import archive_settings, make_batches, rewrite_segment
from tests.accesslog.test_archive_crash import ACLAUDIT, archive_env, finish_archive


@pytest.fixture
def settings(database_url: str) -> Settings:
    return archive_settings(database_url)


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACLAUDIT), *args],
        env=archive_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_verify_with_the_archive_passes_then_names_the_tampered_segment(
    client, tokens, admin, database_url, tmp_path
):
    await make_batches(client, tokens, admin, 3)
    directory = tmp_path / "archive"
    finish_archive(database_url, directory)
    await make_batches(client, tokens, admin, 1)

    ok = run(database_url, "log", "verify", "--archive", str(directory))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok: 40 entries (30 of them in 3 archived segments, verified)" in ok.stdout

    segment = directory / "access-log-000000000011-000000000020.jsonl.gz"
    rewrite_segment(segment, lambda e: {**e, "decision": "deny"} if e["id"] == 12 else e)
    bad = run(database_url, "log", "verify", "--archive", str(directory))
    assert bad.returncode == 1
    assert (
        "TAMPERED: archive: segment access-log-000000000011-000000000020: segment "
        "access-log-000000000011-000000000020 was altered" in bad.stdout
    )


def test_archive_refuses_an_instant_without_an_offset(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    done = run(url, "log", "archive", "--before", "2026-01-01T00:00", "--to", str(tmp_path))
    assert done.returncode == 2 and "RFC 3339" in done.stderr
