from typing import Annotated

from fastapi import APIRouter, Query

from app.alerts import service as alerts_service
from app.alerts.schemas import AlertFeed
from app.auth.dependencies import AlertsReader, AuthorizedFirst
from app.db import SessionDep
from app.errors import Forbidden, Unauthenticated, problem_responses
from app.pagination import DEFAULT_LIMIT, Limit

router = APIRouter(tags=["alerts"], route_class=AuthorizedFirst)


@router.get(
    "/v1/alerts", response_model=AlertFeed, responses=problem_responses(Unauthenticated, Forbidden)
)
async def alerts(
    session: SessionDep,
    _: AlertsReader,
    after: Annotated[int, Query(ge=0, le=2**62, description="The last id you saw.")] = 0,
    limit: Limit = DEFAULT_LIMIT,
) -> AlertFeed:
    """Alerts with ids above `after`, in id order. Keep `last_id` and pass it back as `after`:
    every alert is seen exactly once, in order."""
    return await alerts_service.feed(session, after=after, limit=limit)
