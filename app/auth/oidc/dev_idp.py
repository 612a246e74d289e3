"""A development OpenID Connect issuer: NOT FOR PRODUCTION.

Serves a discovery document and a JWKS over plain HTTP on loopback, and signs tokens for
whoever asks, with keys made at start and never stored. It exists so the demo and the tests
can sign people in without a real IdP (`aclaudit dev-idp`); a real deployment points
``ACLAUDIT_OIDC_ISSUER`` at the company's provider (docs/oidc.md).
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"


class DevKey:
    """A signing key: RS256 (RSA 2048) or ES256 (P-256)."""

    def __init__(self, algorithm: str = "RS256", kid: str | None = None) -> None:
        self.algorithm = algorithm
        self.kid = kid or uuid.uuid4().hex[:12]
        self.publish_alg = True  # False: its JWK has no "alg", as Entra ID publishes keys
        self.private: PrivateKey
        if algorithm == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError("the development issuer signs with RS256 or ES256")

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        labels = {"kid": self.kid, "use": "sig"}
        if self.publish_alg:
            labels["alg"] = self.algorithm
        return {**jwk, **labels}


class DevIssuer:
    """The issuer: `start()` serves it in a thread, `token()` signs, `rotate()` swaps keys."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        algorithms: tuple[str, ...] = ("RS256",),
        *,
        trailing_slash: bool = False,
    ) -> None:
        self.trailing_slash = trailing_slash  # an issuer named as Auth0 names its own
        self.keys = [DevKey(a) for a in algorithms]
        self.requests = 0  # discovery and JWKS requests served
        self.is_up = True  # False: answer 503 as an unreachable IdP would fail
        self.cache_control: str | None = None  # the JWKS's Cache-Control header, if any
        issuer = self
        self._server = ThreadingHTTPServer((host, port), _handler(issuer))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def issuer(self) -> str:
        """The `iss` of its tokens and its discovery document."""
        return self.url + "/" if self.trailing_slash else self.url

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.url + JWKS_PATH,
            "id_token_signing_alg_values_supported": sorted({k.algorithm for k in self.keys}),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def rotate(self, algorithm: str = "RS256") -> DevKey:
        """Publish a new key in place of every old one; returns it."""
        key = DevKey(algorithm)
        self.keys = [key]
        return key

    def token(
        self,
        username: str,
        *,
        audience: str,
        groups: list[str] | None = None,
        lifetime: float = 3600,
        key: DevKey | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "sub": username,
            "preferred_username": username,
            "groups": groups or [],
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime),
            **claims,
        }
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers={"kid": key.kid})

    def start(self) -> "DevIssuer":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()


def _handler(issuer: DevIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.requests += 1
            documents = {DISCOVERY_PATH: issuer.discovery, JWKS_PATH: issuer.jwks}
            if not issuer.is_up:
                self._answer(503, {"error": "down"})
            elif self.path in documents:
                cache = issuer.cache_control if self.path == JWKS_PATH else None
                self._answer(200, documents[self.path](), cache)
            else:
                self._answer(404, {"error": "not found"})

        def _answer(
            self, status: int, document: dict[str, Any], cache_control: str | None = None
        ) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if cache_control is not None:
                self.send_header("Cache-Control", cache_control)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the command prints what matters

    return Handler
