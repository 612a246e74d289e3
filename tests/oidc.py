"""People signed in by a development OpenID Connect issuer (`app.auth.oidc.dev_idp`: real keys,
real signatures, discovery and JWKS over HTTP on loopback); fixtures `idp` and `people` in
`tests/conftest.py`."""

from typing import Any

from app.auth.oidc.dev_idp import DevIssuer
from app.auth.scopes import Scope
from app.config import Settings

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
