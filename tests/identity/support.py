"""Helpers for the SCIM tests: requests as an IdP sends them, and what a refusal must leave
unchanged."""

from typing import Any

import httpx

SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
# The purpose checks name: confidential/restricted datasets require one (grants allow any).
PURPOSE = "model-training"


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": user_name, **extra}


def group_body(display_name: str, members: list[str] | None = None, **extra: Any) -> dict:
    body: dict[str, Any] = {"schemas": [GROUP], "displayName": display_name, **extra}
    if members is not None:
        body["members"] = [{"value": m} for m in members]
    return body


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def assert_scim_error(
    r: httpx.Response, status: int, scim_type: str | None = None, mentions: str = ""
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == SCIM_JSON, r.headers
    body: dict[str, Any] = r.json()
    assert body["schemas"] == [ERROR], body
    assert body["status"] == str(status), body
    assert body.get("scimType") == scim_type, body
    assert mentions in body["detail"], body
    return body


class Scim:
    """A SCIM client for the tests: `/scim/v2` with the `scim` token."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.client.request(method, f"/scim/v2/{path}", headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, json=body, **kwargs)

    async def put(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, json=body, **kwargs)

    async def patch(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, json=body, **kwargs)

    async def delete(self, path: str) -> httpx.Response:
        return await self.request("DELETE", path)

    async def create_user(self, user_name: str, **extra: Any) -> dict[str, Any]:
        r = await self.post("Users", user_body(user_name, **extra))
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def create_group(
        self, display_name: str, members: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        r = await self.post("Groups", group_body(display_name, members, **extra))
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def listed(self, path: str, **params: Any) -> dict[str, Any]:
        r = await self.get(path, params=params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == SCIM_JSON
        return dict(r.json())

    async def member_ids(self, group_id: str) -> list[str]:
        r = await self.get(f"Groups/{group_id}")
        assert r.status_code == 200, r.text
        return sorted(m["value"] for m in r.json().get("members", []))

    async def state(self, admin: dict[str, str]) -> dict[str, Any]:
        """Everything the IdP and an auditor can see: SCIM users and groups with members, the
        directory's groups and members, the policy version."""
        users = await self.listed("Users", count=200)
        groups = await self.listed("Groups", count=200)
        directory = (await self.client.get("/v1/groups?limit=1000", headers=admin)).json()
        members = {
            g["id"]: (
                await self.client.get(f"/v1/groups/{g['id'].split(':', 1)[1]}", headers=admin)
            ).json()["members"]
            for g in directory["items"]
        }
        ready = (await self.client.get("/readyz")).json()
        return {
            "users": users,
            "groups": groups,
            "directory": members,
            "policy_version": ready["policy_version"],
        }
