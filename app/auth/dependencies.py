"""FastAPI dependencies: who is calling, and may they."""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from app.auth import service as auth_service
from app.auth.oidc import OidcAuthenticator, is_permanent, looks_like_jwt
from app.auth.person_rate import PersonRate
from app.auth.refusals import Refusals, bearer_hash
from app.auth.scopes import Scope
from app.auth.service import UNKNOWN_TOKEN, Caller
from app.auth.trail import AUTHORIZED
from app.db import read_only
from app.errors import AppError, Forbidden, Unauthenticated, problem_headers, send_problem

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `aclaudit token create`, or (when configured) an ID or access "
    "token from the company's OpenID Connect provider.",
)


class DuplicateAuthorization(AppError):
    status = 400
    slug = "duplicate-authorization"
    title = "More than one Authorization header"

    def __init__(self) -> None:
        super().__init__("send exactly one Authorization header")


def authorization_header(request: Request) -> str | None:
    """The request's one Authorization header (None without one); two or more are a 400, not
    "the first one wins"."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise DuplicateAuthorization()
    return values[0] if values else None


async def authenticate_request(request: Request) -> Caller:
    """The caller, from the headers alone and a short read-only session of its own.

    Runs before the body is read and before the request's own session opens, so a caller
    without a valid token costs one indexed read and never holds SQLite's write lock.
    """
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        return caller
    header = authorization_header(request)
    refusals: Refusals = request.app.state.refusals
    token_hash = bearer_hash(request.scope)
    if refusals.is_refused(token_hash):  # a junk value sent again costs no lookup
        raise Unauthenticated(UNKNOWN_TOKEN)
    oidc: OidcAuthenticator | None = getattr(request.app.state, "oidc", None)
    if oidc is not None:
        token = (header or "").partition(" ")[2].strip()
        if looks_like_jwt(token):
            return await _authenticate_person(request, oidc, token, token_hash, refusals)
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    # The refusal is raised once the session is closed: raised inside it, a junk token's 401
    # cost the server about twice a 403 (measured: checks at 48% of their rate under a
    # junk-token flood, 112% this way)
    async with maker() as session:
        await read_only(session)
        try:
            found: Caller | Unauthenticated = await auth_service.authenticate(session, header)
        except Unauthenticated as exc:
            found = exc
    if isinstance(found, Unauthenticated):
        if token_hash is not None:
            refusals.remember_refused(token_hash)
        raise found
    request.state.caller = found  # read by the admin trail
    if token_hash is not None:
        refusals.remember(token_hash, found)
    return found


async def _authenticate_person(
    request: Request,
    oidc: OidcAuthenticator,
    token: str,
    token_hash: str | None,
    refusals: Refusals,
) -> Caller:
    """A person's JWT: verified in process (CPU only; keys are fetched, rate-limited, only
    for a key id not seen yet), then kept by its hash until it expires."""
    try:
        found = await oidc.authenticate(token, token_hash)
    except Unauthenticated as exc:
        if token_hash is not None and is_permanent(exc):
            refusals.remember_refused(token_hash)
        raise
    request.state.caller = found
    if token_hash is not None:
        refusals.remember(token_hash, found)
    return found


async def current_caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],  # for the OpenAPI document
) -> Caller:
    return await authenticate_request(request)


# The attribute of an authenticating dependency naming its check from the request's headers
# alone, `(request) -> Awaitable[...]`, which `AuthorizedFirst` runs before anything else.
AUTHORIZE = "authorize_request"
Authorize = Callable[[Request], Awaitable[object]]


def scoped(scope: Scope) -> Callable[[Request, Caller], Awaitable[Caller]]:
    async def authorize(request: Request) -> Caller:
        refusals: Refusals = request.app.state.refusals
        known = refusals.known(bearer_hash(request.scope))
        if known is not None and not known.has_scope(scope):
            # a low-privilege token's flood of 403s costs no lookup each (one since revoked
            # gets this 403 rather than a 401: refused either way)
            request.state.caller = known
            auth_service.require(known, scope)
        return auth_service.require(await authenticate_request(request), scope)

    async def dependency(
        request: Request, caller: Annotated[Caller, Depends(current_caller)]
    ) -> Caller:
        auth_service.require(caller, scope)
        request.scope.setdefault("state", {})[AUTHORIZED] = True  # (a route not AuthorizedFirst)
        return caller

    setattr(dependency, AUTHORIZE, authorize)
    return dependency


NOT_A_PERSON = (
    "this endpoint shows a person their own data: sign in with the company's OpenID Connect "
    "provider (a token has no data of its own)"
)


async def authorize_person(request: Request) -> Caller:
    caller = await authenticate_request(request)
    if not caller.is_person:
        raise Forbidden(NOT_A_PERSON)
    rate: PersonRate = request.app.state.person_rate
    rate.take(caller.name)  # (refused before AUTHORIZED: counted and paced, not trailed)
    return caller


async def signed_in_person(
    request: Request, caller: Annotated[Caller, Depends(current_caller)]
) -> Caller:
    """Any person signed in with the company's IdP, whatever their scopes; no static token."""
    if not caller.is_person:
        raise Forbidden(NOT_A_PERSON)
    request.scope.setdefault("state", {})[AUTHORIZED] = True  # (a route not AuthorizedFirst)
    return caller


