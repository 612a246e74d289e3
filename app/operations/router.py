"""``GET /metrics``: Prometheus text, behind a token unless ``ACLAUDIT_METRICS_OPEN=true``."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from app.auth.dependencies import AuthorizedFirst, authenticate_request, bearer
from app.auth.scopes import Scope
from app.errors import Forbidden, Unauthenticated, problem_responses
from app.operations import metrics as metrics_module

router = APIRouter(tags=["operations"], route_class=AuthorizedFirst)

# A Prometheus server gets a token with ``metrics:read`` alone; the alerting system's
# ``alerts:read`` token may scrape too (it polls the feed and scrapes, per the contract).
METRICS_SCOPES = (Scope.metrics_read, Scope.alerts_read)


async def metrics_reader(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],  # for the OpenAPI document
) -> None:
    if request.app.state.settings.metrics_open:
        return
    caller = await authenticate_request(request)
    if not any(caller.has_scope(scope) for scope in METRICS_SCOPES):
        raise Forbidden("this endpoint needs the 'metrics:read' or 'alerts:read' scope")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"},
        **problem_responses(Unauthenticated, Forbidden),
    },
)
async def metrics(request: Request, _: Annotated[None, Depends(metrics_reader)]) -> Response:
    """Checks by decision, check latency, open findings by severity, out-of-audience reads,
    access-log write failures, the alert feed's head id, the access log's partition headroom
    and oldest entry's age, summed over every worker."""
    state = request.app.state
    body = await metrics_module.render(
        state.metrics, state.sessionmaker, state.settings.log_partition_entries
    )
    return Response(body, media_type=metrics_module.CONTENT_TYPE)
