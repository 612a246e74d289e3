"""People signed in with the company's OpenID Connect provider: real keys and signatures from
a development issuer serving discovery and JWKS over HTTP on loopback."""

import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Iterator
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
from app.main import create_app
from tests.oidc import AUDIENCE, People, group_of, oidc_settings

PROBLEM_JSON = "application/problem+json"
GRANT = {"principal": "user:zed", "resource": "a.*", "action": "read", "effect": "allow"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A token assembled by hand: `sign(signing_input) -> bytes`, or no signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b64(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def own_idp() -> Iterator[DevIssuer]:
    """An issuer of this test's own (its keys rotate, it goes down)."""
    issuer = DevIssuer().start()
    yield issuer
    issuer.stop()


async def started(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test") as c:
            yield application, c


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


# -- keys: rotation, a flood of unknown kids, the IdP unreachable -----------------------------


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_refresh_seconds=0)
    people = People(own_idp)
    async for _, client in started(settings):
        reader = [group_of("audit:read")]
        r = await client.get("/v1/access-log", headers=people.headers("alice", reader))
        assert r.status_code == 200, r.text
        own_idp.rotate("ES256")
        r = await client.get("/v1/access-log", headers=people.headers("alice", reader))
        assert r.status_code == 200, r.text


async def test_a_flood_of_unknown_kids_fetches_the_keys_once(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_refresh_seconds=60)
    people = People(own_idp)
    async for app, client in started(settings):
        headers = people.headers("alice", [group_of("audit:read")])
        assert (await client.get("/v1/access-log", headers=headers)).status_code == 200
        served = own_idp.requests  # discovery and the key set
        assert served == 2
        stranger = DevKey("RS256")
        for n in range(50):
            stranger.kid = f"made-up-{n}"
            token = own_idp.token("alice", audience=AUDIENCE, key=stranger)
            assert_401(await client.get("/v1/access-log", headers=bearer(token)))
        assert own_idp.requests == served
        assert app.state.oidc.keys.fetches == 1


async def test_cached_keys_keep_working_while_the_idp_is_unreachable(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_refresh_seconds=0)
    people = People(own_idp)
    async for _, client in started(settings):
        reader = [group_of("audit:read")]
        assert (
            await client.get("/v1/access-log", headers=people.headers("alice", reader))
        ).status_code == 200
        own_idp.is_up = False
        # a token not seen before, signed with the cached key
        r = await client.get("/v1/access-log", headers=people.headers("bob", reader))
        assert r.status_code == 200, r.text
        # a key that cannot be fetched: unavailable, not refused
        stranger = DevKey("RS256")
        token = own_idp.token("carol", audience=AUDIENCE, groups=reader, key=stranger)
        r = await client.get("/v1/access-log", headers=bearer(token))
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == PROBLEM_JSON


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("how", ["refused connection", "503 answers"])
async def test_without_cached_keys_an_unreachable_idp_is_503_and_tokens_still_work(
    database_url: str, own_idp: DevIssuer, how: str
) -> None:
    people = People(own_idp)
    person = people.headers("alice", [group_of("audit:read")])
    if how == "503 answers":
        own_idp.is_up = False
        issuer = own_idp.url
    else:
        issuer = f"http://127.0.0.1:{unused_port()}"
    settings = oidc_settings(database_url, issuer, oidc_fetch_timeout_seconds=2)
    async for app, client in started(settings):
        async with app.state.sessionmaker() as session, session.begin():
            from app.auth import service as auth_service

            token = await auth_service.create_token(session, name="svc", scopes=["audit:read"])
        for _ in range(3):
            r = await client.get("/v1/access-log", headers=person)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == PROBLEM_JSON
            assert r.json()["status"] == 503 and r.headers["retry-after"]
        assert app.state.oidc.keys.fetches == 1  # rate-limited, unreachable or not
        r = await client.get("/v1/access-log", headers=bearer(token))
        assert r.status_code == 200, r.text


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
    for good in ("https://idp.example.com", "http://127.0.0.1:8123", "http://localhost:9000"):
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
