"""create_app(): lifespan, routers, error handlers."""

import asyncio
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from scim2_models import SCIMException
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.accesslog.integrity import Integrity
from app.accesslog.router import router as accesslog_router
from app.alerts.router import router as alerts_router
from app.approvals.router import router as approvals_router
from app.auth.dependencies import RequireBearer
from app.auth.oidc import OidcAuthenticator
from app.auth.pacing import RefusalPacing
from app.auth.person_rate import PersonRate
from app.auth.refusals import Refusals
from app.auth.router import router as auth_router
from app.auth.token_cache import TokenCache
from app.auth.trail import AdminTrailMiddleware, record_with_change
from app.changes.router import router as changes_router
from app.checks.fast_path import CheckFastPath
from app.checks.router import router as check_router
from app.checks.writer import AccessLogWriter
from app.config import Settings, get_settings
from app.datasets.router import router as datasets_router
from app.db import create_engine, create_sessionmaker
from app.directory.router import router as directory_router
from app.errors import (
    PROBLEM_BASE,
    AppError,
    ServiceUnavailable,
    http_problem,
    is_scim_path,
    problem_headers,
)
from app.exposure.router import router as exposure_router
from app.fairness import OneAtATime
from app.holds.router import router as holds_router
from app.identity import scim
from app.identity.group_commit import GroupCommit
from app.identity.scim import errors as scim_errors
from app.me.router import router as me_router
from app.operations import docs
from app.operations.checkpoints import WalCheckpointer
from app.operations.logs import request_id_var
from app.operations.metrics import Metrics
from app.operations.middleware import HEADER as REQUEST_ID_HEADER
from app.operations.middleware import BodyLimit, RequestContext
from app.operations.router import router as operations_router
from app.operations.sweeper import Sweeper
from app.plans.router import router as plans_router
from app.policy.casbin_model import MODEL_PATH, require_model
from app.policy.explain import router as explain_router
from app.policy.published import states_for
from app.policy.router import casbin_router
from app.policy.router import router as grants_router
from app.policy.snapshot import PolicyCache
from app.reports.router import router as reports_router

logger = logging.getLogger("aclaudit")
PROBLEM_JSON = "application/problem+json"
# The exposure analyser keeps large dicts (100k principals), and each policy change copies a few
# of them. With CPython's default threshold (700) the young generation is collected every few
# hundred allocations, each time walking those fresh copies: 5-7 ms per collection and 50-200 ms
# for the older generations, i.e. most of a mutation's p95 at 100k principals. Collect the young
# generation every 50,000 allocations instead (measured: no collection inside a grant change).
GC_THRESHOLDS = (50_000, 20, 100)


def problem_response(
    problem: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        problem, status_code=problem["status"], media_type=PROBLEM_JSON, headers=headers
    )


