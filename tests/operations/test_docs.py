"""The operator docs stay true: the alerting rules are valid and name metrics that exist."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "alerts.rules.yml"
SUFFIXES = ("_bucket", "_count", "_sum")


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_have_the_fields_prometheus_and_receivers_need():
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names))
    assert {"AclauditCriticalFindingOpen", "AclauditOutOfAudienceReads"} <= set(names)
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["expr"].strip()
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]


# The access log's partitions: PostgreSQL only.
POSTGRES_ONLY = {
    "aclaudit_access_log_partition_headroom_entries",
    "aclaudit_access_log_partition_entries",
}


async def test_rules_name_only_metrics_that_the_service_exposes(client, tokens, settings):
    text = (await client.get("/metrics", headers=tokens["metrics:read"])).text
    exposed = set(re.findall(r"^(aclaudit_\w+)", text, re.MULTILINE))
    for rule in rules():
        for name in re.findall(r"\baclaudit_\w+", rule["expr"]):
            if settings.is_sqlite and name in POSTGRES_ONLY:
                assert name not in exposed
                continue
            assert name in exposed, f"{rule['alert']} uses {name}, which /metrics lacks"


# .ci/run installs promtool and sets ACLAUDIT_REQUIRE_PROMTOOL, so CI never skips these.
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("ACLAUDIT_REQUIRE_PROMTOOL"),
    reason="promtool is not installed (Debian package prometheus)",
)


@needs_promtool
def test_promtool_accepts_the_rules():
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_critical_finding_and_out_of_audience_alerts_fire_as_documented():
    tests = RULES.with_name("alerts.rules.test.yml")
    result = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
