"""The service as an IdP sees it: scim2-client over HTTP against a real `aclaudit serve` with 2
workers. After every SCIM change, /v1/check (a separate token, scope `check`) answers from it in
both workers: checks over fresh connections land on either, and none may be a stale allow.

Okta deactivates with a PATCH without a path (`{"active": false}`); Entra ID (legacy) with a
path and the string `"False"`, which scim2-client would never send: that request is raw.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from scim2_client.engines.httpx2 import AsyncSCIMClient
from scim2_models import (
    EnterpriseUser,
    Group,
    GroupMember,
    NotFoundException,
    PatchOp,
    PatchOperation,
    Resource,
    User,
)

from tests.conftest import Tokens
from tests.e2e.servers import Server

pytestmark = pytest.mark.slow
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PROBES = 8  # checks per principal per step, each on a fresh connection
UserModel = User[EnterpriseUser]
UserPatch = PatchOp[UserModel]
GroupPatch = PatchOp[Group]
GroupOperation = PatchOperation[Group]
R = TypeVar("R", bound=Resource[Any])

Expected = dict[str, tuple[str, str | None]]  # principal -> (decision, reason code or None)


@asynccontextmanager
async def live(
    database_url: str, tokens: Tokens, tmp_path: Path
) -> AsyncIterator[tuple[Server, AsyncSCIMClient, httpx.AsyncClient]]:
    """A 2-worker server; an IdP's SCIM client (scope `scim`) and an admin's /v1 client."""
    server = Server(database_url, workers=2, log=tmp_path / "server.log").start()
    try:
        async with (
            httpx2.AsyncClient(
                base_url=f"{server.url}/scim/v2/", headers=tokens["scim"], timeout=10
            ) as http,
            httpx.AsyncClient(base_url=server.url, headers=tokens["admin"], timeout=10) as api,
        ):
            scim = AsyncSCIMClient(http)
            await scim.discover()
            yield server, scim, api
    finally:
        server.stop()


async def probe(url: str, tokens: Tokens, principal: str, dataset: str) -> tuple[int, Any]:
    """One check on a fresh connection: the worker that answered, and its (decision, code)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        worker = (await c.get("/healthz")).json()["worker"]
        body = {
            "principal": principal,
            "dataset": dataset,
            "action": "read",
            "purpose": "model-training",
        }
        r = await c.post("/v1/check", json=body, headers=tokens["check"])
        assert r.status_code == 200, r.text
        return worker, (r.json()["decision"], r.json()["reason"]["code"])


async def observe(server: Server, tokens: Tokens, dataset: str, expected: Expected) -> None:
    """At least PROBES checks per principal, until both workers have answered for each: every
    answer is the expected one (a code of None: any reason)."""
    for principal, (decision, code) in expected.items():
        workers: set[int] = set()
        answers = 0
        while answers < PROBES or len(workers) < 2:
            assert answers < 200, f"only worker(s) {workers} answered for {principal}"
            worker, (got, got_code) = await probe(server.url, tokens, principal, dataset)
            assert got == decision, (principal, worker, got, got_code)
            assert code is None or got_code == code, (principal, worker, got, got_code)
            workers.add(worker)
            answers += 1


async def created(scim: AsyncSCIMClient, resource: R) -> R:
    """`resource` as the server created it (scim2-client types its answers loosely)."""
    made = await scim.create(resource)
    # (the discovered model: a class of its own, built from /Schemas)
    assert isinstance(made, Resource) and made.id, made
    return made


async def group(scim: AsyncSCIMClient, group_id: str) -> list[str]:
    """The member ids of a group, as the IdP reads them back."""
    found = await scim.query(Group, group_id)
    assert isinstance(found, Resource), found
    return sorted(str(m.value) for m in getattr(found, "members", None) or [])


def entra_active(value: str) -> dict[str, Any]:
    """Entra ID's legacy (de)activation: a path, and a string for the boolean."""
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "path": "active", "value": value}],
    }


def members(*users: UserModel) -> GroupOperation:
    return GroupOperation(
        op=GroupOperation.Op.add,
        path="members",
        value=[GroupMember(value=u.id, display=u.user_name) for u in users],
    )