def error_response(
    request: Request, problem: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    """The problem document, or under /scim/ the same error as a SCIM Error message."""
    if is_scim_path(request.url.path):
        return scim_errors.problem_response(problem, headers)
    return problem_response(problem, headers)


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
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return error_response(request, exc.to_problem(), problem_headers(exc) or None)

    @app.exception_handler(SCIMException)
    async def _scim(_: Request, exc: SCIMException) -> JSONResponse:
        return scim_errors.exception_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, _validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(request, http_problem(exc), headers)

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # An unreachable or failing database fails closed: 503, never a guess.
        logger.error(
            "database error on %s %s: %s", request.method, request.url.path, type(exc).__name__
        )
        detail = "the database is unavailable; retry shortly"
        if not isinstance(exc, DBAPIError):
            logger.exception("unexpected database error")
        return error_response(
            request, ServiceUnavailable(detail).to_problem(), {"Retry-After": "1"}
        )

    @app.exception_handler(OSError)
    async def _unreachable(request: Request, exc: OSError) -> JSONResponse:
        logger.error("database unreachable on %s %s: %r", request.method, request.url.path, exc)
        problem = ServiceUnavailable("the database is unreachable; retry shortly").to_problem()
        return error_response(request, problem, {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # This runs outside the middleware stack, after the request context has ended.
        request_id = request.scope.get("state", {}).get("request_id") or request_id_var.get()
        logger.exception(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            extra={"request_id": request_id},
        )
        return error_response(
            request, INTERNAL_ERROR, {REQUEST_ID_HEADER: request_id} if request_id else None
        )


INTERNAL_ERROR = {
    "type": PROBLEM_BASE + "internal",
    "title": "Internal error",
    "status": 500,
    "detail": "an unexpected error occurred; it has been logged",
}


def _stop_for_restart() -> None:
    """Stop this worker as SIGTERM would (draining what it holds), so that its supervisor
    (uvicorn's for several workers, Docker's or systemd's) starts a fresh one."""
    logger.critical("the access log cannot be made durable here: stopping this worker")
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    require_model(settings.casbin_model or MODEL_PATH)  # a model nothing enforces: no start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gc.set_threshold(*GC_THRESHOLDS)
        sqlite_file = settings.sqlite_file
        engine = create_engine(settings, background_checkpoints=sqlite_file is not None)
        app.state.engine = engine
        checkpointer = None
        if sqlite_file is not None:
            checkpointer = WalCheckpointer(sqlite_file, settings.database_timeout)
            checkpointer.start()
        app.state.wal_checkpointer = checkpointer
        app.state.sessionmaker = create_sessionmaker(
            engine, chain_key=settings.checkpoint_key_bytes
        )
        app.state.policy = PolicyCache(states_for(engine))
        app.state.group_commit = GroupCommit(
            app.state.sessionmaker,
            record_with_change,
            app.state.metrics.observe_scim_batch,
            policy=True,
        )
        app.state.create_commit = GroupCommit(
            app.state.sessionmaker,
            record_with_change,
            app.state.metrics.observe_scim_creates,
            policy=False,
        )
        app.state.token_cache = TokenCache()
        writer = AccessLogWriter(
            app.state.sessionmaker, app.state.policy, app.state.token_cache, settings
        )
        app.state.log_writer = writer
        writer.on_clock_step(app.state.metrics.count_clock_step)
        if settings.exit_on_log_failure:
            writer.on_broken(_stop_for_restart)
        writer.start()
        app.state.integrity = Integrity(
            app.state.sessionmaker, settings, report=app.state.metrics.record_verify
        )
        sweeper = Sweeper(app.state.sessionmaker, settings, app.state.integrity, app.state.refusals)
        app.state.sweeper = sweeper
        try:  # partitions ahead of the head before the first check (PostgreSQL)
            await sweeper.keep_partitions()
        except Exception as exc:  # the sweeper and the log store make them later
            logger.warning("could not make the access log's next partitions: %r", exc)
        if settings.sweeper_enabled:
            sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await writer.stop()  # drain: every accepted check gets its entry before exit
            if checkpointer is not None:
                await checkpointer.stop()
            await engine.dispose()
            app.state.metrics.mark_process_dead()

    app = FastAPI(
        title="aclaudit",
        version="0.1.0",
        summary="Access-control audit for training datasets: decide, record, flag.",
        lifespan=lifespan,
        # `/v1/alerts/` is a plain 404, not a 307 that tells an unauthenticated caller
        # which paths exist (and was trailed as if it had been answered)
        redirect_slashes=False,
        **docs.documentation_urls(is_open=settings.open_docs),
        swagger_ui_init_oauth=(
            docs.oidc_sign_in(settings.oidc_audience)
            if settings.is_oidc and settings.oidc_audience
            else None
        ),
    )
    app.state.settings = settings
    app.state.before_write_commit = record_with_change
    app.state.metrics = Metrics()
    app.state.refusals = Refusals()
    app.state.refusal_pacing = RefusalPacing()
    app.state.person_rate = PersonRate(settings.person_requests_per_minute)
    app.state.simulations = OneAtATime("simulate")
    app.state.rebuilds = OneAtATime("request with at= or replay")
    app.state.oidc = OidcAuthenticator(settings) if settings.is_oidc else None
    if app.state.oidc is not None:
        docs.install_oidc_scheme(app, app.state.oidc.keys.discovery_url)
    install_error_handlers(app)
    docs.install(app, is_open=settings.open_docs)
    app.add_middleware(CheckFastPath)  # innermost: checks still get a request id and metrics
    app.add_middleware(RequireBearer)  # no token: refused before the framework's work
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)  # trailed when refused
    app.add_middleware(AdminTrailMiddleware)  # trails, or counts and paces refusals
    app.add_middleware(RequestContext)  # outermost: the request id covers the trail too

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str | int]:
        """The process is up (``worker`` tells replicas and workers apart)."""
        return {"status": "ok", "worker": os.getpid()}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database is reachable, the policy can be loaded and the access log written."""
        broken = request.app.state.log_writer.broken
        if broken is not None:
            detail = (
                "the access log cannot be made durable in this process (a failed fsync: "
                f"{type(broken).__name__}); every check is refused until it restarts on a "
                "healthy disk"
            )
            return problem_response(ServiceUnavailable(detail).to_problem())
        sqlite_file = request.app.state.settings.sqlite_file
        try:
            if sqlite_file is not None and not await asyncio.to_thread(os.path.exists, sqlite_file):
                # open connections would go on reading and writing the deleted file
                raise FileNotFoundError(sqlite_file)
            async with request.app.state.sessionmaker() as session:
                snapshot = await request.app.state.policy.current(session)
        except Exception as exc:  # any failure means not ready
            logger.warning("readiness check failed: %s", type(exc).__name__)
            return problem_response(
                ServiceUnavailable("the database is not reachable").to_problem()
            )
        return JSONResponse({"status": "ready", "policy_version": snapshot.version})

    for router in (
        check_router,
        directory_router,
        datasets_router,
        grants_router,
        changes_router,
        explain_router,
        exposure_router,
        reports_router,
        holds_router,
        approvals_router,
        accesslog_router,
        alerts_router,
        plans_router,
        casbin_router,
        auth_router,
        me_router,
        operations_router,
        scim.discovery_router,
        scim.router,
    ):
        app.include_router(router)
    return app
