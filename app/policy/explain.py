from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.as_of import At
from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.db import SessionDep
from app.errors import Busy, Forbidden, InvalidInput, Unauthenticated, problem_responses
from app.identifiers import Action, DatasetId, FreeText, PrincipalId
from app.policy import holds
from app.policy import snapshot as snapshot_module
from app.policy.casbin_model import Rule
from app.policy.history import service as history_service
from app.policy.published import states_of
from app.policy.schemas import Reason
from app.policy.snapshot import PolicyCache

router = APIRouter(tags=["check"], route_class=AuthorizedFirst)
MAX_PATHS = 20


class ExplainedGrant(BaseModel):
    grant_id: int | None = Field(description="The grant; null for a hold.")
    hold_id: int | None = Field(
        default=None,
        description="The hold (`GET /v1/holds`) when this deny is one: the guard held an IdP "
        "membership back, or the IdP deactivated the user (resource `*`).",
    )
    effect: str
    purpose: str = Field(description='The purpose this rule of the grant is for ("*": any).')
    subject: str
    resource: str
    via: list[str] = Field(
        description="A shortest membership path from the principal to the subject."
    )
    paths: list[list[str]] = Field(
        description=f"Every membership path from the principal to the subject (shortest first; "
        f"at most {MAX_PATHS}): access stays while any of them does."
    )
    paths_complete: bool = Field(description="False when there are more paths than listed.")


class Explanation(BaseModel):
    principal: str
    dataset: str
    action: Action
    purpose: str | None = Field(default=None, description="The purpose asked about, if any.")
    decision: str
    reason: Reason
    out_of_audience: bool
    policy_version: int
    at: datetime | None = Field(
        default=None, description="The instant answered for, when `at=` was given."
    )
    grants: list[ExplainedGrant] = Field(
        description="Every live grant that matches, allow and deny, and every hold."
    )


async def explain_now(
    session: AsyncSession,
    principal: str,
    dataset: str,
    action: Action,
    purpose: str | None = None,
) -> Explanation:
    """The decision a check would get now and every grant and path behind it (not logged)."""
    snapshot = await states_of(session).current(session, snapshot_module.CHECKS)
    return explain_with(snapshot, principal, dataset, action, purpose=purpose)


def explain_with(
    snapshot: snapshot_module.PolicySnapshot,
    principal: str,
    dataset: str,
    action: Action,
    when: datetime | None = None,
    purpose: str | None = None,
) -> Explanation:
    """The decision under `snapshot` at `when` (expiries judged then; None: now) for a check
    naming `purpose` (None: none)."""
    at = snapshot_module.now() if when is None else when.timestamp()
    outcome = snapshot.decide(principal, dataset, action.value, purpose, at)
    matches = snapshot.index.rules_for(principal, dataset, action.value, purpose or "", at)
    return Explanation(
        principal=principal,
        dataset=dataset,
        action=action,
        purpose=purpose,
        decision="allow" if outcome.allowed else "deny",
        reason=Reason(code=outcome.code, grant_id=outcome.grant_id, via=list(outcome.via)),
        out_of_audience=outcome.out_of_audience,
        policy_version=snapshot.version,
        at=when,
        grants=[_explained(snapshot, principal, rule, via) for rule, via in matches],
    )


def _explained(
    snapshot: snapshot_module.PolicySnapshot, principal: str, rule: Rule, via: tuple[str, ...]
) -> ExplainedGrant:
    paths, complete = snapshot.index.paths(principal, rule.sub, MAX_PATHS)
    is_hold = holds.is_hold(rule)
    return ExplainedGrant(
        grant_id=None if is_hold else int(rule.id),
        hold_id=holds.hold_id(rule) if is_hold else None,
        effect=rule.eft,
        purpose=rule.purpose,
        subject=rule.sub,
        resource=rule.obj,
        via=list(via),
        paths=[list(path) for path in paths],
        paths_complete=complete,
    )


@router.get(
    "/v1/explain",
    response_model=Explanation,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Busy),
)
async def explain(
    request: Request,
    at: At,
    session: SessionDep,
    _: AuditReader,
    principal: Annotated[PrincipalId, Query()],
    dataset: Annotated[DatasetId, Query()],
    action: Annotated[Action, Query()] = Action.read,
    purpose: Annotated[
        FreeText | None,
        Query(max_length=200, description="The purpose the check would name (none if omitted)."),
    ] = None,
) -> Explanation:
    """The decision a check would get now (or would have got at `at`, from the policy's
    history) and every grant and path behind it (not logged)."""
    if at is not None:
        snapshot = await history_service.view_at(session, at, snapshot_module.CHECKS)
        return explain_with(snapshot, principal, dataset, action, at, purpose)
    cache: PolicyCache = request.app.state.policy
    return explain_with(await cache.current(session), principal, dataset, action, purpose=purpose)