async def test_an_idp_drives_access_in_both_workers(database_url, tokens, tmp_path):
    async with live(database_url, tokens, tmp_path) as (server, scim, api):
        dataset = {"owner": "user:o", "sensitivity": "internal", "intended_audience": ["group:hr"]}
        r = await api.put("/v1/datasets/hr.reviews", json=dataset)
        assert r.status_code == 201, r.text
        grant = {"principal": "group:hr", "resource": "hr.*", "action": "read", "effect": "allow"}
        r = await api.post("/v1/grants", json=grant)
        assert r.status_code == 201, r.text

        async def see(**expected: tuple[str, str | None]) -> None:
            await observe(
                server, tokens, "hr.reviews", {f"user:{k}": v for k, v in expected.items()}
            )

        alice, bob, carol, dave = [
            await created(scim, UserModel(user_name=name, external_id=f"00u-{name}", active=True))
            for name in ("Alice", "bob", "carol", "dave")
        ]
        assert alice.id and bob.id and carol.id and dave.id
        no = ("deny", None)
        await see(alice=no, bob=no, carol=no, dave=no)

        hr = await created(scim, Group(display_name="HR"))
        assert hr.id
        await see(alice=no, bob=no, carol=no, dave=no)

        done = await scim.modify(Group, hr.id, GroupPatch(operations=[members(alice, bob, carol)]))
        assert done is None  # 204, as Entra advises for groups
        yes = ("allow", "granted")
        await see(alice=yes, bob=yes, carol=yes, dave=no)
        await scim.modify(Group, hr.id, GroupPatch(operations=[members(dave)]))
        await see(alice=yes, bob=yes, carol=yes, dave=yes)
        assert await group(scim, hr.id) == sorted([alice.id, bob.id, carol.id, dave.id])

        # Okta: replace without a path, a partial resource
        okta = UserPatch(operations=[{"op": "replace", "value": {"active": False}}])
        patched = await scim.modify(UserModel, alice.id, okta)
        assert isinstance(patched, Resource) and getattr(patched, "active", None) is False
        inactive = ("deny", "principal_inactive")
        await see(alice=inactive, bob=yes, carol=yes, dave=yes)

        # Entra ID (legacy): a path and the string "False"
        r2 = await scim.client.patch(f"Users/{bob.id}", json=entra_active("False"))
        assert r2.status_code == 200, r2.text
        assert r2.headers["content-type"] == "application/scim+json"
        assert r2.json()["active"] is False
        await see(alice=inactive, bob=inactive, carol=yes, dave=yes)

        # The IdP deletes carol: her memberships go, she reads nothing
        await scim.delete(UserModel, carol.id)
        with pytest.raises(NotFoundException):
            await scim.query(UserModel, carol.id)
        await see(alice=inactive, bob=inactive, carol=inactive, dave=yes)
        assert await group(scim, hr.id) == sorted([alice.id, bob.id, dave.id])

        # Entra reactivates bob ("True"); Okta removes dave from the group by a filter
        r2 = await scim.client.patch(f"Users/{bob.id}", json=entra_active("True"))
        assert r2.status_code == 200, r2.text
        remove = {"op": "remove", "path": f'members[value eq "{dave.id}"]'}
        await scim.modify(Group, hr.id, GroupPatch(operations=[remove]))
        await see(alice=inactive, bob=yes, carol=inactive, dave=no)

        # The directory is the IdP's: deactivated users stay members, deleted ones do not
        hr_now = await api.get("/v1/groups/hr")
        assert hr_now.status_code == 200, hr_now.text
        assert sorted(hr_now.json()["members"]) == ["user:alice", "user:bob"]


async def test_a_held_membership_end_to_end(database_url, tokens, tmp_path):
    """The IdP adds a user to a group granted a `block`-guarded dataset: the SCIM change
    succeeds, the access is held (in both workers) until the user joins the audience."""
    async with live(database_url, tokens, tmp_path) as (server, scim, api):
        r = await api.put("/v1/groups/research/members", json={"members": ["user:r1"]})
        assert r.status_code == 200, r.text
        dataset = {
            "owner": "user:o",
            "sensitivity": "restricted",
            "intended_audience": ["group:research"],
        }
        r = await api.put("/v1/datasets/act.keys", json=dataset)
        assert r.status_code == 201, r.text
        assert r.json()["guard"] == "block"

        u1 = await created(scim, UserModel(user_name="u1", active=True))
        eng = await created(scim, Group(display_name="Eng"))
        assert u1.id and eng.id
        grant = {
            "principal": "group:eng",
            "resource": "act.keys",
            "action": "read",
            "effect": "allow",
            "justification": "eng reads keys",
        }
        r = await api.post("/v1/grants", json=grant)  # eng is empty: it widens nothing
        assert r.status_code == 201, r.text
        exposure = (await api.get("/v1/datasets/act.keys/exposure")).json()

        done = await scim.modify(Group, eng.id, GroupPatch(operations=[members(u1)]))
        assert done is None  # 204: the IdP is never refused
        assert await group(scim, eng.id) == [u1.id]

        await observe(server, tokens, "act.keys", {"user:u1": ("deny", "held_by_guard")})
        held = (await api.get("/v1/holds?principal=user:u1")).json()["items"]
        assert [(h["dataset"], h["kind"], h["group_id"]) for h in held] == [
            ("act.keys", "guard", "group:eng")
        ]
        alerts = (await api.get("/v1/alerts?limit=1000")).json()["items"]
        assert [a["dataset"] for a in alerts if a["type"] == "access.held"] == ["act.keys"]
        after = (await api.get("/v1/datasets/act.keys/exposure")).json()
        assert (after["effective_count"], after["excess_count"]) == (
            exposure["effective_count"],
            exposure["excess_count"],
        )

        # Released by joining the audience
        r = await api.post("/v1/groups/research/members", json={"member": "user:u1"})
        assert r.status_code == 200, r.text
        await observe(server, tokens, "act.keys", {"user:u1": ("allow", "granted")})
        assert (await api.get("/v1/holds?principal=user:u1")).json()["items"] == []
        released = (await api.get("/v1/holds?principal=user:u1&status=released")).json()
        assert len(released["items"]) == 1
