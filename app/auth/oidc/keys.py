"""The IdP's signing keys: its discovery document's `jwks_uri`, fetched with httpx and cached.

A token naming a key not in the cache makes the cache fetch the key set again, at most once
per ``ACLAUDIT_OIDC_JWKS_REFRESH_SECONDS`` (whatever the outcome, and however many requests
ask at once: they share one fetch), so a flood of tokens with made-up key ids costs the IdP
nothing. When the IdP cannot be reached the cached keys go on verifying tokens; a key that
cannot be had at all is `IdpUnavailable` (503), never a 401 for a token that may be valid.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from app.config import is_allowed_issuer_url
from app.errors import ServiceUnavailable, Unauthenticated

logger = logging.getLogger("aclaudit.oidc")

# Asymmetric signature algorithms only, by the key type that can verify them: no `none`, no
# HMAC (whose "key" would be the IdP's public key: the RS/HS confusion attack).
ALGORITHMS_BY_KEY_TYPE: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
ASYMMETRIC_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KEY_TYPE.values())
MAX_KEYS = 64
MAX_DOCUMENT_BYTES = 256 * 1024


class IdpUnavailable(ServiceUnavailable):
    slug = "idp-unavailable"
    title = "Identity provider unavailable"


class UnknownKey(Unauthenticated):
    """The token names a key the IdP does not publish (not yet, perhaps: not remembered as a
    refusal)."""


class SigningKey:
    """One of the IdP's public keys and the algorithms it may verify."""

    def __init__(self, jwk: PyJWK, algorithms: frozenset[str]) -> None:
        self.jwk = jwk
        self.algorithms = algorithms


def parse_key_set(document: object) -> dict[str | None, SigningKey]:
    """The usable signature keys of a JWKS document, by `kid` (symmetric keys, encryption keys
    and keys this service cannot use are left out)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS document has no `keys` list")
    keys: dict[str | None, SigningKey] = {}
    for data in document["keys"][:MAX_KEYS]:
        if not isinstance(data, dict):
            continue
        family = ALGORITHMS_BY_KEY_TYPE.get(str(data.get("kty")))
        if family is None or data.get("use", "sig") != "sig":
            continue
        declared = data.get("alg")
        if declared is not None and declared not in family:
            continue
        try:
            jwk = PyJWK(data)
        except (PyJWKError, ValueError, TypeError) as exc:
            logger.warning("skipping an IdP key that cannot be used: %s", exc)
            continue
        kid = data.get("kid")
        keys[kid if isinstance(kid, str) else None] = SigningKey(
            jwk, frozenset({declared}) if declared else family
        )
    return keys


class IdpKeys:
    """The cached key set of one issuer."""

    def __init__(
        self,
        issuer: str,
        *,
        refresh_seconds: float,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._refresh_seconds = refresh_seconds
        self._timeout = httpx.Timeout(timeout_seconds)
        self._transport = transport
        self._clock = clock
        self._keys: dict[str | None, SigningKey] = {}
        self._jwks_uri: str | None = None
        self._last_attempt: float | None = None
        self._is_reachable = True
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts to fetch the key set (tests and metrics)

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    async def key_for(self, kid: str | None) -> SigningKey:
        key = self._find(kid)
        if key is not None:
            return key
        await self._refresh()
        key = self._find(kid)
        if key is not None:
            return key
        if not self._is_reachable:
            raise IdpUnavailable(
                "the identity provider's keys cannot be fetched and the token's key is not "
                "cached; retry shortly (static tokens keep working)"
            )
        raise UnknownKey("the token is signed with a key the identity provider does not publish")

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is None:  # allowed only while the IdP publishes a single key
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:  # concurrent askers share one fetch
            now = self._clock()
            if self._last_attempt is not None and now - self._last_attempt < self._refresh_seconds:
                return
            self._last_attempt = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                self._is_reachable = False
                logger.warning("could not fetch the identity provider's keys: %s", exc)
                return
            self._keys = keys
            self._is_reachable = True

    async def _fetch(self) -> dict[str | None, SigningKey]:
        async with httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, follow_redirects=False
        ) as client:
            if self._jwks_uri is None:
                discovery = await _get_json(client, self.discovery_url)
                if not isinstance(discovery, dict):
                    raise ValueError("the discovery document is not a JSON object")
                if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:
                    raise ValueError("the discovery document names another issuer")
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str) or not is_allowed_issuer_url(jwks_uri):
                    raise ValueError("the discovery document's jwks_uri is missing or not https")
                self._jwks_uri = jwks_uri
            return parse_key_set(await _get_json(client, self._jwks_uri))


async def _get_json(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return response.json()
