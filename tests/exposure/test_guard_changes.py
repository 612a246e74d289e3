"""Moving a dataset's guard is a guarded change: a block guard cannot be switched off and on
around a widening grant, an omitted guard keeps the stored one, and every move is alerted."""

from typing import Any

import httpx

from tests.approvals.support import request
from tests.exposure.test_guard_gaps import (
    ACCEPT,
    check,
    dataset,
    dataset_approved,
    findings,
    grant,
    grant_approved,
    members,
)

GUARD_CHANGED = "dataset.guard_changed"


async def org(client: httpx.AsyncClient, admin) -> None:
    """research = {r1}; all = {a1, a2, research}; act.keys is restricted (block) for research."""
    assert (await members(client, admin, "research", ["user:r1"])).status_code == 200
    r = await members(client, admin, "all", ["user:a1", "user:a2", "group:research"])
    assert r.status_code == 200
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201


async def alerts_after(client: httpx.AsyncClient, admin, last: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await client.get("/v1/alerts", params={"after": last}, headers=admin)
    ).json()["items"]
    return items


async def last_alert(client: httpx.AsyncClient, admin) -> int:
    return int((await client.get("/v1/alerts", headers=admin)).json()["last_id"])


async def stored(client: httpx.AsyncClient, admin, id: str = "act.keys") -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/datasets/{id}", headers=admin)).json()
    return body


async def test_a_block_guard_cannot_be_switched_off_and_on_around_a_widening_grant(
    client, admin, tokens
):
    await org(client, admin)
    # A PUT that omits the guard (here: a new description) no longer resets it to alert.
    r = await dataset(client, admin, "act.keys", ["group:research"], description="keys")
    assert r.status_code == 200, r.text
    assert r.json()["guard"] == "block"
    assert r.json()["guard_changed"] is None
    # Switching it off is refused, so the grant to everyone is refused too.
    r = await dataset(client, admin, "act.keys", ["group:research"], guard="alert")
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/guard-change-refused")
    assert r.json()["guard_changes"] == [
        {"dataset": "act.keys", "old_guard": "block", "new_guard": "alert", "refused": True}
    ]
    r = await grant(client, admin, "group:all", "act.keys")
    assert r.status_code == 409, r.text
    r = await dataset(client, admin, "act.keys", ["group:research"], guard="block")
    assert r.status_code == 200, r.text
    assert (await stored(client, admin))["guard"] == "block"
    assert await findings(client, admin) == []
    assert (await check(client, tokens, "user:a1", "act.keys"))["decision"] == "deny"
    alerts = await alerts_after(client, admin, 0)
    assert [a for a in alerts if a["type"] == GUARD_CHANGED] == []


async def test_switching_off_with_acceptance_then_on_over_the_exposure_needs_it_again(
    client, admin, tokens
):
    await org(client, admin)
    reviewed = {"reason": "migrating owners", "until": ACCEPT["until"]}
    r = await dataset(
        client, admin, "act.keys", ["group:research"], guard="alert", accept_exposure=reviewed
    )
    assert r.status_code == 403, r.text  # lowering a block guard takes two people
    last = await last_alert(client, admin)
    moved = (
        await dataset_approved(client, tokens, admin, "act.keys", ["group:research"], guard="alert")
    )["guard_changed"]
    assert (moved["old_guard"], moved["new_guard"], moved["findings"]) == ("block", "alert", [])
    [requested, alert, approved] = await alerts_after(client, admin, last)
    assert (requested["type"], approved["type"]) == ("approval.requested", "approval.approved")
    assert (alert["type"], alert["dataset"], alert["severity"]) == (
        GUARD_CHANGED,
        "act.keys",
        "high",
    )
    assert "from block to alert by policy-write" in alert["summary"]
    assert "reviewed" in alert["summary"]

    # On an alert dataset the grant lands, with an open finding...
    r = await grant(client, admin, "group:all", "act.keys")
    assert r.status_code == 201, r.text
    [opened] = r.json()["findings_opened"]
    assert (opened["status"], opened["excess_count"]) == ("open", 2)
    # ...and raising the guard over it is refused: a block dataset with unaccepted exposure.
    r = await dataset(client, admin, "act.keys", ["group:research"], guard="block")
    assert r.status_code == 409, r.text
    assert [(f["id"], f["excess_count"]) for f in r.json()["findings"]] == [(opened["id"], 2)]
    assert (await stored(client, admin))["guard"] == "alert"
    r = await dataset(
        client, admin, "act.keys", ["group:research"], guard="block", accept_exposure=ACCEPT
    )
    assert r.status_code == 403, r.text
    asked = await request(
        client, tokens["policy:write"], "PUT", "/v1/datasets/act.keys",
        {"owner": "user:owner", "sensitivity": "restricted",
         "intended_audience": ["group:research"], "guard": "block"},
        reason=ACCEPT["reason"], until=ACCEPT["until"],
    )  # fmt: skip
    last = await last_alert(client, admin)
    r = await client.post(f"/v1/approvals/{asked.json()['id']}/approve", headers=admin)
    assert r.status_code == 200, r.text
    [accepted] = r.json()["result"]["guard_changed"]["findings"]
    assert (accepted["id"], accepted["status"], accepted["reason"], accepted["accepted_by"]) == (
        opened["id"],
        "accepted",
        ACCEPT["reason"],
        "admin",
    )
    assert (await client.get(f"/v1/findings/{opened['id']}", headers=admin)).json() == accepted
    alerts = await alerts_after(client, admin, last)
    assert [(a["type"], a["finding_id"]) for a in alerts] == [
        (GUARD_CHANGED, None),
        ("finding.accepted", opened["id"]),
        ("approval.approved", None),
    ]
    assert "from alert to block by policy-write" in alerts[0]["summary"]
    assert alerts[0]["severity"] == "low"


