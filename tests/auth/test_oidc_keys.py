"""The IdP's signing keys as aclaudit keeps them: rotation, a flood of unknown kids, keys the
IdP withdrew, their maximum age, the IdP unreachable, where the keys may come from."""

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.auth.oidc import IdpKeys, IdpUnavailable
from app.auth.oidc.dev_idp import DevIssuer, DevKey
from app.config import Settings
from tests.oidc import (
    AUDIENCE,
    People,
    bearer,
    group_of,
    moved_clock,
    oidc_settings,
    started,
)

PROBLEM_JSON = "application/problem+json"
READER = [group_of("audit:read")]


@pytest.fixture
def own_idp() -> Iterator[DevIssuer]:
    """An issuer of this test's own (its keys rotate, it goes down)."""
    issuer = DevIssuer().start()
    yield issuer
    issuer.stop()


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM_JSON


# -- rotation and a flood of unknown kids -----------------------------------------------------


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_refresh_seconds=5)
    people = People(own_idp)
    async for app, client in started(settings):
        clock = moved_clock(app)
        r = await client.get("/v1/access-log", headers=people.headers("alice", READER))
        assert r.status_code == 200, r.text
        own_idp.rotate("ES256")
        clock.advance(5)  # the rate limit allows the next fetch
        r = await client.get("/v1/access-log", headers=people.headers("alice", READER))
        assert r.status_code == 200, r.text


async def test_a_flood_of_unknown_kids_fetches_the_keys_once(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_refresh_seconds=60)
    people = People(own_idp)
    async for app, client in started(settings):
        headers = people.headers("alice", READER)
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


# -- a key the IdP withdrew, the keys' maximum age --------------------------------------------


async def test_a_key_the_idp_withdrew_stops_verifying_within_the_maximum_age(
    database_url: str,
) -> None:
    own = DevIssuer(algorithms=("RS256", "ES256")).start()
    try:
        settings = oidc_settings(database_url, own.url, oidc_jwks_max_age_seconds=600)
        people = People(own)
        async for app, client in started(settings):
            clock = moved_clock(app)
            leaked, kept = own.keys
            alice = people.headers("alice", READER)  # signed with the key that will leak
            assert (await client.get("/v1/access-log", headers=alice)).status_code == 200
            own.keys = [kept]  # the RS256 key leaked: the IdP withdraws it from its JWKS
            clock.advance(599)
            assert (await client.get("/v1/access-log", headers=alice)).status_code == 200
            clock.advance(1)  # the cached keys reach their maximum age
            forged = own.token("mallory", audience=AUDIENCE, groups=[group_of("admin")], key=leaked)
            assert_401(await client.get("/v1/access-log", headers=bearer(forged)))
            # a token verified with it before is no longer trusted from the cache either
            assert_401(await client.get("/v1/access-log", headers=alice))
            bob = own.token("bob", audience=AUDIENCE, groups=READER, key=kept)
            assert (await client.get("/v1/access-log", headers=bearer(bob))).status_code == 200
            assert app.state.oidc.keys.fetches == 2
    finally:
        own.stop()


@pytest.mark.parametrize(
    ("cache_control", "max_age"),
    [("public, max-age=60", 60), ("max-age=86400", 600), ("no-cache", 600), ("max-age=0", 30)],
)
async def test_the_keys_are_fetched_again_at_their_maximum_age(
    database_url: str, own_idp: DevIssuer, cache_control: str, max_age: float
) -> None:
    """Cache-Control max-age shortens the maximum age (ACLAUDIT_OIDC_JWKS_MAX_AGE_SECONDS), to
    no less than the refresh limit (30 s); one beyond it does not lengthen it."""
    own_idp.cache_control = cache_control
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_max_age_seconds=600)
    people = People(own_idp)
    async for app, client in started(settings):
        clock = moved_clock(app)
        headers = people.headers("alice", READER)
        keys = app.state.oidc.keys
        assert (await client.get("/v1/access-log", headers=headers)).status_code == 200
        clock.advance(max_age - 1)
        assert (await client.get("/v1/access-log", headers=headers)).status_code == 200
        assert keys.fetches == 1
        clock.advance(1)
        assert (await client.get("/v1/access-log", headers=headers)).status_code == 200
        assert keys.fetches == 2
        assert (await client.get("/v1/access-log", headers=headers)).status_code == 200
        assert keys.fetches == 2


