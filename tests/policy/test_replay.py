"""`GET /v1/access-log/{id}/replay`: on random sequences of grants (some expiring within the
sequence), revokes, membership and audience changes, with every principal's checks after each
step, every entry's replay (its request decided again by the policy of its version, rebuilt
from the history, at its instant) equals the recorded decision, reason and audience flag; and
holds, expiries, 404, 410, 409 and the rebuild turn."""

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from app import migrate
from app.fairness import OneAtATime
from app.identity import provisioning
from tests.conftest import Tokens
from tests.identity.test_holds_scenarios import audience_owned_by_idp
from tests.identity.test_provisioning import idp
from tests.me.test_me import Served
from tests.policy.test_history_backfill import in_app
from tests.policy.test_history_matches_casbin import (
    Example,
    Step,
    dataset_body,
    run_step,
)

EXPIRY = timedelta(milliseconds=150)  # an expiring grant lapses a step or two later

replay_steps = st.lists(
    st.tuples(
        st.sampled_from(["grant", "grant", "expiring", "revoke", "join", "leave", "audience"]),
        st.integers(0, 63),
        st.integers(0, 63),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


async def step(client: httpx.AsyncClient, admin: dict[str, str], ex: Example, s: Step) -> None:
    kind, i, j, _flag = s
    if kind != "expiring":
        await run_step(client, admin, ex, s)
        return
    body = {
        "principal": ex.subject(i),
        "resource": ex.resource(j),
        "action": "read",
        "effect": "allow",
        "expires_at": (datetime.now(UTC) + EXPIRY).isoformat(),
    }
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.status_code == 201, r.text


async def check_everyone(client: httpx.AsyncClient, served: Served, ex: Example) -> list[int]:
    """Every leaf's read of every dataset (and of one never registered), logged."""
    datasets = [*ex.datasets, f"{ex.prefix}.unregistered"]
    checks = [
        {"principal": leaf, "dataset": dataset, "action": "read"}
        for leaf, dataset in itertools.product(ex.leaves, datasets)
    ]
    r = await client.post("/v1/check/batch", json={"checks": checks}, headers=served.check_headers)
    assert r.status_code == 200, r.text
    return [result["access_log_id"] for result in r.json()["results"]]


async def replayed(client: httpx.AsyncClient, headers: dict[str, str], entry_id: int) -> Any:
    r = await client.get(f"/v1/access-log/{entry_id}/replay", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def assert_replays_match(
    client: httpx.AsyncClient, headers: dict[str, str], ids: list[int]
) -> None:
    for entry_id in ids:
        entry = (await client.get(f"/v1/access-log/{entry_id}", headers=headers)).json()
        body = await replayed(client, headers, entry_id)
        assert body["recorded"] == {
            "decision": entry["decision"],
            "reason": entry["reason"],
            "out_of_audience": entry["out_of_audience"],
        }
        assert body["replayed"] == body["recorded"], body
        assert body["matches"] is True
        assert body["policy_version"] == entry["policy_version"]


EXAMPLES = itertools.count()


@examples(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=replay_steps)
def test_every_entry_replays_to_its_recorded_decision_and_reason(
    served: Served,
    admin_headers: dict[str, str],
    sequence: list[Step],
) -> None:
    ex = Example(next(EXAMPLES))
    client = served.client
    ids: list[int] = []
    for dataset in ex.datasets:
        body = dataset_body(ex.audiences[dataset])
        r = served.run(client.put(f"/v1/datasets/{dataset}", json=body, headers=admin_headers))
        assert r.status_code == 201, r.text
    ids += served.run(check_everyone(client, served, ex))
    for s in sequence:
        served.run(step(client, admin_headers, ex, s))
        ids += served.run(check_everyone(client, served, ex))
    served.run(asyncio.sleep(EXPIRY.total_seconds()))  # the expiring grants have lapsed
    ids += served.run(check_everyone(client, served, ex))
    served.run(assert_replays_match(client, admin_headers, ids))


async def test_an_expired_grant_replays_as_expired_and_a_live_one_as_granted(
    client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
) -> None:
    body = {"owner": "group:o", "sensitivity": "internal", "intended_audience": []}
    assert (await client.put("/v1/datasets/x.y", json=body, headers=admin)).status_code == 201
    expires = datetime.now(UTC) + timedelta(milliseconds=300)
    grant = {"principal": "user:a", "resource": "x.y", "action": "read", "effect": "allow"}
    r = await client.post(
        "/v1/grants", json={**grant, "expires_at": expires.isoformat()}, headers=admin
    )
    assert r.status_code == 201, r.text
    check = {"principal": "user:a", "dataset": "x.y", "action": "read"}
    live = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    await asyncio.sleep(0.35)
    lapsed = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    assert (live["reason"]["code"], lapsed["reason"]["code"]) == ("granted", "grant_expired")
    assert live["policy_version"] == lapsed["policy_version"]  # only the instant differs
    for result in (live, lapsed):
        body = await replayed(client, tokens["audit:read"], result["access_log_id"])
        assert body["replayed"]["reason"] == result["reason"], body
        assert body["matches"] is True


async def test_a_held_membership_replays_as_held(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
) -> None:
    await audience_owned_by_idp(app, client, admin)
    check = {"principal": "user:u1", "dataset": "act.keys", "action": "read", "purpose": "p"}
    before = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    await idp(app, provisioning.change_members, group="group:sec", remove=["user:u1"])
    held = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    assert (before["reason"]["code"], held["reason"]["code"]) == ("granted", "held_by_guard")
    await assert_replays_match(client, admin, [before["access_log_id"], held["access_log_id"]])


async def test_a_check_before_any_policy_change_replays(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Version 0, recorded where the history begins (the migration): nothing registered."""
    check = {"principal": "user:a", "dataset": "x.y", "action": "read"}
    result = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    assert (result["policy_version"], result["reason"]["code"]) == (0, "unknown_dataset")
    body = await replayed(client, tokens["audit:read"], result["access_log_id"])
    assert body["matches"] is True and body["replayed"]["reason"] == result["reason"]


async def test_replay_of_an_unknown_entry_is_404(client: httpx.AsyncClient, tokens: Tokens) -> None:
    r = await client.get("/v1/access-log/99/replay", headers=tokens["audit:read"])
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_an_entry_from_before_the_history_is_409_and_one_of_the_migrated_version_replays(
    tmp_path: Path,
) -> None:
    """A database migrated to 0012 with entries: the version current then is recorded (the
    backfill is its policy); an entry of an older version cannot be replayed."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    migrate.upgrade(url)
    check = {"principal": "user:amy", "dataset": "a.b", "action": "read"}
    grant = {"principal": "user:amy", "resource": "a.*", "action": "read", "effect": "allow"}

    async def seed(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> list[Any]:
        body = {"owner": "group:o", "sensitivity": "internal", "intended_audience": []}
        assert (await client.put("/v1/datasets/a.b", json=body, headers=admin)).is_success
        older = (await client.post("/v1/check", json=check, headers=admin)).json()
        assert (await client.post("/v1/grants", json=grant, headers=admin)).is_success
        current = (await client.post("/v1/check", json=check, headers=admin)).json()
        return [older, current]

    older, current = asyncio.run(in_app(url, seed))
    assert (older["policy_version"], current["policy_version"]) == (1, 2)
    config = migrate.alembic_config(url)
    command.downgrade(config, "0011")  # a database from before the history
    command.upgrade(config, "head")

    async def ask(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
        r = await client.get(f"/v1/access-log/{older['access_log_id']}/replay", headers=admin)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/before-history")
        assert "policy version 1" in r.json()["detail"]
        r = await client.get(f"/v1/access-log/{current['access_log_id']}/replay", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["matches"] is True
        assert r.json()["replayed"]["reason"]["code"] == "granted"

    asyncio.run(in_app(url, ask))


async def test_replays_take_turns_with_at_requests(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """One rebuild at a time per caller: a replay while the caller's other one waits is 429."""
    body = {"owner": "group:o", "sensitivity": "internal", "intended_audience": []}
    assert (
        await client.put("/v1/datasets/x.y", json=body, headers=tokens["admin"])
    ).status_code == 201
    check = {"principal": "user:a", "dataset": "x.y", "action": "read"}
    result = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
    url = f"/v1/access-log/{result['access_log_id']}/replay"
    gate: OneAtATime = app.state.rebuilds
    async with gate.turn("someone else"):  # the turn is taken: this caller's first one waits
        first = asyncio.create_task(client.get(url, headers=tokens["audit:read"]))
        while not gate.waiting:  # noqa: ASYNC110  (the gate offers no event to wait on)
            await asyncio.sleep(0.01)
        second = await client.get(url, headers=tokens["audit:read"])
    assert second.status_code == 429, second.text
    assert (await first).status_code == 200
