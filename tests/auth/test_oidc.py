"""People signed in with the company's OpenID Connect provider: real keys and signatures from
a development issuer serving discovery and JWKS over HTTP on loopback."""

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from typer.testing import CliRunner

from app.auth.oidc.dev_idp import DevIssuer, DevKey
from app.cli import cli
from app.config import Settings
from tests.oidc import AUDIENCE, People, bearer, claims_of, group_of, oidc_settings, started

PROBLEM_JSON = "application/problem+json"
GRANT = {"principal": "user:zed", "resource": "a.*", "action": "read", "effect": "allow"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A token assembled by hand: `sign(signing_input) -> bytes`, or no signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b64(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


@pytest.fixture
def settings(database_url: str, idp: DevIssuer) -> Settings:
    return oidc_settings(database_url, idp.url)


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["status"] == 401 and r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


# -- each kind of token gets the right answer ------------------------------------------------


async def test_a_valid_rs256_or_es256_token_signs_a_person_in(
    client: httpx.AsyncClient, idp: DevIssuer, people: People
) -> None:
    for key in idp.keys:  # RS256, ES256
        token = idp.token("Alice", audience=AUDIENCE, groups=[group_of("audit:read")], key=key)
        r = await client.get("/v1/access-log", headers=bearer(token))
        assert r.status_code == 200, (key.algorithm, r.text)
        again = await client.get("/v1/access-log", headers=bearer(token))  # from the cache
        assert again.status_code == 200


def bad_tokens(idp: DevIssuer) -> dict[str, str]:
    """Every token that must be refused with 401, each claiming the admin group."""
    admin = [group_of("admin")]
    rsa = idp.keys[0]
    valid = idp.token("mallory", audience=AUDIENCE, groups=admin)
    header, payload, signature = valid.split(".")
    tampered_claims = {**claims_of(valid), "preferred_username": "alice"}
    public_pem = rsa.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unpublished = DevKey("RS256", kid=rsa.kid + "-unpublished")
    return {
        "expired": idp.token("mallory", audience=AUDIENCE, groups=admin, lifetime=-300),
        "not yet valid": idp.token(
            "mallory", audience=AUDIENCE, groups=admin, nbf=claims_of(valid)["iat"] + 600
        ),
        "wrong issuer": idp.token(
            "mallory", audience=AUDIENCE, groups=admin, iss="https://evil.example"
        ),
        "wrong audience": idp.token("mallory", audience="another-app", groups=admin),
        "no audience": jwt.encode(
            {k: v for k, v in claims_of(valid).items() if k != "aud"},
            rsa.private,
            algorithm="RS256",
            headers={"kid": rsa.kid},
        ),
        "no expiry": jwt.encode(
            {k: v for k, v in claims_of(valid).items() if k != "exp"},
            rsa.private,
            algorithm="RS256",
            headers={"kid": rsa.kid},
        ),
        "unknown kid": idp.token("mallory", audience=AUDIENCE, groups=admin, key=unpublished),
        "unpublished key under a published kid": jwt.encode(
            claims_of(valid), unpublished.private, algorithm="RS256", headers={"kid": rsa.kid}
        ),
        "alg none": forge({"alg": "none", "kid": rsa.kid}, claims_of(valid)),
        "alg None, signed": forge(
            {"alg": "None", "kid": rsa.kid}, claims_of(valid), lambda m: b"x"
        ),
        "HS256 with the public key": forge(
            {"alg": "HS256", "kid": rsa.kid},
            claims_of(valid),
            lambda m: hmac.new(public_pem, m, hashlib.sha256).digest(),
        ),
        "RS256 header on an ES256 key": forge(
            {"alg": "RS256", "kid": idp.keys[1].kid}, claims_of(valid), lambda m: b"sig"
        ),
        "tampered payload": f"{header}.{b64(json.dumps(tampered_claims).encode())}.{signature}",
        "no signature": f"{header}.{payload}.",
        "garbage": "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        "unmappable username": idp.token("Alice Smith", audience=AUDIENCE, groups=admin),
        "no username": idp.token("x", audience=AUDIENCE, groups=admin, preferred_username=None),
    }


async def test_every_bad_token_is_refused_401_and_reaches_no_handler(
    client: httpx.AsyncClient, idp: DevIssuer, admin: dict[str, str]
) -> None:
    for what, token in bad_tokens(idp).items():
        for method, path, body in (
            ("POST", "/v1/grants", GRANT),
            ("GET", "/v1/access-log", None),
            ("GET", "/v1/me/reads", None),
            ("POST", "/v1/check", {"principal": "user:a", "dataset": "a.b", "action": "read"}),
        ):
            r = await client.request(method, path, json=body, headers=bearer(token))
            assert r.status_code == 401, (what, path, r.text)
            assert_401(r)
    # nothing was granted, nothing checked, nothing but refusals in the trail
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []
    assert (await client.get("/v1/access-log", headers=admin)).json()["items"] == []
    trail = (await client.get("/v1/admin/trail", headers=admin)).json()["items"]
    assert all(e["token_name"] in (None, "admin") for e in trail), trail


async def test_a_token_valid_within_the_leeway_is_accepted(
    client: httpx.AsyncClient, people: People
) -> None:
    # expired 5 s ago, valid from 5 s ahead: clock skew (leeway 30 s)
    token = people.token("alice", [group_of("audit:read")], lifetime=-5)
    assert (await client.get("/v1/access-log", headers=bearer(token))).status_code == 200
    claims = {"nbf": claims_of(token)["iat"] + 10}
    token = people.token("bob", [group_of("audit:read")], **claims)
    assert (await client.get("/v1/access-log", headers=bearer(token))).status_code == 200


async def test_the_username_claim_is_normalised_to_the_principal(
    client: httpx.AsyncClient, people: People, admin: dict[str, str]
) -> None:
    writer = people.headers("Alice.Smith@Example.com", [group_of("policy:write")])
    r = await client.post("/v1/grants", json=GRANT, headers=writer)
    assert r.status_code == 201, r.text
    [entry] = (await client.get("/v1/admin/trail?limit=1", headers=admin)).json()["items"]
    assert entry["token_name"] == "user:alice.smith@example.com"


async def test_a_person_in_no_mapped_group_gets_nothing_but_their_own_data(
    app: FastAPI, client: httpx.AsyncClient, people: People
) -> None:
    nobody = people.headers("nobody", [])
    opened = []
    swept = 0
    for path, operations in app.openapi()["paths"].items():
        for method in (m.upper() for m in operations):
            url = path.replace("{", "x").replace("}", "")
            body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
            r = await client.request(method, url, headers=nobody, json=body)
            swept += 1
            if r.status_code != 403 and not path.startswith(("/v1/me/", "/healthz", "/readyz")):
                opened.append((method, path, r.status_code))
    assert swept > 50
    assert opened == []


# -- issuers named with a trailing "/" (Auth0) -------------------------------------------------


async def test_an_issuer_ending_in_a_slash_signs_people_in(database_url: str) -> None:
    own = DevIssuer(trailing_slash=True).start()
    try:
        assert own.issuer == own.url + "/"
        people = People(own)
        reader = people.headers("alice", [group_of("audit:read")])
        async for _, client in started(oidc_settings(database_url, own.issuer)):
            r = await client.get("/v1/access-log", headers=reader)
            assert r.status_code == 200, r.text
            # iss is compared exactly: the same issuer without its "/" is another
            token = people.token("mallory", [group_of("admin")], iss=own.url)
            assert_401(await client.get("/v1/access-log", headers=bearer(token)))
        # configured without the "/" its discovery document names another issuer: a 503, the
        # log saying why (never a sign-in of tokens whose iss is not the configured issuer)
        async for _, client in started(oidc_settings(database_url, own.url)):
            r = await client.get("/v1/access-log", headers=reader)
            assert r.status_code == 503, r.text
    finally:
        own.stop()


# -- usernames as long as a principal may be ---------------------------------------------------

LONGEST = "a" * 123  # user:<123 characters> is 128, the principal columns' width


async def test_a_person_named_beyond_the_principal_width_is_refused_and_others_go_on(
    client: httpx.AsyncClient, people: People, tokens: Any
) -> None:
    checker = tokens["check"]
    for name in (LONGEST + "b", "b" * 128):
        too_long = people.headers(name, [group_of("policy:write"), group_of("check")])
        r = await client.post("/v1/grants", json=GRANT, headers=too_long)
        assert_401(r)
        assert "'preferred_username'" in r.json()["detail"], r.text
        batch = {"checks": [{"principal": "user:a", "dataset": "a.b", "action": "read"}] * 5}
        answers = await asyncio.gather(
            *[client.post("/v1/check/batch", json=batch, headers=too_long) for _ in range(3)],
            *[client.post("/v1/check/batch", json=batch, headers=checker) for _ in range(20)],
        )
        assert [r.status_code for r in answers] == [401] * 3 + [200] * 20


async def test_a_person_named_as_long_as_a_principal_may_be_grants_and_checks(
    client: httpx.AsyncClient, people: People, admin: dict[str, str]
) -> None:
    person = people.headers(LONGEST, [group_of("policy:write"), group_of("check")])
    r = await client.post("/v1/grants", json=GRANT, headers=person)
    assert r.status_code == 201, r.text
    check = {"principal": "user:zed", "dataset": "a.b", "action": "read"}
    r = await client.post("/v1/check", json=check, headers=person)
    assert r.status_code == 200, r.text
    [entry] = (await client.get("/v1/access-log?limit=1", headers=admin)).json()["items"]
    assert entry["caller"] == "user:" + LONGEST
    trail = (await client.get("/v1/admin/trail", headers=admin)).json()["items"]
    [change] = [e for e in trail if e["path"] == "/v1/grants"]
    assert change["token_name"] == "user:" + LONGEST


# -- the admin trail and the documentation ----------------------------------------------------


async def test_the_trail_names_the_person_and_the_issuer_for_every_mutation(
    client: httpx.AsyncClient, idp: DevIssuer, people: People, admin: dict[str, str]
) -> None:
    r = await client.post("/v1/grants", json={**GRANT, "principal": "user:yan"}, headers=admin)
    assert r.status_code == 201, r.text
    writer = people.headers("alice", [group_of("policy:write")])
    mutations = [
        ("POST", "/v1/grants", GRANT),
        ("PUT", "/v1/groups/eng/members", {"members": ["user:bob"]}),
        ("PUT", "/v1/datasets/a.b", {"owner": "group:eng", "sensitivity": "internal"}),
        ("POST", "/v1/scan", None),
    ]
    for method, path, body in mutations:
        r = await client.request(method, path, json=body, headers=writer)
        assert r.status_code < 300, r.text
    trail = (await client.get("/v1/admin/trail?limit=10", headers=admin)).json()["items"]
    mine = [e for e in trail if e["token_name"] == "user:alice"]
    assert [(e["method"], e["path"]) for e in reversed(mine)] == [(m, p) for m, p, _ in mutations]
    assert {e["issuer"] for e in mine} == {idp.url}
    assert {e["issuer"] for e in trail if e["token_name"] == "admin"} == {None}
    verified = (await client.get("/v1/access-log/verify", headers=admin)).json()
    assert verified["ok"] is True, verified  # the issuer is in the trail's hash chain


async def test_docs_offer_openid_connect_sign_in(
    client: httpx.AsyncClient, idp: DevIssuer, admin: dict[str, str]
) -> None:
    document = (await client.get("/openapi.json", headers=admin)).json()
    scheme = document["components"]["securitySchemes"]["OpenIdConnect"]
    assert scheme == {
        "type": "openIdConnect",
        "openIdConnectUrl": idp.url + "/.well-known/openid-configuration",
        "description": scheme["description"],
    }
    operation = document["paths"]["/v1/grants"]["get"]
    assert {"OpenIdConnect": []} in operation["security"]
    page = await client.get("/docs", headers=admin)
    assert AUDIENCE in page.text  # Swagger UI's client id for the sign-in


def test_the_issuer_must_be_https_except_on_loopback() -> None:
    for good in (
        "https://idp.example.com",
        "https://tenant.auth0.com/",  # kept exactly: the tokens' iss ends in "/"
        "http://127.0.0.1:8123",
        "http://localhost:9000",
    ):
        assert Settings(oidc_issuer=good, oidc_audience="a").oidc_issuer == good
    for bad in ("http://idp.example.com", "http://127.0.0.1.evil.com", "ftp://x", "idp"):
        with pytest.raises(ValueError, match="https"):
            Settings(oidc_issuer=bad, oidc_audience="a")
    with pytest.raises(ValueError, match="AUDIENCE"):
        Settings(oidc_issuer="https://idp.example.com")
    with pytest.raises(ValueError, match="unknown scopes"):
        Settings(
            oidc_issuer="https://idp.example.com", oidc_audience="a", oidc_scope_map={"g": ["root"]}
        )


def test_dev_idp_serves_on_loopback_only() -> None:
    result = CliRunner().invoke(cli, ["dev-idp", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback only" in result.output
