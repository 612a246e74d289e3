"""The hot path: ``POST /v1/check`` and ``/v1/check/batch``."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import SQLAlchemyError

from app.auth import service as auth_service
from app.auth.dependencies import (
    AUTHORIZE,
    AuthorizedFirst,
    authenticate_request,
    authorization_header,
    bearer,
)
from app.auth.oidc import looks_like_jwt
from app.auth.scopes import Scope
from app.auth.service import Caller
from app.auth.token_cache import TokenCache
from app.checks.batch import Recorded, Submission
from app.checks.schemas import (
    MAX_BATCH,
    CheckBatchRequest,
    CheckBatchResult,
    CheckRequest,
    CheckResult,
    CheckUnavailableProblem,
)
from app.checks.service import record, result_document, to_input
from app.errors import CheckUnavailable, Forbidden, Unauthenticated, problem_responses
from app.operations.metrics import Metrics

router = APIRouter(prefix="/v1/check", tags=["check"], route_class=AuthorizedFirst)


@dataclass(frozen=True)
class CheckAuth:
    caller: Caller
    token_hash: str | None  # None for a person (OpenID Connect)


async def authorize_check(request: Request) -> CheckAuth:
    """Token check from the in-process cache (revalidated by the writer on policy changes),
    from the headers alone: `AuthorizedFirst` runs it before the body is read."""
    done: CheckAuth | None = getattr(request.state, "check_auth", None)
    if done is not None:
        return done
    header = authorization_header(request)
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <token>")
    token_hash = auth_service.hash_token(token)
    if getattr(request.app.state, "oidc", None) is not None and looks_like_jwt(token):
        # a person: authenticated as on every other route; their checks are not revalidated
        # against the token table (a JWT is not revoked here: it expires)
        person = await authenticate_request(request)
        auth_service.require(person, Scope.check)
        auth = CheckAuth(person, None)
        request.state.check_auth = auth
        return auth
    cache: TokenCache = request.app.state.token_cache
    try:
        caller = await cache.lookup(request.app.state.sessionmaker, token_hash)
    except (SQLAlchemyError, OSError) as exc:
        metrics: Metrics = request.app.state.metrics
        metrics.count_refused(await _checks_asked(request))
        raise CheckUnavailable("the token store is unreachable, so the check is a deny") from exc
    if caller is None:
        raise Unauthenticated("the token is unknown or revoked")
    request.state.caller = caller
    auth_service.require(caller, Scope.check)
    auth = CheckAuth(caller, token_hash)
    request.state.check_auth = auth
    return auth


async def check_auth(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],  # for the OpenAPI document
) -> CheckAuth:
    return await authorize_check(request)


async def _checks_asked(request: Request) -> int:
    """How many checks a request refused before its body was validated asked for: one, or the
    length of a batch's list (none when the batch is not one FastAPI would accept)."""
    if not request.url.path.endswith("/batch"):
        return 1
    try:
        checks = (await request.json()).get("checks")
    except (ValueError, AttributeError):
        return 0
    return len(checks) if isinstance(checks, list) and len(checks) <= MAX_BATCH else 0


setattr(check_auth, AUTHORIZE, authorize_check)  # run first by AuthorizedFirst


CheckAuthDep = Annotated[CheckAuth, Depends(check_auth)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    **problem_responses(Unauthenticated, Forbidden),
    503: {"model": CheckUnavailableProblem, "description": "Not recorded, so denied"},
}


async def _record(request: Request, auth: CheckAuth, checks: list[CheckRequest]) -> list[Recorded]:
    submission = Submission([to_input(c) for c in checks], auth.caller.name, auth.token_hash)
    state = request.app.state
    return await record(state.log_writer, state.metrics, submission)


@router.post("", response_model=CheckResult, responses=RESPONSES)
async def check(body: CheckRequest, request: Request, auth: CheckAuthDep) -> dict[str, Any]:
    """Decide with the policy, record the decision durably, then answer."""
    recorded = await _record(request, auth, [body])
    return result_document(recorded[0])


@router.post("/batch", response_model=CheckBatchResult, responses=RESPONSES)
async def check_batch(
    body: CheckBatchRequest, request: Request, auth: CheckAuthDep
) -> dict[str, Any]:
    """Up to 1000 checks, answered in order; each is logged."""
    recorded = await _record(request, auth, body.checks)
    return {"results": [result_document(r) for r in recorded]}
