from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.policy.models import Grant


def grant(**overrides: Any) -> dict[str, Any]:
    return {
        "principal": "group:eng",
        "resource": "eng.wiki",
        "action": "read",
        "effect": "allow",
        **overrides,
    }


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    r = await client.post("/v1/grants", json=grant(**fields), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def policy_version(client: httpx.AsyncClient) -> int:
    return int((await client.get("/readyz")).json()["policy_version"])


async def register(client: httpx.AsyncClient, admin: dict[str, str], **datasets: str) -> None:
    for dataset_id, sensitivity in datasets.items():
        r = await client.put(
            f"/v1/datasets/{dataset_id}",
            json={"owner": "group:owners", "sensitivity": sensitivity, "guard": "alert"},
            headers=admin,
        )
        assert r.status_code == 201, r.text


@pytest.fixture
async def sensitive_datasets(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await register(
        client,
        admin,
        **{
            "hr.salaries": "confidential",
            "hr.reviews.raw": "restricted",
            "eng.wiki": "internal",
            "eng.handbook": "public",
            "axb.secrets": "restricted",
        },
    )


async def test_created_grant_reports_id_author_and_time(client: httpx.AsyncClient, tokens):
    before = datetime.now(UTC)
    body = await create(client, tokens["policy:write"], principal="Group:ENG")
    assert isinstance(body["id"], int) and body["id"] >= 1
    assert body["created_by"] == "policy-write"
    created_at = datetime.fromisoformat(body["created_at"])
    assert created_at.tzinfo is not None
    assert before - timedelta(seconds=5) <= created_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert body["principal"] == "group:eng"
    assert body["effect"] == "allow"
    assert body["status"] == "active"
    fetched = (await client.get(f"/v1/grants/{body['id']}", headers=tokens["audit:read"])).json()
    for field in ("id", "principal", "resource", "action", "effect", "created_by", "created_at"):
        assert fetched[field] == body[field], field


@pytest.mark.usefixtures("sensitive_datasets")
@pytest.mark.parametrize("resource", ["hr.salaries", "hr.reviews.raw", "hr.*", "hr.reviews.*", "*"])
async def test_allow_grant_reaching_sensitive_dataset_needs_justification(
    client: httpx.AsyncClient, admin, resource: str
):
    version = await policy_version(client)
    for justification in (None, "", "   "):
        fields = grant(resource=resource)
        if justification is not None:
            fields["justification"] = justification
        r = await client.post("/v1/grants", json=fields, headers=admin)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == ["body.justification"]
    assert await policy_version(client) == version
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []

    made = await create(client, admin, resource=resource, justification="  payroll audit 2026 ")
    assert made["justification"] == "payroll audit 2026"


@pytest.mark.usefixtures("sensitive_datasets")
async def test_grant_reaching_no_sensitive_dataset_needs_no_justification(
    client: httpx.AsyncClient, admin
):
    for fields in [
        {"resource": "hr.*", "effect": "deny"},
        {"resource": "*", "effect": "deny"},
        {"resource": "eng.wiki"},
        {"resource": "eng.*"},
        {"resource": "hr"},  # "hr" is no dataset; hr.* covers hr.salaries, hr does not
        {"resource": "hrx.*"},
        {"resource": "a_b.*"},  # "_" is no wildcard: a_b.* does not cover axb.secrets
        {"resource": "unregistered.*"},
    ]:
        r = await client.post("/v1/grants", json=grant(**fields), headers=admin)
        assert r.status_code == 201, (fields, r.text)
        assert r.json()["justification"] is None


async def test_expiry_in_the_past_is_refused(client: httpx.AsyncClient, admin):
    version = await policy_version(client)
    for expires_at in (
        (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "2000-01-01T00:00:00+00:00",
    ):
        r = await client.post("/v1/grants", json=grant(expires_at=expires_at), headers=admin)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["body.expires_at"]
    assert await policy_version(client) == version


@pytest.mark.parametrize(
    "expires_at", ["2999-01-01T00:00:00", "tomorrow", 12, "9999-12-31T23:59:59-14:00"]
)
async def test_expiry_without_timezone_or_unparsable_is_refused(
    client: httpx.AsyncClient, admin, expires_at: Any
):
    r = await client.post("/v1/grants", json=grant(expires_at=expires_at), headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "body.expires_at" in [e["field"] for e in r.json()["errors"]]
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []


async def test_future_expiry_is_kept_in_utc(client: httpx.AsyncClient, admin):
    body = await create(client, admin, expires_at="2999-06-01T12:00:00+02:00")
    assert datetime.fromisoformat(body["expires_at"]) == datetime(2999, 6, 1, 10, tzinfo=UTC)
    fetched = (await client.get(f"/v1/grants/{body['id']}", headers=admin)).json()
    assert datetime.fromisoformat(fetched["expires_at"]) == datetime(2999, 6, 1, 10, tzinfo=UTC)
    assert fetched["status"] == "active"


async def test_delete_revokes_the_grant(client: httpx.AsyncClient, tokens, admin):
    kept = await create(client, admin, resource="eng.kept")
    revoked = await create(client, admin)
    r = await client.delete(f"/v1/grants/{revoked['id']}", headers=tokens["policy:write"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked"
    assert r.json()["revoked_by"] == "policy-write"
    assert r.json()["revoked_at"] is not None

    fetched = (await client.get(f"/v1/grants/{revoked['id']}", headers=admin)).json()
    assert fetched["status"] == "revoked"
    default = (await client.get("/v1/grants", headers=admin)).json()["items"]
    assert [g["id"] for g in default] == [kept["id"]]
    active = (await client.get("/v1/grants?status=active", headers=admin)).json()["items"]
    assert [g["id"] for g in active] == [kept["id"]]
    gone = (await client.get("/v1/grants?status=revoked", headers=admin)).json()["items"]
    assert [g["id"] for g in gone] == [revoked["id"]]

    version = await policy_version(client)
    again = await client.delete(f"/v1/grants/{revoked['id']}", headers=admin)
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"
    assert await policy_version(client) == version


async def test_unknown_grant_is_a_404_problem(client: httpx.AsyncClient, admin):
    for method in ("GET", "DELETE"):
        r = await client.request(method, "/v1/grants/4242", headers=admin)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert "4242" in r.json()["detail"]


async def test_grant_whose_expiry_passed_is_listed_as_expired(
    client: httpx.AsyncClient, admin, sessionmaker: async_sessionmaker[AsyncSession]
):
    soon = await create(client, admin, expires_at="2999-01-01T00:00:00Z")
    forever = await create(client, admin, resource="eng.other")
    async with sessionmaker() as session, session.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(Grant).where(Grant.id == soon["id"]).values(expires_at=past))

    async def ids(query: str) -> list[int]:
        return [
            g["id"] for g in (await client.get(f"/v1/grants{query}", headers=admin)).json()["items"]
        ]

    assert (await client.get(f"/v1/grants/{soon['id']}", headers=admin)).json()[
        "status"
    ] == "expired"
    assert await ids("?status=expired") == [soon["id"]]
    assert await ids("?status=active") == [forever["id"]]
    assert await ids("") == [soon["id"], forever["id"]]  # default: everything not revoked


async def test_list_filters_by_principal_resource_and_action(client: httpx.AsyncClient, admin):
    a = await create(client, admin, principal="user:alice", resource="eng.wiki", action="read")
    b = await create(client, admin, principal="user:alice", resource="eng.*", action="write")
    c = await create(client, admin, principal="user:bob", resource="eng.wiki", action="read")
    d = await create(client, admin, principal="group:eng", resource="*", action="export")

    async def ids(query: str) -> list[int]:
        r = await client.get(f"/v1/grants?{query}", headers=admin)
        assert r.status_code == 200, r.text
        return [g["id"] for g in r.json()["items"]]

    assert await ids("principal=user:alice") == [a["id"], b["id"]]
    assert await ids("principal=USER:Alice") == [a["id"], b["id"]]
    assert await ids("resource=eng.wiki") == [a["id"], c["id"]]
    assert await ids("resource=eng.*") == [b["id"]]  # the pattern itself, not what it covers
    assert await ids("resource=*") == [d["id"]]
    assert await ids("action=read") == [a["id"], c["id"]]
    assert await ids("action=export") == [d["id"]]
    assert await ids("principal=user:alice&action=read") == [a["id"]]
    assert await ids("principal=user:alice&resource=eng.wiki&action=write") == []
    assert await ids("principal=user:nobody") == []


async def test_list_pages_with_cursor(client: httpx.AsyncClient, admin):
    made = [(await create(client, admin, principal=f"user:u{n}"))["id"] for n in range(5)]
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        url = "/v1/grants?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=admin)).json()
        assert len(page["items"]) <= 2
        seen.extend(g["id"] for g in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    filtered = (await client.get("/v1/grants?principal=user:u3&limit=1", headers=admin)).json()
    assert [g["id"] for g in filtered["items"]] == [made[3]]
    assert filtered["next_cursor"] is None


async def test_policy_version_advances_with_every_mutation(client: httpx.AsyncClient, admin):
    versions = [await policy_version(client)]
    mutations = [
        ("PUT", "/v1/groups/eng/members", {"members": ["user:a"]}),
        ("POST", "/v1/groups/eng/members", {"member": "user:b"}),
        ("DELETE", "/v1/groups/eng/members/user:a", None),
        ("PUT", "/v1/datasets/eng.wiki", {"owner": "group:eng", "sensitivity": "internal"}),
        ("POST", "/v1/grants", grant()),
        ("DELETE", "/v1/grants/1", None),
    ]
    for method, url, body in mutations:
        r = await client.request(method, url, json=body, headers=admin)
        assert r.status_code in (200, 201), (url, r.text)
        versions.append(await policy_version(client))
        if "policy_version" in r.json():
            assert r.json()["policy_version"] == versions[-1], url
    assert all(later > earlier for earlier, later in pairwise(versions))

    # Reads and refused changes leave it alone.
    await client.get("/v1/grants", headers=admin)
    await client.post("/v1/grants", json=grant(action="delete"), headers=admin)
    await client.delete("/v1/grants/1", headers=admin)
    assert await policy_version(client) == versions[-1]
