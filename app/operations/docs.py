"""The API's own documentation (`/openapi.json`, `/docs`, `/redoc`) behind a token.

The document lists every endpoint and field of an audit service; unless
``ACLAUDIT_OPEN_DOCS=true`` (for local use) it is served only to a caller with a valid token
of any scope. A browser sends no token, so closed docs are for clients that send one.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from app.auth.dependencies import AuthorizedFirst, current_caller
from app.auth.service import Caller

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"

router = APIRouter(route_class=AuthorizedFirst, include_in_schema=False)
AnyCaller = Annotated[Caller, Depends(current_caller)]


@router.get(OPENAPI_URL)
async def openapi(request: Request, _: AnyCaller) -> JSONResponse:
    document: dict[str, Any] = request.app.openapi()
    return JSONResponse(document)


@router.get(DOCS_URL)
async def swagger_ui(request: Request, _: AnyCaller) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title} - docs",
        init_oauth=request.app.swagger_ui_init_oauth,
    )


@router.get(REDOC_URL)
async def redoc(request: Request, _: AnyCaller) -> HTMLResponse:
    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - ReDoc")


OIDC_SCHEME = "OpenIdConnect"


def oidc_sign_in(client_id: str) -> dict[str, Any]:
    """Swagger UI's OAuth settings: sign in with the IdP (authorization code with PKCE)."""
    return {"clientId": client_id, "usePkceWithAuthorizationCodeGrant": True, "scopes": "openid"}


def install_oidc_scheme(app: FastAPI, discovery_url: str) -> None:
    """Add the OpenID Connect security scheme to the document, next to the bearer token on
    every operation that takes one, so staff can sign in from `/docs`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # cached by FastAPI after the first call
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        if OIDC_SCHEME not in schemes:
            schemes[OIDC_SCHEME] = {
                "type": "openIdConnect",
                "openIdConnectUrl": discovery_url,
                "description": "Sign in with the company's OpenID Connect provider.",
            }
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict) and operation.get("security"):
                        operation["security"] = [*operation["security"], {OIDC_SCHEME: []}]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def documentation_urls(*, is_open: bool) -> dict[str, Any]:
    """`FastAPI(...)` arguments: its own open routes, or none (`install` adds closed ones)."""
    if is_open:
        return {"openapi_url": OPENAPI_URL, "docs_url": DOCS_URL, "redoc_url": REDOC_URL}
    return {"openapi_url": None, "docs_url": None, "redoc_url": None}


def install(app: FastAPI, *, is_open: bool) -> None:
    if not is_open:
        app.include_router(router)