async def test_keys_past_their_maximum_age_keep_working_while_the_idp_is_down(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url, oidc_jwks_refresh_seconds=30)
    people = People(own_idp)
    async for app, client in started(settings):
        clock = moved_clock(app)
        keys = app.state.oidc.keys
        alice = people.headers("alice", READER)
        assert (await client.get("/v1/access-log", headers=alice)).status_code == 200
        own_idp.is_up = False
        clock.advance(600)
        for who in ("alice", "bob", "carol"):  # cached, and new tokens of the cached key
            r = await client.get("/v1/access-log", headers=people.headers(who, READER))
            assert r.status_code == 200, r.text
        assert keys.fetches == 2  # tried once, then rate-limited
        clock.advance(30)
        r = await client.get("/v1/access-log", headers=alice)
        assert r.status_code == 200, r.text
        assert keys.fetches == 3
        own_idp.is_up = True
        own_idp.rotate()  # back, without alice's key
        clock.advance(30)
        assert_401(await client.get("/v1/access-log", headers=alice))


# -- the IdP unreachable ----------------------------------------------------------------------


async def test_cached_keys_keep_working_while_the_idp_is_unreachable(
    database_url: str, own_idp: DevIssuer
) -> None:
    settings = oidc_settings(database_url, own_idp.url)
    people = People(own_idp)
    async for app, client in started(settings):
        clock = moved_clock(app)
        r = await client.get("/v1/access-log", headers=people.headers("alice", READER))
        assert r.status_code == 200
        own_idp.is_up = False
        clock.advance(30)
        # a token not seen before, signed with the cached key
        r = await client.get("/v1/access-log", headers=people.headers("bob", READER))
        assert r.status_code == 200, r.text
        # a key that cannot be fetched: unavailable, not refused
        stranger = DevKey("RS256")
        token = own_idp.token("carol", audience=AUDIENCE, groups=READER, key=stranger)
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
    person = people.headers("alice", READER)
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


# -- where the keys may come from -------------------------------------------------------------


def idp_at(issuer: str, jwks_uri: str, key: DevKey) -> httpx.MockTransport:
    """An IdP on the internet: its discovery document and JWKS (httpx's own mock transport)."""

    def answer(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == issuer.rstrip("/") + "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": issuer, "jwks_uri": jwks_uri})
        if url == jwks_uri:
            return httpx.Response(200, json={"keys": [key.public_jwk()]})
        return httpx.Response(404)

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("issuer", "jwks_uri", "usable"),
    [
        ("https://idp.example.com", "https://keys.idp.example.com/jwks", True),
        ("https://idp.example.com", "http://keys.idp.example.com/jwks", False),
        ("https://idp.example.com", "http://127.0.0.1:8900/jwks", False),
        ("https://tenant.auth0.com/", "https://tenant.auth0.com/.well-known/jwks.json", True),
    ],
    ids=["https", "http", "http-loopback", "auth0-trailing-slash"],
)
async def test_an_https_issuer_s_keys_come_over_https_only(
    issuer: str, jwks_uri: str, usable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    key = DevKey("ES256")
    keys = IdpKeys(
        issuer,
        refresh_seconds=30,
        max_age_seconds=600,
        timeout_seconds=2,
        transport=idp_at(issuer, jwks_uri, key),
    )
    if usable:
        assert (await keys.key_for(key.kid)).algorithms == {"ES256"}
    else:
        with pytest.raises(IdpUnavailable):
            await keys.key_for(key.kid)
        assert "jwks_uri" in caplog.text and "not https" in caplog.text


def test_key_refresh_settings_are_bounded() -> None:
    base: dict[str, Any] = {"oidc_issuer": "https://idp.example.com", "oidc_audience": "a"}
    assert Settings(**base).oidc_jwks_refresh_seconds == 30
    assert Settings(**base).oidc_jwks_max_age_seconds == 600
    for bad in ({"oidc_jwks_refresh_seconds": 4.9}, {"oidc_jwks_max_age_seconds": 0}):
        with pytest.raises(ValidationError, match="greater than or equal to 5"):
            Settings(**base, **bad)
