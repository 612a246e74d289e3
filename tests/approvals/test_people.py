"""Two-person control for people signed in with OpenID Connect, and for requests that expire:
"the same person" is the admin trail's identity (a person's principal, a token's name)."""

import asyncio
from datetime import datetime, timedelta

import pytest

from app.auth.oidc.dev_idp import DevIssuer
from app.config import Settings
from tests.approvals.support import request
from tests.approvals.test_approvals import grant_body, org
from tests.oidc import People, group_of, oidc_settings


@pytest.fixture
def settings(database_url: str, idp: DevIssuer) -> Settings:
    return oidc_settings(database_url, idp.url, approval_ttl_seconds=2)


async def test_a_person_cannot_approve_their_own_request_with_a_fresh_token(
    client, admin, people: People
):
    await org(client, admin)
    writers = [group_of("policy:write")]
    alice, bob = people.headers("alice", writers), people.headers("bob", writers)
    r = await request(client, alice, "POST", "/v1/grants", grant_body("group:all"))
    assert r.status_code == 201, r.text
    asked = r.json()
    assert asked["requested_by"] == "user:alice"
    again = people.headers("alice", writers)  # another sign-in: the same person
    r = await client.post(f"/v1/approvals/{asked['id']}/approve", headers=again)
    assert r.status_code == 403, r.text
    r = await client.post(f"/v1/approvals/{asked['id']}/approve", headers=bob)
    assert r.status_code == 200, r.text
    assert r.json()["decided_by"] == "user:bob"
    trail = (await client.get("/v1/admin/trail", headers=admin)).json()["items"]
    decided = [(e["token_name"], e["status"]) for e in trail if e["path"].endswith("/approve")]
    assert sorted(decided) == [("user:alice", 403), ("user:bob", 200)]


async def test_requests_expire_after_the_configured_ttl(client, admin, tokens):
    await org(client, admin)
    r = await request(client, tokens["policy:write"], "POST", "/v1/grants", grant_body("group:all"))
    asked = r.json()
    ttl = datetime.fromisoformat(asked["expires_at"]) - datetime.fromisoformat(
        asked["requested_at"]
    )
    assert ttl == timedelta(seconds=2)
    await asyncio.sleep(2.1)
    r = await client.post(f"/v1/approvals/{asked['id']}/approve", headers=admin)
    assert r.status_code == 409, r.text
