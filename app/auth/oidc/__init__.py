"""People sign in with the company's OpenID Connect provider (docs/oidc.md).

`OidcAuthenticator` verifies a bearer JWT and makes it a `Caller` (``user:<id>``, scopes from
the IdP's groups); `IdpKeys` caches the IdP's signing keys.

    Unauthenticated (401)
    ├── InvalidIdToken   signature, iss, aud, exp, alg, claims: refused for good
    ├── NotYetValid      nbf (or iat) ahead: valid later
    └── UnknownKey       the IdP publishes no such key (after a rate-limited refresh)
    IdpUnavailable (503) the IdP cannot be reached and the token's key is not cached
"""

from app.auth.oidc.authenticator import (
    InvalidIdToken,
    NotYetValid,
    OidcAuthenticator,
    is_permanent,
    looks_like_jwt,
)
from app.auth.oidc.keys import IdpKeys, IdpUnavailable, UnknownKey

__all__ = [
    "IdpKeys",
    "IdpUnavailable",
    "InvalidIdToken",
    "NotYetValid",
    "OidcAuthenticator",
    "UnknownKey",
    "is_permanent",
    "looks_like_jwt",
]
