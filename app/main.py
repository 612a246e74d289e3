"""create_app(): lifespan, routers, error handlers."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.auth.router import router as auth_router
from app.auth.trail import AdminTrailMiddleware
from app.config import Settings, get_settings
from app.datasets.router import router as datasets_router
from app.db import create_engine, create_sessionmaker
from app.directory.router import router as directory_router
from app.errors import PROBLEM_BASE, AppError, ServiceUnavailable
from app.policy.router import router as grants_router

logger = logging.getLogger("aclaudit")
PROBLEM_JSON = "application/problem+json"


def problem_response(
    problem: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        problem, status_code=problem["status"], media_type=PROBLEM_JSON, headers=headers
    )


def _validation_problem(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        errors.append(
            {
                "loc": loc,
                "field": ".".join(loc),
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    detail = "; ".join(f"{e['field']}: {e['msg']}" for e in errors[:5]) or "invalid request"
    return {
        "type": PROBLEM_BASE + "validation",
        "title": "Invalid request",
        "status": 422,
        "detail": detail,
        "errors": errors,
    }


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem_response(exc.to_problem(), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = {
            "type": PROBLEM_BASE + f"http-{exc.status_code}",
            "title": str(exc.detail) if exc.status_code < 500 else "Error",
            "status": exc.status_code,
            "detail": str(exc.detail),
        }
        return problem_response(problem, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # An unreachable or failing database fails closed: 503, never a guess.
        logger.error(
            "database error on %s %s: %s", request.method, request.url.path, type(exc).__name__
        )
        detail = "the database is unavailable; retry shortly"
        if not isinstance(exc, DBAPIError):
            logger.exception("unexpected database error")
        return problem_response(ServiceUnavailable(detail).to_problem(), {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            {
                "type": PROBLEM_BASE + "internal",
                "title": "Internal error",
                "status": 500,
                "detail": "an unexpected error occurred; it has been logged",
            }
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="aclaudit",
        version="0.1.0",
        summary="Access-control audit for training datasets: decide, record, flag.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(AdminTrailMiddleware)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database is reachable and the policy can be loaded."""
        try:
            async with request.app.state.sessionmaker() as session:
                version = (
                    await session.execute(text("SELECT version FROM policy_state WHERE id = 1"))
                ).scalar_one()
        except Exception as exc:  # any failure means not ready
            logger.warning("readiness check failed: %s", type(exc).__name__)
            return problem_response(
                ServiceUnavailable("the database is not reachable").to_problem()
            )
        return JSONResponse({"status": "ready", "policy_version": version})

    for router in (directory_router, datasets_router, grants_router, auth_router):
        app.include_router(router)
    return app
