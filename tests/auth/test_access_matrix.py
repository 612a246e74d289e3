"""Who may call what: one row per /v1 endpoint, checked without a token, with every other
scope, and with the scope it needs (and ``admin``, which satisfies every scope); each with a
static token and with a person signed in with the company's OpenID Connect provider (scopes
from their IdP groups), through the same dependency.

To cover a new endpoint, add an ``Endpoint`` to ``ENDPOINTS``; if it needs an object to exist,
create it in ``seed`` and refer to it in the path as ``{name}``.
"""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.acceptance import AcceptExposure
from app.approvals import breakglass
from app.approvals import service as approvals_service
from app.approvals.schemas import BreakGlassCreate, ChangeRequest
from app.auth.oidc.dev_idp import DevIssuer
from app.auth.scopes import Scope
from app.auth.trail import is_trailed
from app.config import Settings
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetWrite, Sensitivity
from app.directory import service as directory_service
from app.exposure import repository as exposure_repository
from app.exposure import scan as exposure_scan
from app.identifiers import Action, Effect
from app.policy import service as policy_service
from app.policy.schemas import GrantCreate
from tests.oidc import People, oidc_settings

PROBLEM_JSON = "application/problem+json"
READ, WRITE, ADMIN = Scope.audit_read.value, Scope.policy_write.value, Scope.admin.value
CHECK = Scope.check.value
CHECK_BODY = {"principal": "user:alice", "dataset": "matrix.data", "action": "read"}
GRANT_ZED = {"principal": "user:zed", "resource": "matrix.*", "action": "read", "effect": "allow"}
UNTIL = "2999-01-01T00:00:00Z"
APPROVAL = {"change": {"method": "POST", "path": "/v1/grants", "body": GRANT_ZED},
            "reason": "matrix", "until": UNTIL}  # fmt: skip
