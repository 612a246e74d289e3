"""The IdP's signing keys: its discovery document's `jwks_uri`, fetched with httpx and cached.

The cached key set is trusted for ``ACLAUDIT_OIDC_JWKS_MAX_AGE_SECONDS`` (less if the JWKS
answer's ``Cache-Control: max-age`` says so); then it is fetched again before it verifies
anything, so a key the IdP withdrew (leaked, rotated out) stops verifying within that time.
A token naming a key not in the cache makes the cache fetch the key set again too. Either
fetch happens at most once per ``ACLAUDIT_OIDC_JWKS_REFRESH_SECONDS`` (whatever the outcome,
and however many requests ask at once: they share one fetch), so a flood of tokens with
made-up key ids costs the IdP nothing. When the IdP cannot be reached the cached keys go on
verifying tokens (an IdP outage locks nobody out); a key that cannot be had at all is
`IdpUnavailable` (503), never a 401 for a token that may be valid.
"""

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

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
# An EC key verifies the one algorithm of its curve (a P-256 key claimed for ES384 would make
# pyjwt raise rather than refuse).
EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
MAX_AGE_RE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
MAX_KEYS = 64
MAX_DOCUMENT_BYTES = 256 * 1024


class IdpUnavailable(ServiceUnavailable):
    slug = "idp-unavailable"
    title = "Identity provider unavailable"


class UnknownKey(Unauthenticated):
    """The token names a key the IdP does not publish (not yet, perhaps: not remembered as a
    refusal)."""


class SigningKey:
    """One of the IdP's public keys and the algorithms it may verify; `fingerprint` is its
    published JWK (the same key published again has the same)."""

    def __init__(self, jwk: PyJWK, algorithms: frozenset[str], fingerprint: str = "") -> None:
        self.jwk = jwk
        self.algorithms = algorithms
        self.fingerprint = fingerprint


def algorithms_of(data: dict[Any, Any]) -> frozenset[str] | None:
    """The algorithms a JWK may verify, or None if this service cannot use it."""
    kty = data.get("kty")
    family = ALGORITHMS_BY_KEY_TYPE.get(kty) if isinstance(kty, str) else None
    if family is None or data.get("use", "sig") != "sig":
        return None
    if kty == "EC":
        curve = data.get("crv")
        algorithm = EC_ALGORITHM_BY_CURVE.get(curve) if isinstance(curve, str) else None
        if algorithm is None:
            return None
        family = frozenset({algorithm})
    declared = data.get("alg")
    if declared is None:
        return family
    if not isinstance(declared, str) or declared not in family:
        return None
    return frozenset({declared})


def parse_key_set(document: object) -> dict[str | None, SigningKey]:
    """The usable signature keys of a JWKS document, by `kid` (symmetric keys, encryption keys
    and keys this service cannot use are left out)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS document has no `keys` list")
    keys: dict[str | None, SigningKey] = {}
    for data in document["keys"][:MAX_KEYS]:
        if not isinstance(data, dict):
            continue
        algorithms = algorithms_of(data)
        if algorithms is None:
            continue
        try:
            jwk = PyJWK(data)
        except (PyJWKError, ValueError, TypeError) as exc:
            logger.warning("skipping an IdP key that cannot be used: %s", exc)
            continue
        kid = data.get("kid")
        fingerprint = json.dumps(data, sort_keys=True, default=str)
        keys[kid if isinstance(kid, str) else None] = SigningKey(jwk, algorithms, fingerprint)
    return keys


def max_age_of(cache_control: str | None) -> float | None:
    """The seconds a `Cache-Control` header's `max-age` lets the answer be kept (None: it does
    not say; `no-cache`, as Keycloak sends, says nothing this cache can use: the key set is
    fetched at most every ``ACLAUDIT_OIDC_JWKS_REFRESH_SECONDS`` whatever it says)."""
    found = MAX_AGE_RE.search(cache_control or "")
    return float(found.group(1)) if found else None


class IdpKeys:
    """The cached key set of one issuer."""

    def __init__(
        self,
        issuer: str,
        *,
        refresh_seconds: float,
        max_age_seconds: float,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.clock = clock  # monotonic seconds (tests move it)
        self._refresh_seconds = refresh_seconds
        self._max_age_seconds = max_age_seconds
        self._timeout = httpx.Timeout(timeout_seconds)
        self._transport = transport
        self._keys: dict[str | None, SigningKey] = {}
        self._jwks_uri: str | None = None
        self._last_attempt: float | None = None
        self._fresh_until: float | None = None  # past it, the keys are fetched before use
        self._is_reachable = True
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts to fetch the key set (tests and metrics)

    @property
    def discovery_url(self) -> str:
        # OpenID Connect Discovery 1.0 section 4: the issuer without its trailing "/"
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def is_stale(self) -> bool:
        return self._fresh_until is not None and self.clock() >= self._fresh_until

    async def refresh_if_stale(self) -> None:
        """Fetch the key set again if it is older than its maximum age (rate-limited; on
        failure the old keys stay)."""
        if self.is_stale():
            await self._refresh()

    def publishes(self, kid: str | None, key: SigningKey) -> bool:
        """Whether `key` is still the IdP's key `kid` (tokens it verified may be trusted)."""
        current = self._find(kid)
        return current is not None and current.fingerprint == key.fingerprint

    async def key_for(self, kid: str | None) -> SigningKey:
        await self.refresh_if_stale()
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
            now = self.clock()
            if self._last_attempt is not None and now - self._last_attempt < self._refresh_seconds:
                return
            self._last_attempt = now
            self.fetches += 1
            try:
                keys, max_age = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                self._is_reachable = False
                logger.warning("could not fetch the identity provider's keys: %s", exc)
                return  # the old keys stay (and stay stale: tried again after the limit)
            self._keys = keys
            self._is_reachable = True
            if max_age is None or max_age > self._max_age_seconds:
                max_age = self._max_age_seconds
            # fresher than the refresh limit would only make every request wait on the lock
            self._fresh_until = now + max(max_age, self._refresh_seconds)

    async def _fetch(self) -> tuple[dict[str | None, SigningKey], float | None]:
        async with httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, follow_redirects=False
        ) as client:
            if self._jwks_uri is None:
                discovery = (await _get(client, self.discovery_url)).json()
                if not isinstance(discovery, dict):
                    raise ValueError("the discovery document is not a JSON object")
                if discovery.get("issuer") != self.issuer:
                    raise ValueError(
                        f"the discovery document names the issuer {discovery.get('issuer')!r}, "
                        f"not {self.issuer!r} (ACLAUDIT_OIDC_ISSUER must be exactly the "
                        "IdP's issuer, trailing '/' included)"
                    )
                self._jwks_uri = checked_jwks_uri(self.issuer, discovery.get("jwks_uri"))
            response = await _get(client, self._jwks_uri)
            return parse_key_set(response.json()), max_age_of(response.headers.get("cache-control"))


def checked_jwks_uri(issuer: str, jwks_uri: object) -> str:
    """The discovery document's `jwks_uri`: https (loopback http only for a loopback http
    issuer: an https issuer's keys are never fetched in the clear)."""
    if not isinstance(jwks_uri, str) or not is_allowed_issuer_url(jwks_uri):
        raise ValueError("the discovery document's jwks_uri is missing or not https")
    if urlsplit(issuer).scheme == "https" and urlsplit(jwks_uri).scheme != "https":
        raise ValueError(
            f"the discovery document's jwks_uri {jwks_uri!r} is not https while the issuer is"
        )
    return jwks_uri


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return response
