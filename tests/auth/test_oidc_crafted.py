"""Crafted tokens (headers and claims of odd types, keys used against their curve, header
tricks, malformed compact JWS): each is a 401 problem, never a 500 and never a sign-in."""

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from app.auth.oidc.dev_idp import DevIssuer, DevKey
from app.auth.oidc.keys import parse_key_set
from app.config import Settings
from tests.oidc import AUDIENCE, People, bearer, claims_of, group_of, oidc_settings, started

PROBLEM_JSON = "application/problem+json"
ADMIN = [group_of("admin")]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_header(token: str, header: dict[str, Any]) -> str:
    """The token with another header (its signature no longer matches, if it is checked)."""
    _, payload, signature = token.split(".")
    return f"{b64(json.dumps(header).encode())}.{payload}.{signature}"


@pytest.fixture
def settings(database_url: str, idp: DevIssuer) -> Settings:
    return oidc_settings(database_url, idp.url)


def signed(idp: DevIssuer, payload: dict[str, Any]) -> str:
    """A token with exactly these claims, signed with the IdP's key (pyjwt's JWT encoder
    would refuse some of them)."""
    key = idp.keys[0]
    body = json.dumps(payload).encode()
    return jwt.api_jws.encode(body, key.private, algorithm="RS256", headers={"kid": key.kid})


def assert_401(r: httpx.Response, what: object = None) -> None:
    assert r.status_code == 401, (what, r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    "header",
    [
        {"alg": ["RS256"]},
        {"alg": {"a": 1}},
        {"alg": 256},
        {"alg": "RS256", "crit": ["exp"]},
        {"alg": "RS256", "kid": 7},
        {"alg": "RS256", "kid": ["k"]},
        {"alg": "RS256", "jku": "http://127.0.0.1:1/jwks", "kid": "attacker"},
        {"alg": "EdDSA"},
    ],
    ids=["alg-list", "alg-object", "alg-int", "crit", "kid-int", "kid-list", "jku", "eddsa"],
)
async def test_odd_or_tricky_headers_are_401(
    client: httpx.AsyncClient, people: People, idp: DevIssuer, header: dict[str, Any]
) -> None:
    token = people.token("mallory", ADMIN)
    forged = with_header(token, {"kid": idp.keys[0].kid, **header})
    assert_401(await client.get("/v1/access-log", headers=bearer(forged)))


async def test_claims_of_odd_types_are_401(
    client: httpx.AsyncClient, people: People, idp: DevIssuer
) -> None:
    odd: list[dict[str, Any]] = [
        {"iss": [idp.issuer]},
        {"iss": {"url": idp.issuer}},
        {"iss": idp.url[:-1]},  # a prefix
        {"iss": ""},
        {"aud": {"aud": AUDIENCE}},
        {"aud": [AUDIENCE + "x"]},
        {"aud": AUDIENCE[:-1]},
        {"aud": ""},
        {"exp": "tomorrow"},
        {"exp": [9999999999]},
        {"exp": 10**400},  # never expires, and no float either
        {"nbf": {"n": 1}},
        {"iat": "now"},
        {"preferred_username": ["alice"]},
        {"preferred_username": {"n": "alice"}},
        {"preferred_username": 42},
    ]
    valid = claims_of(people.token("m", ADMIN))
    for claims in odd:
        token = signed(idp, {**valid, **claims})
        assert_401(await client.get("/v1/access-log", headers=bearer(token)), claims)
    r = await client.get("/v1/access-log", headers=bearer(signed(idp, valid)))
    assert r.status_code == 200, r.text  # the same claims, of the right types


async def test_a_groups_claim_of_an_odd_type_grants_nothing(
    client: httpx.AsyncClient, idp: DevIssuer
) -> None:
    claims = claims_of(idp.token("odd", audience=AUDIENCE))
    for groups in ({group_of("admin"): True}, 7, [[group_of("admin")]], [{"g": group_of("admin")}]):
        token = signed(idp, {**claims, "groups": groups})
        r = await client.get("/v1/access-log", headers=bearer(token))
        assert r.status_code == 403, (groups, r.text)


async def test_an_embedded_jwk_header_is_not_trusted(
    client: httpx.AsyncClient, idp: DevIssuer
) -> None:
    mine = DevKey("RS256", kid="mine")
    claims = claims_of(idp.token("mallory", audience=AUDIENCE, groups=ADMIN))
    token = jwt.encode(
        claims,
        mine.private,
        algorithm="RS256",
        headers={"kid": idp.keys[0].kid, "jwk": mine.public_jwk()},
    )
    assert_401(await client.get("/v1/access-log", headers=bearer(token)))


@pytest.fixture
def unlabelled_ec_idp() -> Iterator[DevIssuer]:
    """An IdP publishing its P-256 key without "alg" (as Entra ID does)."""
    issuer = DevIssuer(algorithms=("ES256",))
    issuer.keys[0].publish_alg = False
    yield issuer.start()
    issuer.stop()


@pytest.mark.parametrize("alg", ["ES384", "ES512"])
async def test_an_unlabelled_ec_key_verifies_only_its_curve_s_algorithm(
    database_url: str, unlabelled_ec_idp: DevIssuer, alg: str
) -> None:
    people = People(unlabelled_ec_idp)
    async for _, client in started(oidc_settings(database_url, unlabelled_ec_idp.url)):
        reader = people.headers("alice", [group_of("audit:read")])
        assert (await client.get("/v1/access-log", headers=reader)).status_code == 200
        token = people.token("mallory", ADMIN)
        forged = with_header(token, {"alg": alg, "kid": unlabelled_ec_idp.keys[0].kid})
        assert_401(await client.get("/v1/access-log", headers=bearer(forged)))


def ec_jwk(curve: ec.EllipticCurve, **labels: Any) -> dict[str, Any]:
    public = ec.generate_private_key(curve).public_key()
    return {**ECAlgorithm.to_jwk(public, as_dict=True), **labels}


def test_an_ec_key_is_tied_to_its_curve() -> None:
    keys = parse_key_set(
        {
            "keys": [
                ec_jwk(ec.SECP256R1(), kid="p256"),
                ec_jwk(ec.SECP384R1(), kid="p384"),
                ec_jwk(ec.SECP521R1(), kid="p521"),
                ec_jwk(ec.SECP384R1(), kid="p384-as-es256", alg="ES256"),
                ec_jwk(ec.SECP256K1(), kid="k256"),
                ec_jwk(ec.SECP256R1(), kid="alg-list", alg=["ES256"]),
            ]
        }
    )
    assert {kid: set(k.algorithms) for kid, k in keys.items()} == {
        "p256": {"ES256"},
        "p384": {"ES384"},
        "p521": {"ES512"},
    }


@pytest.mark.parametrize(
    "token",
    [
        "..",
        "a..b",
        "e30.e30.",
        "bnVsbA.e30.AA",
        "W10.e30.AA",
        "eyJhbGciOiJSUzI1NiJ9.bnVsbA.AA",
        "eyJhbGciOiJSUzI1NiIsImtpZCI6W119.e30.AA",
        "\u00e9.\u00e9.\u00e9",
        "eyJhbGciOiJSUzI1NiIsImI2NCI6ZmFsc2UsImNyaXQiOlsiYjY0Il19.e30.AA",
    ],
)
async def test_malformed_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    headers = [(b"authorization", f"Bearer {token}".encode("latin-1"))]
    assert_401(await client.get("/v1/access-log", headers=headers))