async def test_raising_a_guard_where_nothing_is_open_needs_no_acceptance(client, admin):
    await org(client, admin)
    r = await dataset(client, admin, "act.logs", ["group:research"], guard="alert")
    assert r.status_code == 201, r.text
    assert r.json()["guard_changed"] is None  # registering is not a change of guard
    last = await last_alert(client, admin)
    r = await dataset(client, admin, "act.logs", ["group:research"], guard="block")
    assert r.status_code == 200, r.text
    assert r.json()["guard_changed"]["findings"] == []
    assert [a["type"] for a in await alerts_after(client, admin, last)] == [GUARD_CHANGED]
    # The same guard again is no change: no alert.
    r = await dataset(client, admin, "act.logs", ["group:research"], guard="block")
    assert r.status_code == 200 and r.json()["guard_changed"] is None
    assert [a["type"] for a in await alerts_after(client, admin, last)] == [GUARD_CHANGED]


async def test_reclassifying_a_block_dataset_without_a_guard_keeps_it_blocking(client, admin):
    await org(client, admin)
    r = await dataset(client, admin, "act.keys", ["group:research"], sensitivity="internal")
    assert r.status_code == 200, r.text
    assert r.json()["guard"] == "block"
    r = await grant(client, admin, "group:all", "act.keys")
    assert r.status_code == 409, r.text
    # And the other way: an alert dataset made restricted keeps alerting until told otherwise.
    r = await dataset(client, admin, "act.logs", ["group:research"], sensitivity="internal")
    assert r.status_code == 201 and r.json()["guard"] == "alert"
    r = await dataset(client, admin, "act.logs", ["group:research"])
    assert r.status_code == 200 and r.json()["guard"] == "alert"


async def test_narrowing_the_audience_while_lowering_the_guard_is_refused(client, admin, tokens):
    """Lowering the guard in the same PUT does not let a narrowed audience through unaccepted."""
    await members(client, admin, "research", ["user:r1"])
    await members(client, admin, "all", ["user:a1", "group:research"])
    assert (await dataset(client, admin, "act.all", ["group:all"])).status_code == 201
    assert (await grant(client, admin, "group:all", "act.all")).status_code == 201
    r = await dataset(client, admin, "act.all", ["group:research"], guard="alert")
    assert r.status_code == 409, r.text
    [would] = r.json()["findings"]
    assert (would["id"], would["excess_count"]) == (None, 1)  # never opened: rolled back
    assert (await stored(client, admin, "act.all"))["intended_audience"] == ["group:all"]
    assert await findings(client, admin) == []
    r = await dataset(
        client, admin, "act.all", ["group:research"], guard="alert", accept_exposure=ACCEPT
    )
    assert r.status_code == 403, r.text
    made = await dataset_approved(
        client, tokens, admin, "act.all", ["group:research"], guard="alert"
    )
    [opened] = made["findings_opened"]
    assert opened["status"] == "accepted"
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan


async def test_leaving_an_audience_group_widens_a_block_dataset_and_is_refused(
    client, admin, tokens
):
    """A membership change that shrinks the audience under an existing grant is guarded."""
    await members(client, admin, "research", ["user:r1", "user:r2"])
    await members(client, admin, "all", ["user:a1", "user:r2", "group:research"])
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201
    await grant_approved(client, tokens, admin, "group:all", "act.keys")
    r = await members(client, admin, "research", ["user:r1"])
    assert r.status_code == 409, r.text
    assert [f["excess_count"] for f in r.json()["findings"]] == [2]
