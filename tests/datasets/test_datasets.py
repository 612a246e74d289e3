from datetime import datetime
from typing import Any

import httpx
import pytest

KEYSTROKES = "/v1/datasets/employee_activity.keystrokes"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "description": "Per-employee keystroke timing.",
        "owner": "group:mci-research",
        "sensitivity": "restricted",
        "intended_audience": ["group:mci-research", "service:trainer"],
        **overrides,
    }


async def test_put_creates_then_replaces_the_dataset(client: httpx.AsyncClient, admin):
    r = await client.put(KEYSTROKES, json=body(), headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == "employee_activity.keystrokes"
    assert created["intended_audience"] == ["group:mci-research", "service:trainer"]
    assert created["updated_by"] == "admin"

    r = await client.put(
        KEYSTROKES,
        json=body(description="Renamed.", sensitivity="confidential", intended_audience=[]),
        headers=admin,
    )
    assert r.status_code == 200, r.text
    replaced = r.json()
    assert replaced["description"] == "Renamed."
    assert replaced["sensitivity"] == "confidential"
    assert replaced["intended_audience"] == []
    assert replaced["created_at"] == created["created_at"]
    assert datetime.fromisoformat(replaced["updated_at"]) >= datetime.fromisoformat(
        created["updated_at"]
    )
    assert replaced.pop("findings_opened") == [] and replaced.pop("findings_resolved") == []
    fetched = (await client.get(KEYSTROKES, headers=admin)).json()
    assert fetched == {k: replaced[k] for k in fetched}  # the PUT may add change reports
    listed = (await client.get("/v1/datasets", headers=admin)).json()["items"]
    assert [d["id"] for d in listed] == ["employee_activity.keystrokes"]


@pytest.mark.parametrize(
    ("sensitivity", "guard"),
    [
        ("restricted", "block"),
        ("confidential", "alert"),
        ("internal", "alert"),
        ("public", "alert"),
    ],
)
async def test_guard_defaults_to_block_only_for_restricted(
    client: httpx.AsyncClient, admin, sensitivity: str, guard: str
):
    r = await client.put(KEYSTROKES, json=body(sensitivity=sensitivity), headers=admin)
    assert r.status_code == 201
    assert r.json()["guard"] == guard
    assert (await client.get(KEYSTROKES, headers=admin)).json()["guard"] == guard


@pytest.mark.parametrize(("sensitivity", "guard"), [("restricted", "alert"), ("public", "block")])
async def test_explicit_guard_is_kept(
    client: httpx.AsyncClient, admin, sensitivity: str, guard: str
):
    r = await client.put(KEYSTROKES, json=body(sensitivity=sensitivity, guard=guard), headers=admin)
    assert r.status_code == 201
    assert r.json()["guard"] == guard
    assert (await client.get(KEYSTROKES, headers=admin)).json()["guard"] == guard


async def test_audience_and_owner_principals_are_lower_cased_and_deduplicated(
    client: httpx.AsyncClient, admin
):
    r = await client.put(
        KEYSTROKES,
        json=body(
            owner="Group:MCI-Research",
            intended_audience=["Service:Trainer", "group:mci-research", "service:trainer"],
        ),
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "group:mci-research"
    assert r.json()["intended_audience"] == ["group:mci-research", "service:trainer"]


async def test_dataset_list_pages_with_cursor(client: httpx.AsyncClient, admin):
    ids = ["a", "a.b", "a_b", "b.c.d", "z"]
    for dataset_id in reversed(ids):
        r = await client.put(f"/v1/datasets/{dataset_id}", json=body(), headers=admin)
        assert r.status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        url = "/v1/datasets?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=admin)).json()
        assert len(page["items"]) <= 2
        seen.extend(d["id"] for d in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)
    everything = (await client.get("/v1/datasets", headers=admin)).json()
    assert [d["id"] for d in everything["items"]] == sorted(ids)
    assert everything["next_cursor"] is None


async def test_unknown_dataset_is_a_404_problem(client: httpx.AsyncClient, admin):
    r = await client.get("/v1/datasets/no.such.dataset", headers=admin)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 404
    assert "no.such.dataset" in problem["detail"]


async def test_put_without_sensitivity_or_owner_is_refused(client: httpx.AsyncClient, admin):
    r = await client.put(KEYSTROKES, json={"owner": "group:x"}, headers=admin)
    assert r.status_code == 422
    assert "body.sensitivity" in [e["field"] for e in r.json()["errors"]]
    r = await client.put(KEYSTROKES, json={"sensitivity": "public"}, headers=admin)
    assert r.status_code == 422
    assert "body.owner" in [e["field"] for e in r.json()["errors"]]
    assert (await client.get(KEYSTROKES, headers=admin)).status_code == 404
