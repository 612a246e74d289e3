"""Malformed input is refused with a 422 problem naming the field, and changes nothing.

The identifier rules are SPEC's, restated here independently of app.identifiers:
principals ``user|service|group:<id>`` (lower-cased on input), dataset ids of dot-separated
segments (never lower-cased), resources that are a dataset id, ``prefix.*`` or ``*``.
"""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetWrite, Sensitivity
from app.directory import service as directory_service
from app.identifiers import Action, DatasetId, Effect, GroupName, PrincipalId, ResourcePattern
from app.policy import service as policy_service
from app.policy.schemas import GrantCreate

SPEC_ID = r"[a-z0-9][a-z0-9._@+-]{0,127}"
SPEC_PRINCIPAL = re.compile(rf"(user|service|group):{SPEC_ID}")
SPEC_SEGMENT = r"[a-z0-9_][a-z0-9_-]{0,63}"
SPEC_DATASET = re.compile(rf"{SPEC_SEGMENT}(\.{SPEC_SEGMENT})*")
MAX_DATASET_LENGTH = 512  # the service's own bound on a dataset id (its column width)
PROBLEM_JSON = "application/problem+json"


# --- the validators, against SPEC's regular expressions ------------------------------------

# Characters near the edges of the rules: separators, case, whitespace, look-alikes.
EDGY = st.sampled_from(
    [*"aZz09._@+-:*/ \n\t\x00", "\u212a", "\u0131", "\u00df", "\u00e9", "user:", "group:"]
)  # the Kelvin sign lower-cases to an ASCII "k"
edgy_text = st.lists(EDGY, max_size=30).map("".join)
candidates = st.one_of(
    edgy_text,
    st.text(max_size=20),
    st.from_regex(SPEC_PRINCIPAL, fullmatch=True),
    st.from_regex(SPEC_DATASET, fullmatch=True),
    st.builds(lambda s: s.upper(), st.from_regex(SPEC_PRINCIPAL, fullmatch=True)),
)


PRINCIPAL: TypeAdapter[str] = TypeAdapter(PrincipalId)
GROUP_NAME: TypeAdapter[str] = TypeAdapter(GroupName)
DATASET: TypeAdapter[str] = TypeAdapter(DatasetId)
RESOURCE: TypeAdapter[str] = TypeAdapter(ResourcePattern)


def accepts(adapter: TypeAdapter[str], value: str) -> str | None:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def is_spec_dataset(value: str) -> bool:
    return bool(SPEC_DATASET.fullmatch(value)) and len(value) <= MAX_DATASET_LENGTH


@settings(max_examples=100)
@given(candidates)
@example("user:alice\n")
@example("user:\u212aate")  # Kelvin sign: lower-cases to an ASCII "k"
@example("USER:Alice")
@example("group:" + "a" * 128)
@example("group:" + "a" * 129)
def test_principal_is_accepted_iff_its_ascii_lower_case_matches_spec(value: str) -> None:
    expected = (
        value.lower() if value.isascii() and SPEC_PRINCIPAL.fullmatch(value.lower()) else None
    )
    assert accepts(PRINCIPAL, value) == expected


@settings(max_examples=100)
@given(st.one_of(edgy_text, st.from_regex(SPEC_ID, fullmatch=True)))
@example("eng\n")
@example("ENG")
def test_group_name_is_accepted_iff_its_lower_case_matches_spec(value: str) -> None:
    expected = value.lower() if value.isascii() and re.fullmatch(SPEC_ID, value.lower()) else None
    assert accepts(GROUP_NAME, value) == expected


@settings(max_examples=100)
@given(candidates)
@example("employee_activity.keystrokes")
@example("A.B")
@example("a.b\n")
@example("a" * 64 + ".b")
@example("a" * 65)
@example(".".join(["a" * 63] * 9))  # 575 characters of valid segments: over the length bound
def test_dataset_id_is_accepted_iff_it_matches_spec_unchanged(value: str) -> None:
    expected = value if is_spec_dataset(value) else None
    assert accepts(DATASET, value) == expected


