"""SCIM errors as responses: scim2-models' exceptions, and the app's own errors and the
framework's (401, 403, 404, 405, 409, 413, 422, 503 ...) under /scim/, as RFC 7644 §3.12 Error
messages in `application/scim+json`."""

from typing import Any

from fastapi.responses import JSONResponse
from scim2_models import SCIMException

from app.errors import SCIM_JSON, scim_error


def exception_response(exc: SCIMException) -> JSONResponse:
    body = exc.to_error().model_dump()
    return JSONResponse(body, status_code=exc.status, media_type=SCIM_JSON)


# A problem's status as SCIM answers it: a request SCIM cannot accept is a 400 (a 422 is the
# app's "invalid field"), with the scimType that says why.
STATUS = {422: 400}
SCIM_TYPE = {422: "invalidValue"}


def problem_response(
    problem: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    status = STATUS.get(problem["status"], problem["status"])
    error = scim_error({**problem, "status": status}, SCIM_TYPE.get(problem["status"]))
    return JSONResponse(error, status_code=status, media_type=SCIM_JSON, headers=headers)
