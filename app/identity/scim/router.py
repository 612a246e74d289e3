"""The SCIM resource endpoints (HTTP only): /scim/v2/Users and /scim/v2/Groups.

Bodies are read and validated by hand (`protocol.read_body`, scim2-models), so that every
refusal is a SCIM error document; the OpenAPI document names their schemas.
"""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from scim2_models import Context, Group, NotImplementedException, ResponseParameters
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import AuthorizedFirst, ScimCaller
from app.auth.service import Caller
from app.db import ReadSessionDep, SessionDep
from app.errors import SCIM_JSON
from app.identity.group_commit import GroupCommit
from app.identity.scim import groups, users
from app.identity.scim.protocol import (
    BASE,
    RESPONSE_PARAMETERS,
    GroupParams,
    GroupPatch,
    GroupSearch,
    UserModel,
    UserParams,
    UserPatch,
    UserSearch,
    query_params,
    read_body,
    response,
    validate,
)

router = APIRouter(prefix=BASE, route_class=AuthorizedFirst, tags=["scim"])


def _inlined(node: Any, defs: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """`node` with its `#/$defs/...` references replaced by what they name (the OpenAPI
    document has no `$defs` at its root for them to point to)."""
    if isinstance(node, list):
        return [_inlined(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:  # a recursive model: left open
            return {}
        return _inlined(defs[name], defs, seen | {name})
    return {key: _inlined(value, defs, seen) for key, value in node.items() if key != "$defs"}


def _body(model: Any) -> dict[str, Any]:
    full = model.model_json_schema()
    schema = _inlined(full, full.get("$defs", {}))
    return {
        "requestBody": {
            "required": True,
            "content": {SCIM_JSON: {"schema": schema}, "application/json": {"schema": schema}},
        }
    }


def _actor(caller: Caller) -> str:
    """Who made a change, in the policy's history: the IdP's token, as `scim:<name>`."""
    return f"scim:{caller.name}"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


def _params(request: Request, model: Any) -> Any:
    params = query_params(request, RESPONSE_PARAMETERS)
    return validate(model, params, Context.RESOURCE_QUERY_REQUEST)


def _shown(
    resource: Any, ctx: Context, params: ResponseParameters[Any] | None, status: int = 200
) -> JSONResponse:
    body = resource.model_dump(scim_ctx=ctx, response_parameters=params)
    headers = {"Location": resource.meta.location} if status == 201 else None
    return response(body, status, headers)


# -- Users -------------------------------------------------------------------------------------


@router.get("/Users", summary="SCIM: list or filter users")
async def list_users(request: Request, session: SessionDep, _: ScimCaller) -> JSONResponse:
    search = validate(UserSearch, query_params(request), Context.SEARCH_REQUEST)
    found = await users.list_users(session, search, _base(request))
    return response(found.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search))


@router.post("/Users/.search", summary="SCIM: search users", openapi_extra=_body(UserSearch))
async def search_users(request: Request, session: ReadSessionDep, _: ScimCaller) -> JSONResponse:
    search = validate(UserSearch, await read_body(request), Context.SEARCH_REQUEST)
    found = await users.list_users(session, search, _base(request))
    return response(found.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search))


@router.post(
    "/Users", summary="SCIM: create a user", status_code=201, openapi_extra=_body(UserModel)
)
async def create_user(request: Request, caller: ScimCaller, status: Response) -> JSONResponse:
    params = _params(request, UserParams)
    user = users.creation(await read_body(request))
    base, actor = _base(request), _actor(caller)

    async def work(session: AsyncSession) -> UserModel:
        return await users.create_user(session, user, base, actor=actor)

    # Creates queued behind this worker's other creates commit together.
    commit: GroupCommit = request.app.state.create_commit
    created = await commit.run(actor, request, status, work, savepoint=False)
    return _shown(created, Context.RESOURCE_CREATION_RESPONSE, params, 201)


@router.get("/Users/{user_id}", summary="SCIM: one user")
async def get_user(
    request: Request, user_id: str, session: SessionDep, _: ScimCaller
) -> JSONResponse:
    params = _params(request, UserParams)
    user = await users.get_user(session, user_id, _base(request))
    return _shown(user, Context.RESOURCE_QUERY_RESPONSE, params)


@router.put("/Users/{user_id}", summary="SCIM: replace a user", openapi_extra=_body(UserModel))
async def replace_user(
    request: Request, user_id: str, session: SessionDep, caller: ScimCaller
) -> JSONResponse:
    params = _params(request, UserParams)
    user = await users.replace_user(
        session, user_id, await read_body(request), _base(request), actor=_actor(caller)
    )
    return _shown(user, Context.RESOURCE_REPLACEMENT_RESPONSE, params)


@router.patch("/Users/{user_id}", summary="SCIM: modify a user", openapi_extra=_body(UserPatch))
async def patch_user(
    request: Request, user_id: str, session: SessionDep, caller: ScimCaller
) -> JSONResponse:
    params = _params(request, UserParams)
    user = await users.patch_user(
        session, user_id, await read_body(request), _base(request), actor=_actor(caller)
    )
    return _shown(user, Context.RESOURCE_PATCH_RESPONSE, params)


@router.delete("/Users/{user_id}", summary="SCIM: delete a user", status_code=204)
async def delete_user(user_id: str, session: SessionDep, caller: ScimCaller) -> Response:
    await users.delete_user(session, user_id, actor=_actor(caller))
    return Response(status_code=204)


# -- Groups ------------------------------------------------------------------------------------


@router.get("/Groups", summary="SCIM: list or filter groups")
async def list_groups(request: Request, session: SessionDep, _: ScimCaller) -> JSONResponse:
    search = validate(GroupSearch, query_params(request), Context.SEARCH_REQUEST)
    found = await groups.list_groups(session, search, _base(request))
    return response(found.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search))


