"""The SCIM protocol around the resources: discovery, authentication with the `scim` scope,
SCIM error documents for every refusal under /scim/v2, and the admin trail of every write."""

from typing import Any

import httpx
import pytest

from tests.conftest import Tokens
from tests.identity.support import (
    ENTERPRISE,
    GROUP,
    LIST,
    SCIM_JSON,
    USER,
    Scim,
    assert_scim_error,
    patch_body,
    user_body,
)

SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


async def test_service_provider_config_says_what_is_supported(scim: Scim):
    r = await scim.get("ServiceProviderConfig")
    assert r.status_code == 200 and r.headers["content-type"] == SCIM_JSON
    config = r.json()
    assert config["schemas"] == [SPC]
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["sort"] == {"supported": False}
    assert config["bulk"]["supported"] is False
    assert config["etag"] == {"supported": False}
    assert config["changePassword"] == {"supported": False}
    [scheme] = config["authenticationSchemes"]
    assert scheme["type"] == "oauthbearertoken"
    assert config["meta"]["location"].endswith("/scim/v2/ServiceProviderConfig")


async def test_resource_types_and_schemas_are_published(scim: Scim):
    types = await scim.listed("ResourceTypes")
    assert types["schemas"] == [LIST] and types["totalResults"] == 2
    by_name = {t["name"]: t for t in types["Resources"]}
    assert by_name["User"]["endpoint"] == "/Users"
    assert by_name["User"]["schema"] == USER
    assert by_name["User"]["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert by_name["Group"]["endpoint"] == "/Groups"
    r = await scim.get("ResourceTypes/User")
    assert r.status_code == 200 and r.json() == by_name["User"]
    schemas = await scim.listed("Schemas")
    ids = {s["id"] for s in schemas["Resources"]}
    assert ids == {USER, ENTERPRISE, GROUP}
    r = await scim.get(f"Schemas/{USER}")
    assert r.status_code == 200
    attributes = {a["name"]: a for a in r.json()["attributes"]}
    assert attributes["userName"]["required"] is True
    assert attributes["userName"]["uniqueness"] == "server"
    assert attributes["password"]["returned"] == "never"
    assert r.json()["meta"]["location"].endswith(f"/scim/v2/Schemas/{USER}")


@pytest.mark.parametrize(
    "path", ["ResourceTypes/Nope", "Schemas/urn:nope", "Nope", "Users/x/y", "v3/Users"]
)
async def test_unknown_paths_are_a_404_scim_error(scim: Scim, path: str):
    assert_scim_error(await scim.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "ServiceProviderConfig"),
        ("PUT", "ServiceProviderConfig"),
        ("PATCH", "ResourceTypes"),
        ("DELETE", "Schemas"),
        ("PUT", "Users"),
        ("DELETE", "Groups"),
        ("POST", "Users/some-id"),
        ("GET", ".search"),
    ],
)
async def test_unsupported_methods_are_a_405_scim_error(scim: Scim, method: str, path: str):
    r = await scim.request(method, path, json={})
    assert_scim_error(r, 405)


async def test_search_across_resource_types_is_a_501(scim: Scim):
    r = await scim.post(
        ".search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
    )
    assert_scim_error(r, 501)


# 401 and 403 on every route: tests/auth/test_access_matrix.py


async def test_an_admin_token_may_push_too(client: httpx.AsyncClient, admin: dict[str, str]):
    r = await client.post("/scim/v2/Users", json=user_body("alice"), headers=admin)
    assert r.status_code == 201, r.text


async def test_a_scim_token_cannot_use_the_api(client: httpx.AsyncClient, tokens: Tokens):
    r = await client.get("/v1/groups", headers=tokens["scim"])
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


async def _trail(client: httpx.AsyncClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get("/v1/admin/trail?limit=100", headers=admin)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_every_scim_write_is_in_the_admin_trail_and_reads_are_not(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    alice = await scim.create_user("alice")
    group = await scim.create_group("eng", [alice["id"]])
    await scim.patch(
        f"Users/{alice['id']}", patch_body({"op": "replace", "value": {"nickName": "a"}})
    )
    await scim.patch(f"Groups/{group['id']}", patch_body({"op": "remove", "path": "members"}))
    await scim.post("Users", user_body("alice"))  # refused: 409, trailed too
    await scim.get("Users")
    await scim.get(f"Groups/{group['id']}")
    await scim.delete(f"Groups/{group['id']}")
    await scim.delete(f"Users/{alice['id']}")
    entries = [
        (e["method"], e["path"], e["status"], e["token_name"])
        for e in reversed(await _trail(client, admin))
        if e["path"].startswith("/scim/")
    ]
    assert entries == [
        ("POST", "/scim/v2/Users", 201, "scim"),
        ("POST", "/scim/v2/Groups", 201, "scim"),
        ("PATCH", f"/scim/v2/Users/{alice['id']}", 200, "scim"),
        ("PATCH", f"/scim/v2/Groups/{group['id']}", 204, "scim"),
        ("POST", "/scim/v2/Users", 409, "scim"),
        ("DELETE", f"/scim/v2/Groups/{group['id']}", 204, "scim"),
        ("DELETE", f"/scim/v2/Users/{alice['id']}", 204, "scim"),
    ]


async def test_an_unauthorised_scim_write_is_counted_not_trailed(
    client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    r = await client.post("/scim/v2/Users", json=user_body("x"), headers=tokens["check"])
    assert r.status_code == 403
    assert not [e for e in await _trail(client, admin) if e["path"].startswith("/scim/")]
