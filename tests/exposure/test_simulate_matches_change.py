"""Simulate a single grant or revoke, then make it: the simulation says what the change does
(including accepted findings the change widens, which open again)."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.approvals.support import approved

USERS = [f"user:u{i}" for i in range(10)]
GROUPS = ["group:a", "group:b", "group:c"]
DATASETS = ["ds.one", "ds.two", "ds.three"]


def key(f: dict[str, Any]) -> tuple[Any, ...]:
    return (
        f["dataset"],
        f["principal"],
        f["excess_count"],
        sorted(f["excess_sample"]),
        f["severity"],
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_simulate_says_what_the_change_does(client, admin, tokens, seed):
    rng = random.Random(seed)
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    for dataset in DATASETS:
        body = {
            "owner": "group:a",
            "sensitivity": "internal",
            "intended_audience": rng.sample(USERS + GROUPS, 2),
            "guard": rng.choice(["alert", "block"]),
        }
        assert (
            await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
        ).status_code == 201
    for gid in GROUPS:
        r = await client.put(
            f"/v1/groups/{gid[6:]}/members", json={"members": rng.sample(USERS, 3)}, headers=admin
        )
        assert r.status_code == 200
    grants: list[int] = []
    mismatches: list[tuple[Any, ...]] = []
    for step in range(80):
        if grants and rng.random() < 0.3:
            grant_id = grants[rng.randrange(len(grants))]
            sim = (
                await client.post("/v1/grants/simulate", json={"remove": [grant_id]}, headers=admin)
            ).json()
            r = await client.delete(f"/v1/grants/{grant_id}", headers=admin)
            if r.status_code == 200:
                grants.remove(grant_id)
                got_open = sorted(map(key, r.json()["findings_opened"]))
                got_res = sorted(map(key, r.json()["findings_resolved"]))
                refused: list[tuple[Any, ...]] = []
            else:
                got_open, got_res = [], []
                refused = sorted(map(key, r.json()["findings"]))
        else:
            grant: dict[str, Any] = {
                "principal": rng.choice(USERS + GROUPS),
                "resource": rng.choice(["ds.*", *DATASETS]),
                "action": rng.choice(["read", "export"]),
                "effect": rng.choice(["allow", "allow", "deny"]),
            }
            if rng.random() < 0.2:
                grant["expires_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            if rng.random() < 0.2:
                grant["accept_exposure"] = {"reason": "r", "until": until}
            sim = (
                await client.post("/v1/grants/simulate", json={"add": [grant]}, headers=admin)
            ).json()
            r = await client.post("/v1/grants", json=grant, headers=admin)
            made = r.json()
            if r.status_code == 403:  # accepted on a block dataset: simulate says what the
                # approved request does
                plain = {k: v for k, v in grant.items() if k != "accept_exposure"}
                r = await approved(
                    client, tokens["policy:write"], admin, "POST", "/v1/grants", plain,
                    reason="r", until=until,
                )  # fmt: skip
                made = r.json()["result"]
            if r.status_code in (200, 201):
                grants.append(made["id"])
                got_open = sorted(map(key, made["findings_opened"]))
                got_res = sorted(map(key, made["findings_resolved"]))
                refused = []
            else:
                assert r.status_code == 409, r.text
                got_open, got_res = [], []
                refused = sorted(map(key, r.json()["findings"]))
        want_refused = sorted(map(key, sim["would_refuse"]))
        if refused or want_refused:
            if refused != want_refused:
                mismatches.append((step, "refused", want_refused, refused))
            continue
        if sorted(map(key, sim["would_open"])) != got_open:
            mismatches.append((step, "open", sorted(map(key, sim["would_open"])), got_open))
        if sorted(map(key, sim["would_resolve"])) != got_res:
            mismatches.append((step, "resolve", sorted(map(key, sim["would_resolve"])), got_res))
    for m in mismatches[:4]:
        print(m)
    assert not mismatches