@router.post("/Groups/.search", summary="SCIM: search groups", openapi_extra=_body(GroupSearch))
async def search_groups(request: Request, session: ReadSessionDep, _: ScimCaller) -> JSONResponse:
    search = validate(GroupSearch, await read_body(request), Context.SEARCH_REQUEST)
    found = await groups.list_groups(session, search, _base(request))
    return response(found.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search))


@router.post("/Groups", summary="SCIM: create a group", status_code=201, openapi_extra=_body(Group))
async def create_group(request: Request, caller: ScimCaller, status: Response) -> JSONResponse:
    params = _params(request, GroupParams)
    group = groups.creation(await read_body(request))
    base, actor = _base(request), _actor(caller)

    async def work(session: AsyncSession) -> Group:
        return await groups.create_group(session, group, base, actor=actor)

    # Creates queued behind this worker's other creates commit together (one with members is a
    # policy change, and takes the policy lock in its batch).
    commit: GroupCommit = request.app.state.create_commit
    created = await commit.run(actor, request, status, work)
    return _shown(created, Context.RESOURCE_CREATION_RESPONSE, params, 201)


@router.get("/Groups/{group_id}", summary="SCIM: one group")
async def get_group(
    request: Request, group_id: str, session: SessionDep, _: ScimCaller
) -> JSONResponse:
    params = _params(request, GroupParams)
    group = await groups.get_group(session, group_id, _base(request), params)
    return _shown(group, Context.RESOURCE_QUERY_RESPONSE, params)


@router.put("/Groups/{group_id}", summary="SCIM: replace a group", openapi_extra=_body(Group))
async def replace_group(
    request: Request, group_id: str, session: SessionDep, caller: ScimCaller
) -> JSONResponse:
    params = _params(request, GroupParams)
    group = await groups.replace_group(
        session, group_id, await read_body(request), _base(request), actor=_actor(caller)
    )
    return _shown(group, Context.RESOURCE_REPLACEMENT_RESPONSE, params)


@router.patch(
    "/Groups/{group_id}",
    summary="SCIM: modify a group (204, or 200 with the attributes asked for)",
    openapi_extra=_body(GroupPatch),
)
async def patch_group(
    request: Request, group_id: str, caller: ScimCaller, status: Response
) -> Response:
    # RFC 7644 §3.5.2: 200 with the resource when `attributes` is given, else 204 here (Entra
    # advises against a body listing every member)
    params = _params(request, GroupParams) if query_params(request, RESPONSE_PARAMETERS) else None
    body, base, actor = await read_body(request), _base(request), _actor(caller)

    async def work(session: AsyncSession) -> Group | None:
        group = await groups.patch_group(session, group_id, body, base, params, actor=actor)
        status.status_code = 200 if group else 204  # (what the admin trail records)
        return group

    # Pushes queued behind this worker's other policy changes commit together.
    commit: GroupCommit = request.app.state.group_commit
    group = await commit.run(actor, request, status, work)
    if group is None:
        return Response(status_code=204)
    return _shown(group, Context.RESOURCE_PATCH_RESPONSE, params)


@router.delete("/Groups/{group_id}", summary="SCIM: delete a group", status_code=204)
async def delete_group(group_id: str, session: SessionDep, caller: ScimCaller) -> Response:
    await groups.delete_group(session, group_id, actor=_actor(caller))
    return Response(status_code=204)


@router.post(
    "/.search",
    summary="SCIM: search across resource types (not supported)",
    include_in_schema=False,  # a documented 501 is a server error to a fuzzer
)
async def search_everything(_: ScimCaller) -> Response:
    raise NotImplementedException(
        detail="searching across resource types is not supported: use /Users/.search or "
        "/Groups/.search"
    )
