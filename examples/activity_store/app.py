"""The activity store's HTTP API: every read is checked with aclaudit first.

``GET /v1/records/{kind}`` returns a page of employees' records of one kind (the dataset
``employee_activity.<kind>``). The reader names itself in ``X-Principal`` and the reason in
``?purpose=``; the store asks aclaudit, passing whose records the page holds as
``data_subjects``, and answers 403 on a deny, 503 when aclaudit cannot answer (fail closed).

``X-Principal`` is trusted as sent: in a real deployment the principal comes from the caller's
authenticated identity (mTLS, an OIDC token), never from a header the caller picks.
"""

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse

from app.client import (
    AccessDenied,
    AclauditError,
    AsyncAclauditClient,
    CheckResult,
    InvalidRequest,
    Timeout,
)
from examples.activity_store import records
from examples.activity_store.config import StoreSettings, get_settings

logger = logging.getLogger("activity_store")
PROBLEM = "https://aclaudit.dev/problems/activity-store/"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM + title.lower().replace(" ", "-"), "title": title, "status": status}
    return JSONResponse(
        {**body, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
    )


def _decision(result: CheckResult) -> dict[str, Any]:
    return {
        "decision": result.decision,
        "reason": result.reason.code,
        "grant_id": result.reason.grant_id,
        "access_log_id": result.access_log_id,
        "decision_id": result.decision_id,
        "out_of_audience": result.out_of_audience,
    }


def create_app(
    settings: StoreSettings | None = None,
    *,
    aclaudit_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One client, so one connection pool, for the whole process.
        timeout = Timeout(settings.aclaudit_timeout, connect=min(1.0, settings.aclaudit_timeout))
        async with AsyncAclauditClient(
            str(settings.aclaudit_url),
            token=settings.aclaudit_token.get_secret_value(),
            timeout=timeout,
            transport=aclaudit_transport,
        ) as aclaudit:
            app.state.aclaudit = aclaudit
            yield

    app = FastAPI(
        title="activity store (aclaudit example)",
        summary="Employee activity records, read only after aclaudit allows it.",
        lifespan=lifespan,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/v1/records/{kind}",
        responses={
            403: {"description": "aclaudit denied the read"},
            404: {"description": "a requested subject has no records"},
            503: {"description": "aclaudit could not answer, so the read is refused"},
        },
    )
    async def read_records(
        kind: records.Kind,
        request: Request,
        principal: Annotated[str, Header(alias="X-Principal", description="Who reads.")],
        purpose: Annotated[str, Query(min_length=1, max_length=200, description="Why.")],
        subject: Annotated[
            list[str] | None, Query(description="Whose records; default: a page of everyone.")
        ] = None,
        limit: Annotated[int | None, Query(ge=1, le=200)] = None,
        cursor: Annotated[int, Query(ge=0)] = 0,
        request_id: Annotated[str | None, Header(alias="X-Request-ID")] = None,
    ) -> Any:
        """A page of records of one kind; checked with aclaudit before anything is read."""
        aclaudit: AsyncAclauditClient = request.app.state.aclaudit
        if subject:
            subjects, next_cursor = list(dict.fromkeys(s.lower() for s in subject)), None
        else:
            everyone = records.employees()
            size = limit or settings.page_size
            subjects = list(everyone[cursor : cursor + size])
            more = cursor + size < len(everyone)
            next_cursor = str(cursor + size) if more else None
        try:
            async with aclaudit.guard(
                principal=principal,
                dataset=kind.dataset,
                purpose=purpose,
                data_subjects=subjects,
                request_id=request_id or str(uuid.uuid4()),
            ) as decision:
                unknown = [s for s in subjects if not records.is_employee(s)]
                if unknown:
                    return problem(404, "Unknown subject", f"no records for {', '.join(unknown)}")
                items = [{"subject": s, "records": records.records(kind, s)} for s in subjects]
        except AccessDenied as denied:
            result = denied.result
            if not result.recorded:  # aclaudit did not answer: fail closed
                logger.warning("refused %s read of %s: %s", principal, kind.dataset, denied)
                return problem(
                    503,
                    "Access check unavailable",
                    "aclaudit could not be asked, so the read is refused; retry shortly",
                    decision=_decision(result),
                )
            return problem(
                403,
                "Access denied",
                f"aclaudit denied {principal} reading {kind.dataset}: {result.reason.code}",
                decision=_decision(result),
            )
        except InvalidRequest as exc:  # e.g. a malformed X-Principal, named by aclaudit
            return problem(422, "Invalid request", str(exc), errors=exc.problem.get("errors", []))
        except AclauditError as exc:  # APIError: the store's own token or scope is wrong
            logger.error("cannot ask aclaudit: %s", exc)
            return problem(503, "Access check unavailable", "the store cannot ask aclaudit")
        return {
            "dataset": kind.dataset,
            "principal": principal,
            "purpose": purpose,
            "decision": _decision(decision),
            "items": items,
            "next_cursor": next_cursor,
        }

    return app
