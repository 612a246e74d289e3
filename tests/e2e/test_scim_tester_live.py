"""scim2-tester's compliance checks (RFC 7643/7644) over HTTP against a real `aclaudit serve`
with 2 workers, on a fresh database: none fails.

Skipped, and why (the only checks allowed not to succeed; none is disabled by tag):
- `search_with_attributes`, for User and for Group: it POSTs to /.search at the root, a search
  across resource types, which this service does not offer: 501 NotImplemented, which the tester
  reports as SKIPPED. /Users/.search and /Groups/.search are served.
"""

import asyncio
import collections
from pathlib import Path

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server

from tests.conftest import Tokens
from tests.e2e.servers import Server

pytestmark = pytest.mark.slow
ALLOWED_SKIPS = {("User", "search_with_attributes"), ("Group", "search_with_attributes")}


def run_checks(url: str, headers: dict[str, str]) -> list[CheckResult]:
    with httpx2.Client(base_url=f"{url}/scim/v2", headers=headers, timeout=30) as http:
        return list(check_server(SyncSCIMClient(http), raise_exceptions=False))


async def test_scim2_tester_finds_no_fault_in_the_live_service(
    database_url: str, tokens: Tokens, tmp_path: Path
):
    server = Server(database_url, workers=2, log=tmp_path / "server.log").start()
    try:
        results = await asyncio.to_thread(run_checks, server.url, tokens["scim"])
    finally:
        server.stop()
    tally = collections.Counter(r.status.name for r in results)
    failed = [
        f"{r.status.name} {r.resource_type} {r.title}: {str(r.reason)[:300]}"
        for r in results
        if r.status != Status.SUCCESS
        and not (r.status == Status.SKIPPED and (r.resource_type, r.title) in ALLOWED_SKIPS)
    ]
    assert not failed, "\n".join(failed)
    skipped = {(r.resource_type, r.title) for r in results if r.status == Status.SKIPPED}
    assert skipped == ALLOWED_SKIPS, skipped
    assert tally["SUCCESS"] >= 130, tally
    print(f"scim2-tester live: {dict(tally)}")