setattr(signed_in_person, AUTHORIZE, authorize_person)


def _authorization(dependant: Dependant) -> Authorize | None:
    """How the route authenticates and authorises its caller, from its dependencies."""
    for sub in dependant.dependencies:
        authorize: Authorize | None = getattr(sub.call, AUTHORIZE, None)
        if authorize is not None:
            return authorize
        if sub.call is current_caller:
            return authenticate_request
        found = _authorization(sub)
        if found is not None:
            return found
    return None


class AuthorizedFirst(APIRoute):
    """A route that authenticates and authorises its caller before anything else.

    FastAPI reads and parses the JSON body before it runs any dependency, and a write
    route's session (SQLite: the write lock) opens with its dependencies. This runs the
    route's token and scope check first, from the headers alone: a caller without a valid
    token (or without the scope) is refused before its body is read or any lock is taken,
    and the admin trail knows who sent a body that does not parse.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        authorize = _authorization(self.dependant)
        if authorize is None:
            return handler

        async def authorized_first(request: Request) -> Response:
            await authorize(request)
            request.scope.setdefault("state", {})[AUTHORIZED] = True  # trailed from here on
            try:
                return await handler(request)
            except HTTPException as exc:
                if exc.status_code != 400:
                    raise
                # FastAPI's bare 400 for a body JSON cannot read (nested too deeply, say):
                # a 422 naming the body, like every other unreadable body
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body",),
                            "msg": "the body could not be read as JSON (nested too deeply?)",
                        }
                    ]
                ) from exc

        return authorized_first


CheckCaller = Annotated[Caller, Depends(scoped(Scope.check))]
AuditReader = Annotated[Caller, Depends(scoped(Scope.audit_read))]
PolicyWriter = Annotated[Caller, Depends(scoped(Scope.policy_write))]
AlertsReader = Annotated[Caller, Depends(scoped(Scope.alerts_read))]
AdminCaller = Annotated[Caller, Depends(scoped(Scope.admin))]
ScimCaller = Annotated[Caller, Depends(scoped(Scope.scim))]
PersonCaller = Annotated[Caller, Depends(signed_in_person)]


class RequireBearer:
    """Refuses a `/v1/` or `/scim/` request without one well-formed ``Authorization: Bearer``
    header as plain ASGI (under `/scim/` as a SCIM error): a flood of requests without a token
    costs a header scan each, not the framework's routing and validation. (Tokens themselves
    are looked up by the route; the admin trail's middleware counts and paces every refusal,
    this one's included.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/scim/")):
            await self.app(scope, receive, send)
            return
        values = [v for n, v in scope["headers"] if n == b"authorization"]
        error: AppError | None = None
        if len(values) > 1:
            error = DuplicateAuthorization()
        else:
            scheme, _, token = (values[0] if values else b"").partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                error = Unauthenticated("send Authorization: Bearer <token>")
        if error is None:
            await self.app(scope, receive, send)
            return
        await send_problem(send, error.to_problem(), problem_headers(error), scope["path"])