@settings(max_examples=100)
@given(st.one_of(candidates, st.builds(lambda s: s + ".*", candidates)))
@example("*")
@example("a.*")
@example("a.*.b")
@example("a*")
@example(".a")
@example(".*")
@example("*.*")
@example("a.*\n")
def test_resource_is_accepted_iff_it_is_a_dataset_a_prefix_pattern_or_star(value: str) -> None:
    valid = (
        value == "*"
        or is_spec_dataset(value)
        or (value.endswith(".*") and is_spec_dataset(value[:-2]))
    )
    assert accepts(RESOURCE, value) == (value if valid else None)


# --- the API: 422 problems that name the field, and nothing changed -------------------------


@dataclass(frozen=True)
class Bad:
    method: str
    url: str
    field: str  # the errors[*].field expected; "body*" means any field starting with "body"
    json: Any = None
    content: bytes | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.url} {self.json if self.content is None else self.content!r}"


@pytest.fixture
async def seeded(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Something to lose: a group, a dataset, a grant."""
    async with sessionmaker() as session, session.begin():
        await directory_service.replace_members(
            session, gid="group:eng", members=["user:alice"], actor="seed"
        )
        await datasets_service.put_dataset(
            session,
            dataset_id="eng.wiki",
            body=DatasetWrite(owner="group:eng", sensitivity=Sensitivity.internal),
            actor="seed",
        )
        await policy_service.create_grant(
            session,
            body=GrantCreate(
                principal="group:eng", resource="eng.*", action=Action.read, effect=Effect.allow
            ),
            actor="seed",
        )


async def dump(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    groups = (await client.get("/v1/groups?limit=1000", headers=headers)).json()["items"]
    members = {
        g["id"]: (await client.get(f"/v1/groups/{g['id'][6:]}", headers=headers)).json()
        for g in groups
    }
    return {
        "groups": groups,
        "members": members,
        "datasets": (await client.get("/v1/datasets?limit=1000", headers=headers)).json(),
        "grants": [
            (await client.get(f"/v1/grants?limit=1000&status={s}", headers=headers)).json()
            for s in ("active", "expired", "revoked")
        ],
        "policy_version": (await client.get("/readyz")).json()["policy_version"],
    }


async def refusal_mismatch(
    client: httpx.AsyncClient, headers: dict[str, str], case: Bad
) -> str | None:
    """None if ``case`` is answered with a 422 problem naming its field; else what was wrong."""
    if case.content is not None:
        r = await client.request(
            case.method,
            case.url,
            content=case.content,
            headers={**headers, "content-type": "application/json"},
        )
    else:
        r = await client.request(case.method, case.url, json=case.json, headers=headers)
    if r.status_code != 422:
        return f"{case}: {r.status_code} {r.text[:200]}"
    if r.headers["content-type"] != PROBLEM_JSON:
        return f"{case}: content-type {r.headers['content-type']}"
    problem = r.json()
    fields = [e["field"] for e in problem.get("errors", [])]
    if case.field.endswith("*"):
        named = any(f.startswith(case.field[:-1]) for f in fields)
    else:
        named = case.field in fields
    if not named or case.field.rstrip("*") not in problem["detail"]:
        return f"{case}: expected {case.field}, got {fields} / {problem['detail']!r}"
    return None


async def assert_refused_without_change(
    client: httpx.AsyncClient, admin: dict[str, str], cases: list[Bad]
) -> None:
    before = await dump(client, admin)
    mismatches = [m for case in cases if (m := await refusal_mismatch(client, admin, case))]
    assert not mismatches, "\n".join(mismatches)
    assert await dump(client, admin) == before


BAD_PRINCIPALS = [
    "alice",
    "user:",
    "user",
    "robot:alice",
    ":alice",
    "user::alice",
    "user:-alice",
    "user:.alice",
    "user:ali ce",
    "user:ali/ce",
    "user:" + "a" * 129,
    "user:alice\n",
    "user:ålice",
    "user:alice\x00",
    "user:\u212aate",
    "User Alice",
    "",
]


def principal_cases(target: str) -> list[Bad]:
    cases = []
    for p in BAD_PRINCIPALS:
        cases.append(
            {
                "grant": Bad("POST", "/v1/grants", "body.principal",
                             {"principal": p, "resource": "eng.*", "action": "read",
                              "effect": "allow"}),
                "member": Bad("POST", "/v1/groups/eng/members", "body.member", {"member": p}),
                "members": Bad("PUT", "/v1/groups/eng/members", "body.members.1",
                               {"members": ["user:bob", p]}),
                "owner": Bad("PUT", "/v1/datasets/eng.wiki", "body.owner",
                             {"owner": p, "sensitivity": "public"}),
                "audience": Bad("PUT", "/v1/datasets/eng.wiki", "body.intended_audience.0",
                                {"owner": "group:eng", "sensitivity": "public",
                                 "intended_audience": [p]}),
                "path": Bad("DELETE", f"/v1/groups/eng/members/{quote(p, safe=':@+')}",
                            "path.member"),
                "query": Bad("GET", f"/v1/grants?principal={quote(p)}", "query.principal"),
            }[target]
        )  # fmt: skip
    if target == "path":  # "/" cannot be in a path segment: that is a 404, not this route
        cases = [c for c in cases if "%2F" not in c.url and not c.url.endswith("/")]
    return cases


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    "target", ["grant", "member", "members", "owner", "audience", "path", "query"]
)
async def test_malformed_principal_is_refused_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], target: str
):
    await assert_refused_without_change(client, admin, principal_cases(target))


BAD_GROUP_NAMES = ["-eng", "e ng", "eng!", "x" * 129, "group:eng", "eng\n", "ëng", ".eng"]


@pytest.mark.usefixtures("seeded")
async def test_malformed_group_in_path_is_refused(client: httpx.AsyncClient, admin: dict[str, str]):
    cases = []
    for name in BAD_GROUP_NAMES:
        g = quote(name, safe=":")
        cases += [
            Bad("GET", f"/v1/groups/{g}", "path.group"),
            Bad("PUT", f"/v1/groups/{g}/members", "path.group", {"members": []}),
            Bad("POST", f"/v1/groups/{g}/members", "path.group", {"member": "user:a"}),
            Bad("DELETE", f"/v1/groups/{g}/members/user:alice", "path.group"),
        ]
    await assert_refused_without_change(client, admin, cases)


BAD_DATASETS = [
    "A.B",
    "Eng.wiki",
    "eng.WIKI",
    "a..b",
    ".a",
    "a.",
    "-a",
    "a.-b",
    "a" * 65,
    "a b",
    "a.*",
    "*",
    "a\x00",
    "ü",
    "a\n",
    "a:b",
]


@pytest.mark.usefixtures("seeded")
async def test_malformed_dataset_id_in_path_is_refused_and_not_lower_cased(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    body = {"owner": "group:eng", "sensitivity": "public"}
    cases = []
    for d in BAD_DATASETS:
        cases += [
            Bad("PUT", f"/v1/datasets/{quote(d, safe='')}", "path.dataset", body),
            Bad("GET", f"/v1/datasets/{quote(d, safe='')}", "path.dataset"),
        ]
    await assert_refused_without_change(client, admin, cases)
    # "Eng.wiki" was not quietly read as the existing eng.wiki either.
    assert (await client.get("/v1/datasets/eng.wiki", headers=admin)).status_code == 200


BAD_RESOURCES = [
    "a.*.b",
    "a*",
    ".a",
    "A.B",
    "Eng.*",
    "a.",
    "**",
    "a.**",
    "",
    "*.a",
    "a.b*",
    "a .b",
    "a/b",
    ".*",
    "*.*",
    "a.*\n",
    "a" * 513,
]


@pytest.mark.usefixtures("seeded")
async def test_malformed_resource_pattern_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    cases = []
    for resource in BAD_RESOURCES:
        cases += [
            Bad("POST", "/v1/grants", "body.resource",
                {"principal": "user:a", "resource": resource, "action": "read", "effect": "allow"}),
            Bad("GET", f"/v1/grants?resource={quote(resource, safe='')}", "query.resource"),
        ]  # fmt: skip
    await assert_refused_without_change(client, admin, cases)


def grant_with(**fields: Any) -> dict[str, Any]:
    return {
        "principal": "user:a",
        "resource": "eng.*",
        "action": "read",
        "effect": "allow",
        **fields,
    }


@pytest.mark.usefixtures("seeded")
async def test_unknown_action_or_effect_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    cases = [Bad("POST", "/v1/grants", "body.action", grant_with(action=a))
             for a in ["delete", "READ", "", "read,write", 1, None, ["read"]]]  # fmt: skip
    cases += [Bad("POST", "/v1/grants", "body.effect", grant_with(effect=e))
              for e in ["permit", "ALLOW", "", 0, None]]  # fmt: skip
    cases += [Bad("GET", f"/v1/grants?action={a}", "query.action") for a in ["delete", "READ"]]
    # SPEC marks no effect optional: a grant without one is refused, never assumed an allow
    unstated = {k: v for k, v in grant_with().items() if k != "effect"}
    cases += [
        Bad("POST", "/v1/grants", "body.effect", unstated),
        Bad("POST", "/v1/grants/simulate", "body.add.0.effect", {"add": [unstated]}),
    ]
    await assert_refused_without_change(client, admin, cases)


DATASET_BODY = {"owner": "group:eng", "sensitivity": "public"}


@pytest.mark.usefixtures("seeded")
async def test_malformed_body_is_refused_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    put_dataset = "/v1/datasets/eng.wiki"
    cases = [
        # unknown extra fields
        Bad("POST", "/v1/grants", "body.role", grant_with(role="admin")),
        Bad("PUT", put_dataset, "body.classification", {**DATASET_BODY, "classification": "x"}),
        Bad("POST", "/v1/groups/eng/members", "body.extra", {"member": "user:a", "extra": 1}),
        Bad("PUT", "/v1/groups/eng/members", "body.member", {"members": [], "member": "user:a"}),
        # wrong JSON types
        Bad("POST", "/v1/grants", "body.principal", grant_with(principal=5)),
        Bad("POST", "/v1/grants", "body.justification", grant_with(justification=["why"])),
        Bad("POST", "/v1/grants", "body.expires_at", grant_with(expires_at={"in": "1h"})),
        Bad("PUT", "/v1/groups/eng/members", "body.members", {"members": "user:a"}),
        Bad("PUT", "/v1/groups/eng/members", "body.members", {"members": {"user:a": True}}),
        Bad("PUT", "/v1/groups/eng/members", "body.members.0", {"members": [["user:a"]]}),
        Bad("PUT", "/v1/groups/eng/members", "body.members.0", {"members": [[[[["user:a"]]]]]}),
        Bad("POST", "/v1/groups/eng/members", "body.member", {"member": ["user:a"]}),
        Bad("PUT", put_dataset, "body.sensitivity", {**DATASET_BODY, "sensitivity": 1}),
        Bad("PUT", put_dataset, "body.sensitivity", {**DATASET_BODY, "sensitivity": "secret"}),
        Bad("PUT", put_dataset, "body.guard", {**DATASET_BODY, "guard": "deny"}),
        Bad("PUT", put_dataset, "body.intended_audience",
            {**DATASET_BODY, "intended_audience": "group:eng"}),
        Bad("PUT", put_dataset, "body.description", {**DATASET_BODY, "description": "x" * 4001}),
        Bad("PUT", put_dataset, "body.description", {**DATASET_BODY, "description": "a\x00b"}),
        Bad("POST", "/v1/grants", "body.justification", grant_with(justification="a\x00b")),
        Bad("POST", "/v1/grants", "body.justification", grant_with(justification="x" * 2001)),
        # a lone surrogate is valid JSON but no database can store it
        Bad("POST", "/v1/grants", "body.justification",
            content=b'{"principal": "user:a", "resource": "eng.*", "action": "read", '
                    b'"justification": "\\ud800"}'),
        Bad("PUT", put_dataset, "body.description",
            content=b'{"owner": "user:o", "sensitivity": "internal", "description": "\\udfff"}'),
        Bad("POST", "/v1/check", "body.request_id",
            content=b'{"principal": "user:a", "dataset": "eng.wiki", "action": "read", '
                    b'"request_id": "\\ud800"}'),
        # groups hold members; only users and services read
        Bad("POST", "/v1/check", "body.principal",
            {"principal": "group:eng", "dataset": "eng.wiki", "action": "read"}),
        # one batch is one transaction: its data_subjects are bounded in all
        Bad("POST", "/v1/check/batch", "body.checks",
            {"checks": [{"principal": "user:a", "dataset": "eng.wiki", "action": "read",
                         "data_subjects": [f"user:s{n}" for n in range(1000)]}] * 11}),
        # acceptance must end in the future, and in the datetime range once in UTC
        Bad("PUT", "/v1/groups/eng/members", "body.accept_exposure.until",
            {"members": ["user:a"],
             "accept_exposure": {"reason": "r", "until": "2000-01-01T00:00:00Z"}}),
        Bad("POST", "/v1/grants", "body.accept_exposure.until",
            grant_with(accept_exposure={"reason": "r", "until": "9999-12-31T23:59:59-14:00"})),
        Bad("PUT", "/v1/groups/eng/members", "body.members",
            {"members": [f"user:u{n}" for n in range(10_001)]}),
        # missing fields, and bodies that are not a JSON object
        Bad("POST", "/v1/grants", "body.action", {"principal": "user:a", "resource": "eng.*"}),
        Bad("POST", "/v1/grants", "body*", content=b""),
        Bad("POST", "/v1/grants", "body*", content=b'{"principal": '),
        Bad("POST", "/v1/grants", "body*", content=b"{'principal': 'user:a'}"),
        Bad("POST", "/v1/grants", "body*", content=b"nul"),
        Bad("POST", "/v1/grants", "body*", content=b"null"),
        Bad("POST", "/v1/grants", "body*", content=b"[]"),
        Bad("POST", "/v1/grants", "body*", content=b'"user:a"'),
        Bad("PUT", put_dataset, "body*", content=b""),
        Bad("PUT", "/v1/groups/eng/members", "body*", content=b"{"),
        Bad("POST", "/v1/groups/eng/members", "body*", content=b""),
    ]  # fmt: skip
    await assert_refused_without_change(client, admin, cases)


@pytest.mark.usefixtures("seeded")
async def test_malformed_paging_and_query_parameters_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    cases = [
        Bad("GET", f"{path}?limit={limit}", "query.limit")
        for path in ("/v1/grants", "/v1/groups", "/v1/datasets", "/v1/admin/trail")
        for limit in ("1001", "100000", "0", "-5", "abc", "1.5", "1e309", "")
    ]
    cases += [
        Bad("GET", f"{path}?cursor={cursor}", "query.cursor")
        for path in ("/v1/grants", "/v1/admin/trail")
        for cursor in ("abc", "-1", "1.5", "99999999999999999999", "%00")
    ]
    cases += [
        Bad("GET", f"{path}?cursor={cursor}", "query.cursor")
        for path in ("/v1/groups", "/v1/datasets")
        for cursor in ("%00", "a%0Ab", "x" * 601)
    ]
    cases += [
        Bad("GET", "/v1/grants?status=gone", "query.status"),
        Bad("GET", "/v1/access-log?since=9999-12-31T23:59:59-14:00", "query.since"),
        Bad("GET", "/v1/access-log?until=0001-01-01T00:00:00%2B14:00", "query.until"),
        # a bare number is not a timestamp (pydantic alone reads it as Unix seconds or millis)
        Bad("GET", "/v1/access-log?since=2020", "query.since"),
        Bad("GET", "/v1/access-log?until=253402300800", "query.until"),
        Bad("GET", "/v1/access-log?since=2026-11-27", "query.since"),
        Bad("POST", "/v1/grants", "body.expires_at", grant_with(expires_at=4102444800)),
        Bad("POST", "/v1/grants", "body.expires_at", grant_with(expires_at="4102444800")),
        Bad("GET", "/v1/admin/trail?token_name=%00", "query.token_name"),
        Bad("GET", f"/v1/admin/trail?token_name={'x' * 161}", "query.token_name"),
    ]
    for method in ("GET", "DELETE"):
        cases += [
            Bad(method, f"/v1/grants/{grant_id}", "path.grant_id")
            for grant_id in ("abc", "0", "-1", "1.5", "99999999999999999999", "%00")
        ]
    await assert_refused_without_change(client, admin, cases)


@pytest.mark.usefixtures("seeded")
async def test_values_at_the_edge_of_the_rules_are_accepted(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    longest_id = "a" + "b" * 127
    r = await client.post(
        "/v1/groups/eng/members", json={"member": f"Service:{longest_id.upper()}"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert f"service:{longest_id}" in r.json()["members"]
    r = await client.post(
        "/v1/groups/eng/members", json={"member": "user:j.doe+ml@example.com"}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.put(f"/v1/groups/{'g' * 128}/members", json={"members": []}, headers=admin)
    assert r.status_code == 200, r.text

    segment = "_" + "a-" * 31 + "z"  # 64 characters
    dataset = f"{segment}.0.{segment}"
    r = await client.put(
        f"/v1/datasets/{dataset}",
        json={**DATASET_BODY, "description": 'Émoji 🎉, ünïcødé and "quotes"'},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    got = (await client.get(f"/v1/datasets/{dataset}", headers=admin)).json()
    assert got["description"] == 'Émoji 🎉, ünïcødé and "quotes"'
    for resource in ("*", f"{segment}.*", dataset):
        r = await client.post("/v1/grants", json=grant_with(resource=resource), headers=admin)
        assert r.status_code == 201, r.text
    r = await client.get("/v1/grants?limit=1000&principal=user:a", headers=admin)
    assert r.status_code == 200 and len(r.json()["items"]) == 3


NASTY: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/datasets/..%2F..", {}),
    ("PUT", "/v1/datasets/..%2F..", {"json": DATASET_BODY}),
    ("GET", "/v1/datasets/%2e%2e", {}),
    ("GET", "/v1/datasets/../../etc/passwd", {}),
    ("GET", "/v1/groups/..%2F..%2Fadmin%2Ftrail", {}),
    ("DELETE", "/v1/groups/eng/members/..%2F..%2F..%2Fgrants%2F1", {}),
    ("GET", "/v1/datasets/" + "a" * 60_000, {}),
    ("PUT", "/v1/groups/" + "g" * 10_000 + "/members", {"json": {"members": []}}),
    ("GET", "/v1/groups/%F0%9F%91%8D", {}),
    ("GET", "/v1/datasets/%ff%fe", {}),
    ("GET", "/v1/grants?principal=" + "user:" + "a" * 60_000, {}),
    ("GET", "/v1/grants?principal=user%3A%00&resource=%00&action=%00", {}),
    ("POST", "/v1/grants", {"json": grant_with(principal="user:" + "a" * 100_000)}),
    ("POST", "/v1/grants", {"json": grant_with(justification="🎉" * 100_000)}),
    ("POST", "/v1/grants", {"json": grant_with(expires_at="9999-12-31T23:59:59-14:00")}),
    ("POST", "/v1/grants", {"json": grant_with(expires_at="0001-01-01T00:00:00+14:00")}),
    ("POST", "/v1/grants", {"content": b'{"principal": "user:a", "action": "read",'
                                       b' "resource": "x", "expires_at": 1e400}'}),
    ("POST", "/v1/grants", {"content": b'{"principal": "user:a\\ud800", "action": "read"}'}),
    ("POST", "/v1/grants", {"content": b"\xff\xfe\x00\x00"}),
    ("PUT", "/v1/groups/eng/members", {"content": b'{"members": ' + b"[" * 50_000}),
    ("PUT", "/v1/groups/eng/members", {"content": b"[" * 100_000 + b"]" * 100_000}),
    ("PUT", "/v1/groups/eng/members", {"json": {"members": [None, 1, {}, [], "user:a"]}}),
    ("PUT", "/v1/datasets/eng.wiki", {"json": {**DATASET_BODY, "intended_audience": [[[[]]]]}}),
    ("PUT", "/v1/datasets/eng.wiki", {"content": b'{"owner": "group:eng", "owner": 1}'}),
    ("PATCH", "/v1/grants/1", {"json": {}}),
    ("GET", "/v1/nope", {}),
]  # fmt: skip


@pytest.mark.usefixtures("seeded")
async def test_nasty_requests_never_cause_a_server_error_or_a_change(
    client: httpx.AsyncClient, admin: dict[str, str]
):
    before = await dump(client, admin)
    failures = []
    for method, url, kwargs in NASTY:
        headers = {**admin, "content-type": "application/json"} if "content" in kwargs else admin
        r = await client.request(method, url, headers=headers, **kwargs)
        if not 400 <= r.status_code < 500 or r.headers["content-type"] != PROBLEM_JSON:
            failures.append(f"{method} {url[:80]}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert await dump(client, admin) == before
    # A huge token is just an unknown token.
    r = await client.get("/v1/groups", headers={"Authorization": "Bearer " + "x" * 100_000})
    assert r.status_code == 401
