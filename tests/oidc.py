"""People signed in by a development OpenID Connect issuer (`app.auth.oidc.dev_idp`: real keys,
real signatures, discovery and JWKS over HTTP on loopback); fixtures `idp` and `people` in
`tests/conftest.py`."""

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from app.auth.oidc.dev_idp import DevIssuer
from app.auth.scopes import Scope
from app.config import Settings
from app.main import create_app

AUDIENCE = "aclaudit-tests"


def group_of(scope: str) -> str:
    """The IdP group that grants `scope` in these tests."""
    return "g-" + scope.replace(":", "-")


SCOPE_MAP = {group_of(s.value): [s.value] for s in Scope}


def oidc_settings(database_url: str, issuer_url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        oidc_issuer=issuer_url,
        oidc_audience=AUDIENCE,
        oidc_scope_map=SCOPE_MAP,
        **overrides,
    )


class People:
    """Bearer headers for a person per scope (``user:<scope>``, in the scope's IdP group)."""

    def __init__(self, issuer: DevIssuer) -> None:
        self.issuer = issuer

    def token(self, username: str, groups: list[str] | None = None, **claims: Any) -> str:
        return self.issuer.token(username, audience=AUDIENCE, groups=groups, **claims)

    def headers(self, username: str, groups: list[str] | None = None, **claims: Any) -> dict:
        return {"Authorization": f"Bearer {self.token(username, groups, **claims)}"}

    def __getitem__(self, scope: str) -> dict[str, str]:
        return self.headers(scope.replace(":", "-"), [group_of(scope)])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def started(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app of the test's own settings (`async for app, client in started(...)`)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test") as c:
            yield application, c


class Clock:
    """The key cache's monotonic clock, moved by the test (`app.state.oidc.keys.clock`)."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def moved_clock(app: FastAPI) -> Clock:
    """Give the app's key cache a clock the test moves."""
    clock = Clock()
    app.state.oidc.keys.clock = clock
    return clock
