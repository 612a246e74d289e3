"""Bearer JWTs from the company's OpenID Connect provider, turned into a `Caller`.

A token is verified once (signature with the IdP's key, `iss`, `aud`, `exp`, `nbf`) and its
caller kept by the token's hash until it expires, or until the IdP no longer publishes the
key that verified it, so a person's next requests cost a dict lookup, like a static token's.
Verification needs no network I/O but the rate-limited key fetch of `app.auth.oidc.keys`.
"""

import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
from jwt.exceptions import ImmatureSignatureError, PyJWTError

from app.auth.oidc.keys import ASYMMETRIC_ALGORITHMS, IdpKeys, SigningKey, UnknownKey
from app.auth.service import Caller
from app.config import Settings
from app.errors import Unauthenticated
from app.identifiers import GROUP_NAME_RE, lower_ascii

MAX_VERIFIED = 10_000
REQUIRED_CLAIMS = ["exp", "iss", "aud"]
# `user:<id>` must fit the 128-character principal columns (access log caller, *_by).
MAX_PERSON_ID = 128 - len("user:")


class InvalidIdToken(Unauthenticated):
    """A token that can never become valid (remembered as refused)."""


class NotYetValid(Unauthenticated):
    """A token whose `nbf` (or `iat`) is still ahead: valid later, so not remembered."""


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (three dot-separated parts); static tokens have no dots."""
    return token.count(".") == 2


def scopes_for(groups: object, scope_map: dict[str, list[str]]) -> frozenset[str]:
    """The scopes the IdP's groups claim grants through ``ACLAUDIT_OIDC_SCOPE_MAP``."""
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list | tuple):
        return frozenset()
    names: Iterable[object] = groups
    return frozenset(s for g in names if isinstance(g, str) for s in scope_map.get(g, ()))


def person_of(claims: dict[str, Any], claim: str) -> str:
    """The person's principal `user:<id>` from `claim`, normalised as every principal is."""
    value = lower_ascii(claims.get(claim))
    if not isinstance(value, str) or not GROUP_NAME_RE.match(value):
        raise InvalidIdToken(
            f"the token's {claim!r} claim does not name a person this service can record "
            "(it must match [a-z0-9][a-z0-9._@+-]{0,122}, case aside)"
        )
    if len(value) > MAX_PERSON_ID:
        raise InvalidIdToken(
            f"the token's {claim!r} claim is {len(value)} characters long; this service records "
            f"a person by at most {MAX_PERSON_ID} (user:<id> in 128)"
        )
    return "user:" + value


class OidcAuthenticator:
    def __init__(
        self,
        settings: Settings,
        keys: IdpKeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.oidc_issuer is not None and settings.oidc_audience is not None
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self._settings = settings
        self._leeway = settings.oidc_leeway_seconds
        self._clock = clock
        self.keys = keys or IdpKeys(
            self.issuer,
            refresh_seconds=settings.oidc_jwks_refresh_seconds,
            max_age_seconds=settings.oidc_jwks_max_age_seconds,
            timeout_seconds=settings.oidc_fetch_timeout_seconds,
        )
        # token hash -> (caller, expiry, the kid and key that verified it)
        self._verified: dict[str, tuple[Caller, float, str | None, SigningKey]] = {}

    def cached(self, token_hash: str | None) -> Caller | None:
        """The caller of a token verified before, not expired yet and whose key the IdP still
        publishes (no work but lookups)."""
        found = None if token_hash is None else self._verified.get(token_hash)
        if found is None:
            return None
        caller, expires, kid, key = found
        if self._clock() >= expires or not self.keys.publishes(kid, key):
            del self._verified[token_hash]  # type: ignore[arg-type]
            return None
        return caller

    async def authenticate(self, token: str, token_hash: str | None) -> Caller:
        await self.keys.refresh_if_stale()  # a withdrawn key's tokens leave the cache
        caller = self.cached(token_hash)
        if caller is not None:
            return caller
        claims, kid, key = await self._verify(token)
        settings = self._settings
        caller = Caller(
            token_id=None,
            name=person_of(claims, settings.oidc_user_claim),
            scopes=scopes_for(claims.get(settings.oidc_groups_claim), settings.oidc_scope_map),
            issuer=self.issuer,
        )
        try:
            expires = float(claims["exp"]) + self._leeway
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidIdToken("the token's exp is not a time") from exc
        if token_hash is not None:
            self._remember(token_hash, (caller, expires, kid, key))
        return caller

    async def _verify(self, token: str) -> tuple[dict[str, Any], str | None, SigningKey]:
        """The token's claims, and the kid and key that verified them; every refusal (odd
        types in the header or claims included) an `Unauthenticated`."""
        try:
            header = jwt.get_unverified_header(token)
        except (PyJWTError, TypeError, ValueError) as exc:
            raise InvalidIdToken(f"the token is not a valid JWT: {exc}") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ASYMMETRIC_ALGORITHMS:
            named = repr(algorithm[:20]) if isinstance(algorithm, str) else "of another type"
            raise InvalidIdToken(
                f"the token's algorithm {named} is not accepted (asymmetric signatures only)"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidIdToken("the token's kid is not a string")
        key = await self.keys.key_for(kid)
        if algorithm not in key.algorithms:
            raise InvalidIdToken(f"the token's key does not sign with {algorithm}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except ImmatureSignatureError as exc:
            raise NotYetValid(f"the token is not valid yet: {exc}") from exc
        except (PyJWTError, TypeError, ValueError, OverflowError) as exc:
            # InvalidKeyError and odd claim types included: refused, never a 500
            raise InvalidIdToken(f"the token was refused: {exc}") from exc
        return claims, kid, key

    def _remember(
        self, token_hash: str, entry: tuple[Caller, float, str | None, SigningKey]
    ) -> None:
        if len(self._verified) >= MAX_VERIFIED:
            now = self._clock()
            self._verified = {h: v for h, v in self._verified.items() if v[1] > now}
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
        self._verified[token_hash] = entry


def is_permanent(error: Unauthenticated) -> bool:
    """A refusal that holds for the token forever (may be remembered by its hash)."""
    return not isinstance(error, NotYetValid | UnknownKey)
