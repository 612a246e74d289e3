"""`/v1/me`: a person signed in with the company's IdP sees their own data, with no scope.

Only the signed-in person's principal is ever looked up: neither route takes one.
"""

from fastapi import APIRouter, Request

from app.accesslog import service as accesslog_service
from app.auth.dependencies import AuthorizedFirst, PersonCaller
from app.db import ReadSessionDep
from app.errors import Forbidden, Gone, Unauthenticated, problem_responses
from app.exposure import access
from app.exposure.schemas import PrincipalAccess
from app.me.schemas import MyReadPage, MyReadRead
from app.pagination import DEFAULT_LIMIT, Cursor, IdCursor, Limit
from app.policy.snapshot import PolicyCache

router = APIRouter(prefix="/v1/me", tags=["me"], route_class=AuthorizedFirst)
ERRORS = problem_responses(Unauthenticated, Forbidden)


@router.get(
    "/reads",
    response_model=MyReadPage,
    responses=problem_responses(Unauthenticated, Forbidden, Gone),
)
async def my_reads(
    session: ReadSessionDep,
    person: PersonCaller,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> MyReadPage:
    """Every recorded decision whose `data_subjects` include you: who asked, when, for which
    dataset and purpose, the decision, and whether they were outside its audience; newest
    first. The last page says up to which entry older reads were archived; a cursor into
    them answers 410."""
    entries, next_cursor, archived_through = await accesslog_service.list_entries(
        session,
        principal=None,
        dataset=None,
        decision=None,
        out_of_audience=None,
        data_subject=person.name,
        since=None,
        until=None,
        before_id=cursor,
        limit=limit,
    )
    items = [MyReadRead.model_validate(e, from_attributes=True) for e in entries]
    return MyReadPage(items=items, next_cursor=next_cursor, archived_through=archived_through)


@router.get("/access", response_model=PrincipalAccess, responses=ERRORS)
async def my_access(
    request: Request,
    session: ReadSessionDep,
    person: PersonCaller,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> PrincipalAccess:
    """Every registered dataset you can read now, with the grant and group path that lets
    you, by dataset id."""
    cache: PolicyCache = request.app.state.policy
    snapshot = await cache.current(session)
    return await access.principal_access(
        session, snapshot, principal=person.name, after=cursor, limit=limit
    )