BREAK_GLASS = {"principal": "user:zed", "dataset": "matrix.data", "purpose": "incident",
               "reason": "matrix", "minutes": 5}  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # may refer to what ``seed`` returns, e.g. ``{grant_id}``
    scope: str
    body: dict[str, Any] | None = None
    success_status: int = 200
    read_only: bool = False  # a POST that changes nothing (simulate)
    media_type: str = "application/json"  # of the success

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, seeded: dict[str, Any]) -> str:
        return self.path.format(**seeded)

    @property
    def route(self) -> str:
        return self.path.partition("?")[0]

    @property
    def is_mutation(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH", "DELETE"} and not self.read_only


ENDPOINTS = [
    Endpoint("GET", "/v1/groups", READ),
    Endpoint("GET", "/v1/groups/{group}", READ),
    Endpoint("PUT", "/v1/groups/{group}/members", WRITE, {"members": ["user:alice", "user:bob"]}),
    Endpoint("POST", "/v1/groups/{group}/members", WRITE, {"member": "user:carol"}),
    Endpoint("DELETE", "/v1/groups/{group}/members/{member}", WRITE),
    Endpoint(
        "PUT",
        "/v1/datasets/{dataset}",
        WRITE,
        {"owner": "group:matrix", "sensitivity": "public", "description": "replaced"},
    ),
    Endpoint("GET", "/v1/datasets", READ),
    Endpoint("GET", "/v1/datasets/{dataset}", READ),
    Endpoint(
        "POST",
        "/v1/grants",
        WRITE,
        {"principal": "user:dave", "resource": "matrix.*", "action": "read", "effect": "allow"},
        success_status=201,
    ),
    Endpoint("GET", "/v1/grants", READ),
    Endpoint("GET", "/v1/holds", READ),
    Endpoint("GET", "/v1/grants/{grant_id}", READ),
    Endpoint("DELETE", "/v1/grants/{grant_id}", WRITE),
    Endpoint("GET", "/v1/admin/trail", ADMIN),
    Endpoint("POST", "/v1/check", CHECK, CHECK_BODY),
    Endpoint("POST", "/v1/check/batch", CHECK, {"checks": [CHECK_BODY, CHECK_BODY]}),
    Endpoint("GET", "/v1/explain?principal=user:alice&dataset={dataset}&action=read", READ),
    Endpoint("GET", "/v1/access-log", READ),
    Endpoint("GET", "/v1/access-log/verify", READ),
    Endpoint("GET", "/v1/access-log/checkpoints", READ),
    Endpoint("GET", "/v1/alerts", Scope.alerts_read.value),
    Endpoint("GET", "/v1/access-log/{entry_id}", READ),
    Endpoint("GET", "/v1/access-log/{entry_id}/replay", READ),
    Endpoint(
        "POST",
        "/v1/grants/simulate",
        READ,
        {
            "add": [
                {
                    "principal": "user:zed",
                    "resource": "matrix.*",
                    "action": "read",
                    "effect": "allow",
                }
            ]
        },
        read_only=True,
    ),
    Endpoint("GET", "/v1/findings", READ),
    Endpoint("GET", "/v1/findings/{finding_id}", READ),
    Endpoint("GET", "/v1/findings/{finding_id}/reads", READ),
    Endpoint(
        "POST",
        "/v1/findings/{finding_id}/accept",
        WRITE,
        {"reason": "known", "until": "2999-01-01T00:00:00Z"},
    ),
    Endpoint("POST", "/v1/scan", WRITE),
    Endpoint("GET", "/v1/datasets/{dataset}/exposure", READ),
    Endpoint("GET", "/v1/principals/{principal}/access", READ),
    Endpoint("GET", "/v1/reports/exposure?dataset=matrix.*", READ),
    Endpoint(
        "POST", "/v1/policy/plan", WRITE, {"groups": {"planned": ["user:zed"]}}, read_only=True
    ),
    Endpoint("POST", "/v1/policy/apply", WRITE, {"groups": {"applied": ["user:zed"]}}),
    Endpoint("GET", "/v1/policy/casbin", READ, media_type="text/plain"),
    Endpoint("POST", "/v1/approvals", WRITE, APPROVAL, success_status=201),
    Endpoint("GET", "/v1/approvals", WRITE),
    Endpoint("GET", "/v1/approvals/{approval_id}", WRITE),
    Endpoint("POST", "/v1/approvals/{approval_id}/approve", WRITE),
    Endpoint("POST", "/v1/approvals/{approval_id}/reject", WRITE, {"note": "no"}),
    Endpoint("POST", "/v1/break-glass", WRITE, BREAK_GLASS, success_status=201),
    Endpoint("GET", "/v1/break-glass", WRITE),
    Endpoint("POST", "/v1/break-glass/{break_glass_id}/review", WRITE, {"note": "seen"}),
    # releasing a hold always takes an approval: the route only says so (403 with a pointer)
    Endpoint(
        "POST", "/v1/holds/{hold_id}/release", WRITE, success_status=403, media_type=PROBLEM_JSON
    ),
]

# A person's own data (`/v1/me`): any person signed in with the IdP, no scope; never a token.
PERSON = "person"
PERSON_ENDPOINTS = [
    Endpoint("GET", "/v1/me/reads", PERSON),
    Endpoint("GET", "/v1/me/access", PERSON),
]

# /v1 routes not in the matrix yet (they need seeded objects the fixture does not make, or were
# still being built when it was written). Move each into ENDPOINTS; a route in neither list
# fails test_every_v1_route_is_in_the_access_matrix.
# Path values for requests that must be refused before anything is looked up.
PLACEHOLDERS = {
    "group": "matrix",
    "member": "user:alice",
    "dataset": "matrix.data",
    "grant_id": 1,
    "finding_id": 1,
    "entry_id": 1,
    "principal": "user:alice",
    "approval_id": 1,
    "break_glass_id": 1,
    "hold_id": 1,
}

NOT_YET_IN_MATRIX: set[tuple[str, str]] = set()


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """The objects the endpoints refer to: a group with a member, a dataset, a grant.

    Made through the services in one transaction (one commit keeps the matrix fast).
    """
    async with sessionmaker() as session, session.begin():
        await directory_service.replace_members(
            session, gid="group:matrix", members=["user:alice"], actor="seed"
        )
        await datasets_service.put_dataset(
            session,
            dataset_id="matrix.data",
            body=DatasetWrite(owner="group:matrix", sensitivity=Sensitivity.internal),
            actor="seed",
        )
        grant = await policy_service.create_grant(
            session,
            body=GrantCreate(
                principal="group:matrix",
                resource="matrix.data",
                action=Action.read,
                effect=Effect.allow,
            ),
            actor="seed",
        )
        # the dataset's audience is empty, so the grant is a finding
        await exposure_scan.scan(session, actor="seed")
        [finding] = await exposure_repository.all_active(session)
        change = ChangeRequest.model_validate(APPROVAL["change"])
        accept = AcceptExposure(reason="matrix", until=UNTIL)
        approval = await approvals_service.record_pending(
            session, change=change, accept=accept, requested_by="seed", ttl=3600
        )
        glass = BreakGlassCreate.model_validate({**BREAK_GLASS, "principal": "user:bob"})
        used = await breakglass.use(session, body=glass, actor="seed")
    return {
        "approval_id": approval.id,
        "break_glass_id": used.id,
        "hold_id": 1,  # (its release is refused before the hold is looked up)
        "group": "matrix",
        "member": "user:alice",
        "dataset": "matrix.data",
        "grant_id": grant.id,
        "finding_id": finding.id,
    }


@pytest.fixture
def settings(database_url: str, idp: DevIssuer) -> Settings:
    """Both kinds of caller accepted: static tokens, and the development issuer's people."""
    return oidc_settings(database_url, idp.url)


@pytest.fixture(params=["token", "person"])
def callers(request: pytest.FixtureRequest, tokens: Any, people: People) -> Any:
    """Bearer headers per scope: a static token's, or a signed-in person's."""
    return tokens if request.param == "token" else people


@pytest.fixture
async def seeded(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, tokens: Any
) -> dict[str, Any]:
    made = await seed(sessionmaker)
    r = await client.post("/v1/check", json=CHECK_BODY, headers=tokens[Scope.check.value])
    return {**made, "entry_id": r.json()["access_log_id"], "principal": "user:alice"}


async def dump(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Everything a reader can see of groups, datasets and grants."""
    groups = (await client.get("/v1/groups?limit=1000", headers=headers)).json()["items"]
    members = {
        g["id"]: (
            await client.get(f"/v1/groups/{g['id'].split(':', 1)[1]}", headers=headers)
        ).json()["members"]
        for g in groups
    }
    datasets = (await client.get("/v1/datasets?limit=1000", headers=headers)).json()
    grants = [
        (await client.get(f"/v1/grants?limit=1000&status={status}", headers=headers)).json()
        for status in ("active", "expired", "revoked")
    ]
    ready = (await client.get("/readyz")).json()
    return {
        "groups": groups,
        "members": members,
        "datasets": datasets,
        "grants": grants,
        "policy_version": ready["policy_version"],
    }


def _assert_problem(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]


def test_every_v1_route_is_in_the_access_matrix(app: FastAPI) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }
    in_matrix = {(e.method, e.route) for e in ENDPOINTS + PERSON_ENDPOINTS}
    missing = routes - in_matrix - NOT_YET_IN_MATRIX
    assert not missing, f"add these routes to ENDPOINTS in {__name__}: {sorted(missing)}"
    assert in_matrix <= routes, f"ENDPOINTS lists routes that do not exist: {in_matrix - routes}"


@pytest.mark.parametrize("endpoint", ENDPOINTS + PERSON_ENDPOINTS, ids=str)
async def test_request_without_valid_token_is_refused_with_401(
    client: httpx.AsyncClient, people: People, endpoint: Endpoint
) -> None:
    url = endpoint.url(PLACEHOLDERS)  # nothing is looked up before the token is
    for headers in (
        {},
        {"Authorization": "Bearer acl_not-a-real-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not.a.jwt"},
        people.headers("alice", ["g-admin"], exp=1_000_000, iat=999_000, nbf=999_000),
    ):
        r = await client.request(endpoint.method, url, json=endpoint.body, headers=headers)
        _assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer", headers


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
async def test_token_without_the_required_scope_is_refused_with_403(
    client: httpx.AsyncClient, callers: Any, seeded: dict[str, Any], endpoint: Endpoint
) -> None:
    others = [s.value for s in Scope if s.value not in {endpoint.scope, ADMIN}]
    assert others
    for scope in others:
        r = await client.request(
            endpoint.method, endpoint.url(seeded), json=endpoint.body, headers=callers[scope]
        )
        _assert_problem(r, 403)
        assert endpoint.scope in r.json()["detail"], scope


@pytest.mark.parametrize("scope", ["required", ADMIN])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
async def test_token_with_the_required_scope_or_admin_succeeds(
    client: httpx.AsyncClient, callers: Any, seeded: dict[str, Any], endpoint: Endpoint, scope: str
) -> None:
    headers = callers[endpoint.scope if scope == "required" else scope]
    r = await client.request(
        endpoint.method, endpoint.url(seeded), json=endpoint.body, headers=headers
    )
    assert r.status_code == endpoint.success_status, r.text
    assert r.headers["content-type"].partition(";")[0] == endpoint.media_type


UNPARSABLE = [b"{", b"[" * 5000, b"\xff\xfe"]  # cut short, nested too deep, not UTF-8


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.body is not None], ids=str)
async def test_an_unparsable_body_is_refused_401_or_403_before_it_is_reported(
    client: httpx.AsyncClient, tokens: Any, seeded: dict[str, Any], endpoint: Endpoint
) -> None:
    """Without a valid token (or the scope), a caller learns nothing about its body, and the
    admin trail knows who sent a body that could not be read."""
    other = next(s.value for s in Scope if s.value not in {endpoint.scope, ADMIN})
    json_type = {"content-type": "application/json"}
    for content in UNPARSABLE:
        url = endpoint.url(seeded)
        r = await client.request(endpoint.method, url, content=content, headers=json_type)
        _assert_problem(r, 401)
        r = await client.request(
            endpoint.method, url, content=content, headers={**json_type, **tokens[other]}
        )
        _assert_problem(r, 403)
        r = await client.request(
            endpoint.method, url, content=content, headers={**json_type, **tokens[endpoint.scope]}
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"].startswith("body"), r.text
    if is_trailed(endpoint.method, endpoint.route):
        trail = (await client.get("/v1/admin/trail?limit=1", headers=tokens[ADMIN])).json()
        [newest] = trail["items"]
        assert (newest["status"], newest["token_name"]) == (
            r.status_code,
            endpoint.scope.replace(":", "-"),
        )


async def test_audit_reader_cannot_change_anything(
    client: httpx.AsyncClient, callers: Any, seeded: dict[str, Any]
) -> None:
    reader = callers[READ]
    before = await dump(client, reader)
    assert (
        before["grants"][0]["items"] and before["datasets"]["items"]
    )  # there is something to lose
    for endpoint in ENDPOINTS:
        if not endpoint.is_mutation:
            continue
        r = await client.request(
            endpoint.method, endpoint.url(seeded), json=endpoint.body, headers=reader
        )
        _assert_problem(r, 403)
    assert await dump(client, reader) == before


async def test_a_person_without_scopes_is_refused_403_on_every_other_v1_route(
    client: httpx.AsyncClient, people: People, seeded: dict[str, Any]
) -> None:
    nobody = people.headers("nobody", ["not-mapped-to-any-scope"])
    for endpoint in ENDPOINTS:
        r = await client.request(
            endpoint.method, endpoint.url(seeded), json=endpoint.body, headers=nobody
        )
        _assert_problem(r, 403)
    for endpoint in PERSON_ENDPOINTS:  # their own data, though
        r = await client.request(endpoint.method, endpoint.url(seeded), headers=nobody)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("endpoint", PERSON_ENDPOINTS, ids=str)
async def test_only_a_signed_in_person_may_read_their_own_data(
    client: httpx.AsyncClient, tokens: Any, people: People, endpoint: Endpoint
) -> None:
    for scope in Scope:  # a token has no data of its own, whatever its scope
        r = await client.request(endpoint.method, endpoint.path, headers=tokens[scope.value])
        _assert_problem(r, 403)
    for scope in Scope:
        r = await client.request(endpoint.method, endpoint.path, headers=people[scope.value])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"


# -- /scim/v2: the IdP's SCIM endpoints, scope `scim`; every refusal a SCIM error document ----

SCIM = Scope.scim.value
SCIM_JSON = "application/scim+json"
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
SCIM_PATCH = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "path": "externalId", "value": "x"}],
}
SCIM_SEARCH = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
SCIM_ENDPOINTS = [
    Endpoint("GET", "/scim/v2/ServiceProviderConfig", SCIM),
    Endpoint("GET", "/scim/v2/ResourceTypes", SCIM),
    Endpoint("GET", "/scim/v2/ResourceTypes/{resource_type_id}", SCIM),
    Endpoint("GET", "/scim/v2/Schemas", SCIM),
    Endpoint("GET", "/scim/v2/Schemas/{schema_id}", SCIM),
    Endpoint("GET", "/scim/v2/Users", SCIM),
    Endpoint("POST", "/scim/v2/Users", SCIM, {"schemas": [SCIM_USER], "userName": "zed"}, 201),
    Endpoint("POST", "/scim/v2/Users/.search", SCIM, SCIM_SEARCH, read_only=True),
    Endpoint("GET", "/scim/v2/Users/{user_id}", SCIM),
    Endpoint("PUT", "/scim/v2/Users/{user_id}", SCIM, {"schemas": [SCIM_USER], "userName": "al"}),
    Endpoint("PATCH", "/scim/v2/Users/{user_id}", SCIM, SCIM_PATCH),
    Endpoint("DELETE", "/scim/v2/Users/{user_id}", SCIM, success_status=204),
    Endpoint("GET", "/scim/v2/Groups", SCIM),
    Endpoint("POST", "/scim/v2/Groups", SCIM, {"schemas": [SCIM_GROUP], "displayName": "z"}, 201),
    Endpoint("POST", "/scim/v2/Groups/.search", SCIM, SCIM_SEARCH, read_only=True),
    Endpoint("GET", "/scim/v2/Groups/{group_id}", SCIM),
    Endpoint(
        "PUT", "/scim/v2/Groups/{group_id}", SCIM, {"schemas": [SCIM_GROUP], "displayName": "s"}
    ),
    Endpoint("PATCH", "/scim/v2/Groups/{group_id}", SCIM, SCIM_PATCH, success_status=204),
    Endpoint("DELETE", "/scim/v2/Groups/{group_id}", SCIM, success_status=204),
    Endpoint("POST", "/scim/v2/.search", SCIM, SCIM_SEARCH, success_status=501, read_only=True),
]
SCIM_PLACEHOLDERS = {
    "resource_type_id": "User",
    "schema_id": SCIM_USER,
    "user_id": "00000000-0000-4000-8000-000000000000",
    "group_id": "00000000-0000-4000-8000-000000000000",
}


@pytest.fixture
async def scim_seeded(client: httpx.AsyncClient, tokens: Any) -> dict[str, Any]:
    """A SCIM user in a SCIM group, made by the IdP."""
    headers = tokens[SCIM]
    user = {"schemas": [SCIM_USER], "userName": "alice"}
    r = await client.post("/scim/v2/Users", json=user, headers=headers)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    group = {"schemas": [SCIM_GROUP], "displayName": "seed", "members": [{"value": user_id}]}
    r = await client.post("/scim/v2/Groups", json=group, headers=headers)
    assert r.status_code == 201, r.text
    return {**SCIM_PLACEHOLDERS, "user_id": user_id, "group_id": r.json()["id"]}


def _assert_scim_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == SCIM_JSON
    body = r.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == str(status) and body["detail"]


async def _scim_dump(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    users = (await client.get("/scim/v2/Users", headers=headers)).json()
    groups = (await client.get("/scim/v2/Groups", headers=headers)).json()
    return {"users": users, "groups": groups}


def test_every_scim_route_is_in_the_access_matrix(app: FastAPI) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/scim/")
        for method in operations
    }
    in_matrix = {(e.method, e.route) for e in SCIM_ENDPOINTS}
    assert routes | {("POST", "/scim/v2/.search")} == in_matrix  # (501, not in the document)


@pytest.mark.parametrize("endpoint", SCIM_ENDPOINTS, ids=str)
async def test_scim_request_without_valid_token_is_refused_with_401(
    client: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    url = endpoint.url(SCIM_PLACEHOLDERS)
    for headers in (
        {},
        {"Authorization": "Bearer acl_not-a-real-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        r = await client.request(endpoint.method, url, json=endpoint.body, headers=headers)
        _assert_scim_error(r, 401)
        assert r.headers["www-authenticate"] == "Bearer", headers


@pytest.mark.parametrize("endpoint", SCIM_ENDPOINTS, ids=str)
async def test_scim_token_without_the_scim_scope_is_refused_with_403(
    client: httpx.AsyncClient, tokens: Any, scim_seeded: dict[str, Any], endpoint: Endpoint
) -> None:
    for scope in [s.value for s in Scope if s.value not in {SCIM, ADMIN}]:
        r = await client.request(
            endpoint.method, endpoint.url(scim_seeded), json=endpoint.body, headers=tokens[scope]
        )
        _assert_scim_error(r, 403)
        assert "'scim'" in r.json()["detail"], scope


@pytest.mark.parametrize("scope", [SCIM, ADMIN])
@pytest.mark.parametrize("endpoint", SCIM_ENDPOINTS, ids=str)
async def test_scim_token_with_the_scim_scope_or_admin_succeeds(
    client: httpx.AsyncClient,
    tokens: Any,
    scim_seeded: dict[str, Any],
    endpoint: Endpoint,
    scope: str,
) -> None:
    r = await client.request(
        endpoint.method, endpoint.url(scim_seeded), json=endpoint.body, headers=tokens[scope]
    )
    assert r.status_code == endpoint.success_status, r.text
    if r.status_code != 204:
        assert r.headers["content-type"] == SCIM_JSON


@pytest.mark.parametrize("endpoint", [e for e in SCIM_ENDPOINTS if e.body is not None], ids=str)
async def test_an_unparsable_scim_body_is_refused_401_or_403_before_it_is_reported(
    client: httpx.AsyncClient, tokens: Any, scim_seeded: dict[str, Any], endpoint: Endpoint
) -> None:
    other = tokens[Scope.audit_read.value]
    json_type = {"content-type": SCIM_JSON}
    url = endpoint.url(scim_seeded)
    for content in UNPARSABLE:
        r = await client.request(endpoint.method, url, content=content, headers=json_type)
        _assert_scim_error(r, 401)
        r = await client.request(
            endpoint.method, url, content=content, headers={**json_type, **other}
        )
        _assert_scim_error(r, 403)
        r = await client.request(
            endpoint.method, url, content=content, headers={**json_type, **tokens[SCIM]}
        )
        _assert_scim_error(r, 501 if endpoint.route == "/scim/v2/.search" else 400)
    if is_trailed(endpoint.method, endpoint.route):
        trail = (await client.get("/v1/admin/trail?limit=1", headers=tokens[ADMIN])).json()
        [newest] = trail["items"]
        assert (newest["status"], newest["token_name"]) == (r.status_code, SCIM)


async def test_no_other_scope_can_change_the_idp_directory(
    client: httpx.AsyncClient, tokens: Any, scim_seeded: dict[str, Any]
) -> None:
    before = await _scim_dump(client, tokens[SCIM])
    for scope in [s.value for s in Scope if s.value not in {SCIM, ADMIN}]:
        for endpoint in SCIM_ENDPOINTS:
            if endpoint.is_mutation:
                r = await client.request(
                    endpoint.method,
                    endpoint.url(scim_seeded),
                    json=endpoint.body,
                    headers=tokens[scope],
                )
                _assert_scim_error(r, 403)
    assert await _scim_dump(client, tokens[SCIM]) == before
