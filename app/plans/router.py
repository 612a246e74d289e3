from fastapi import APIRouter

from app.auth.dependencies import AuthorizedFirst, PolicyWriter
from app.config import SettingsDep
from app.db import SessionDep
from app.errors import Conflict, Forbidden, InvalidInput, Unauthenticated, problem_responses
from app.plans import service
from app.plans.schemas import PlanResult, PolicyDocument

router = APIRouter(prefix="/v1/policy", tags=["policy files"], route_class=AuthorizedFirst)
ERRORS = problem_responses(Unauthenticated, Forbidden, InvalidInput, Conflict)


@router.post("/plan", response_model=PlanResult, responses=ERRORS)
async def plan(body: PolicyDocument, session: SessionDep, caller: PolicyWriter) -> PlanResult:
    """What applying this policy document would change, open, resolve and refuse. Changes
    nothing: policy CI runs it on every proposed change. It needs `policy:write` because it
    holds the policy write lock while it works (it applies the document and rolls it back)."""
    return await service.plan(session, doc=body, actor=caller.name)


@router.post("/apply", response_model=PlanResult, responses=ERRORS)
async def apply(
    body: PolicyDocument, session: SessionDep, caller: PolicyWriter, settings: SettingsDep
) -> PlanResult:
    """Make the groups, datasets and grants the document names what it states, in one
    transaction. Refused as a whole (409, with the findings) where the result would widen a
    block-guarded dataset's exposure, or grow a block dataset's intended audience beyond
    ACLAUDIT_AUDIENCE_GROWTH_APPROVAL principals; accepting either on a block dataset takes two
    people (`POST /v1/approvals` with this request as its change)."""
    return await service.apply(
        session, doc=body, actor=caller.name, growth_limit=settings.audience_growth_approval
    )
