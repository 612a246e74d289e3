"""The README's end-to-end flow, with aclaudit and the example activity store as real processes,
asserted from the outside over HTTP only.

A training service reads; an engineer reads through the over-broad ``group:all-employees`` grant;
the finding and the out-of-audience read are in the alert feed; the grant is revoked; the
engineer's next read is refused by the store.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.servers import ACLAUDIT, Server, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PREFIX = "employee_activity"


def aclaudit_cli(database_url: str, *args: str) -> str:
    env = {**os.environ, "ACLAUDIT_DATABASE_URL": database_url}
    done = subprocess.run(
        [ACLAUDIT, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class ActivityStore:
    """``python -m examples.activity_store`` in its own process group."""

    def __init__(self, aclaudit_url: str, token: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "ACTIVITY_STORE_ACLAUDIT_URL": aclaudit_url,
            "ACTIVITY_STORE_ACLAUDIT_TOKEN": token,
            "ACTIVITY_STORE_PORT": str(self.port),
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.activity_store"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the store exited; see {log}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the activity store did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """aclaudit with the demo organisation, and the store using a `check` token:
    (aclaudit url, store url, security-staff token)."""
    database_url = f"sqlite:///{tmp_path / 'aclaudit.db'}"
    aclaudit_cli(database_url, "demo")
    store_token = aclaudit_cli(
        database_url, "token", "create", "--name", "activity-store", "--scope", "check"
    )
    staff_token = aclaudit_cli(
        database_url,
        "token", "create", "--name", "security",
        "--scope", "audit:read", "--scope", "alerts:read", "--scope", "policy:write",
    )  # fmt: skip
    server = Server(database_url, log=tmp_path / "aclaudit.log").start()
    try:
        store = ActivityStore(server.url, store_token, tmp_path / "store.log")
        try:
            yield server.url, store.url, staff_token
        finally:
            store.stop()
    finally:
        server.stop()


def all_alerts(aclaudit: httpx.Client, after: int) -> tuple[list[dict[str, Any]], int]:
    """Poll the feed from ``after`` until caught up, as an alerting poller keeps ``last_id``."""
    items: list[dict[str, Any]] = []
    while True:
        feed = aclaudit.get("/v1/alerts", params={"after": after, "limit": 200}).json()
        items += feed["items"]
        if not feed["items"]:
            return items, after
        assert feed["last_id"] > after
        after = feed["last_id"]


def test_over_broad_grant_is_seen_read_through_alerted_and_revoked(running):
    aclaudit_url, store_url, staff_token = running
    staff = {"Authorization": f"Bearer {staff_token}"}
    with (
        httpx.Client(base_url=aclaudit_url, headers=staff, timeout=10) as aclaudit,
        httpx.Client(base_url=store_url, timeout=10) as store,
    ):

        def read(principal: str, kind: str, purpose: str, **params: Any) -> httpx.Response:
            return store.get(
                f"/v1/records/{kind}",
                params={"purpose": purpose, **params},
                headers={"X-Principal": principal},
            )

        _, last_id = all_alerts(aclaudit, 0)  # what the demo load already raised

        # 1. The training service reads a page of keystrokes: allowed, inside the audience.
        r = read("service:trainer", "keystrokes", "model-training", limit=5)
        assert r.status_code == 200, r.text
        trainer_read = r.json()
        subjects = [item["subject"] for item in trainer_read["items"]]
        assert len(subjects) == 5 and all(item["records"] for item in trainer_read["items"])
        assert trainer_read["decision"]["out_of_audience"] is False
        entry = aclaudit.get(f"/v1/access-log/{trainer_read['decision']['access_log_id']}").json()
        assert entry["principal"] == "service:trainer" and entry["decision"] == "allow"
        assert entry["dataset"] == f"{PREFIX}.keystrokes" and entry["caller"] == "activity-store"
        assert entry["data_subjects"] == subjects and entry["purpose"] == "model-training"

        # 2. An engineer (group:data, so group:all-employees) reads a colleague's transcripts.
        engineer = aclaudit.get("/v1/groups/data").json()["members"][0]
        colleague = subjects[0]
        r = read(engineer, "transcripts", "dashboard", subject=colleague)
        assert r.status_code == 200, r.text
        engineer_read = r.json()["decision"]
        assert engineer_read["out_of_audience"] is True

        # 3. The finding on the over-broad grant is open, and the alert feed has it and the read.
        grants = aclaudit.get(
            "/v1/grants", params={"principal": "group:all-employees", "resource": f"{PREFIX}.*"}
        ).json()["items"]
        assert len(grants) == 1
        grant_id = grants[0]["id"]
        assert engineer_read["grant_id"] == grant_id
        findings = aclaudit.get(
            "/v1/findings", params={"status": "open", "dataset": f"{PREFIX}.transcripts"}
        ).json()["items"]
        finding = next(f for f in findings if f["grant_id"] == grant_id)
        assert finding["severity"] == "critical" and finding["excess_count"] > 1000
        everything, _ = all_alerts(aclaudit, 0)
        # accepted weeks ago for the demo's pilot, reopened when the acceptance lapsed
        assert "finding.reopened" in {
            a["type"] for a in everything if a["finding_id"] == finding["id"]
        }
        new, last_id = all_alerts(aclaudit, last_id)
        out_of_audience = [a for a in new if a["type"] == "read.out_of_audience"]
        assert [a["access_log_id"] for a in out_of_audience] == [engineer_read["access_log_id"]]
        assert out_of_audience[0]["dataset"] == f"{PREFIX}.transcripts"
        reads = aclaudit.get(f"/v1/findings/{finding['id']}/reads").json()["items"]
        assert engineer_read["access_log_id"] in [e["id"] for e in reads]
        log = aclaudit.get(
            "/v1/access-log", params={"data_subject": colleague, "out_of_audience": "true"}
        ).json()["items"]
        assert [e["principal"] for e in log] == [engineer]

        # 4. Security revokes the grant: its findings resolve at once.
        r = aclaudit.delete(f"/v1/grants/{grant_id}")
        assert r.status_code == 200, r.text
        resolved = {f["id"] for f in r.json()["findings_resolved"]}
        assert finding["id"] in resolved
        assert aclaudit.get(f"/v1/findings/{finding['id']}").json()["status"] == "resolved"
        new, last_id = all_alerts(aclaudit, last_id)
        assert {a["finding_id"] for a in new if a["type"] == "finding.resolved"} == resolved

        # 5. The engineer's next read is refused by the store; the trainer still reads.
        r = read(engineer, "transcripts", "dashboard", subject=colleague)
        assert r.status_code == 403, r.text
        refused = r.json()
        assert "items" not in refused and refused["decision"]["reason"] == "no_grant"
        entry = aclaudit.get(f"/v1/access-log/{refused['decision']['access_log_id']}").json()
        assert entry["decision"] == "deny" and entry["principal"] == engineer
        assert read("service:trainer", "transcripts", "model-training", limit=1).status_code == 200
        assert aclaudit.get("/v1/access-log/verify").json()["ok"] is True
