"""The SCIM 2.0 protocol as this service speaks it: the resource models (scim2-models), what the
service announces (ServiceProviderConfig, ResourceTypes, Schemas), the tolerances for what Okta
and Entra ID send, and reading requests and writing responses as `application/scim+json`.

Every generic of scim2-models is parametrised once, here, at module level: the first
parametrisation inside a multi-line expression crashes pydantic's docstring extraction.
"""

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    Error,
    ETag,
    Filter,
    Group,
    InvalidFilterException,
    InvalidSyntaxException,
    InvalidValueException,
    ListResponse,
    Patch,
    PatchOp,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    User,
)

from app.errors import SCIM_JSON

BASE = "/scim/v2"
MAX_RESULTS = 200  # a list's `count` is capped here (announced as filter.maxResults)
# A filter compares at most this many times (each comparison a subquery or a SQL term; an IdP
# sends one or two). Counted before the filter is parsed: 40,000 take seconds to parse.
MAX_FILTER_TERMS = 200

UserModel = User[EnterpriseUser]
UserPatch = PatchOp[UserModel]
UserSearch = SearchRequest[UserModel]
UserParams = ResponseParameters[UserModel]
UserList = ListResponse[UserModel]
GroupPatch = PatchOp[Group]
GroupSearch = SearchRequest[Group]
GroupParams = ResponseParameters[Group]
GroupList = ListResponse[Group]

CONFIG = ServiceProviderConfig(
    documentation_uri=None,
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=False),
    etag=ETag(supported=False),
    authentication_schemes=[
        AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="OAuth Bearer Token",
            description="A token with the scim scope: `aclaudit scim token --name <idp>`",
            primary=True,
        )
    ],
)
PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[ResourceType.from_resource(UserModel), ResourceType.from_resource(Group)],
    config=CONFIG,
    # What the common IdPs send that the strict RFC reading refuses: Entra's legacy member
    # removal ({"op": "Remove", "path": "members", "value": [{"value": id}]}), and its replace
    # of emails[type eq "work"].value on a user without a work address.
    policy=ScimPolicy(
        remove_value_as_filter=ScimPolicy.RemoveValue.apply,
        unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    ),
)
POLICY = PROVIDER.policy

M = TypeVar("M")


# Requests whose body must say what it is (RFC 7643 §3, RFC 7644 §3.5.2: "schemas" REQUIRED).
WITH_SCHEMAS = frozenset(
    {
        Context.RESOURCE_CREATION_REQUEST,
        Context.RESOURCE_REPLACEMENT_REQUEST,
        Context.RESOURCE_PATCH_REQUEST,
    }
)


def validate(model: type[M], payload: Any, ctx: Context) -> M:
    """`payload` as `model` in the request context `ctx`, or the SCIM error saying why."""
    if ctx in WITH_SCHEMAS and not any(str(key).lower() == "schemas" for key in payload):
        raise InvalidSyntaxException(detail="the body has no schemas: name its schema URIs")
    nul = _with_nul(payload)
    if nul is not None:
        raise InvalidValueException(
            detail=f"{nul!r} contains a NUL character (U+0000), which is never kept"
        )
    if ctx == Context.SEARCH_REQUEST:
        for key, value in payload.items():
            if str(key).lower() == "filter" and isinstance(value, str):
                _check_filter_size(value)
    try:
        return model.model_validate(  # type: ignore[attr-defined, no-any-return]
            payload, scim_ctx=ctx, scim_provider=PROVIDER, scim_policy=POLICY
        )
    except ValidationError as exc:
        raise SCIMException.from_error(Error.from_validation_errors(exc)[0]) from None


def _with_nul(payload: Any) -> str | None:
    """Where the first string or key containing U+0000 is in `payload` (`members[0].display`;
    "" for the payload itself), or None: no database keeps it in a string (PostgreSQL refuses
    it). Iterative: a body nests as deep as the JSON parser allowed."""
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return where
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                name = f"{where}.{key}" if where else str(key)
                if "\x00" in str(key):
                    return name
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_OPERATOR = re.compile(r"(?<![\w.:$-])(?:eq|ne|co|sw|ew|gt|ge|lt|le|pr)(?![\w.:$-])", re.I)


def _check_filter_size(text: str) -> None:
    """A 400 for a filter of more than MAX_FILTER_TERMS comparisons, counted by their operators
    outside string literals (before parsing)."""
    terms = len(_OPERATOR.findall(_QUOTED.sub('""', text)))
    if terms > MAX_FILTER_TERMS:
        raise InvalidFilterException(
            detail=f"the filter has {terms} comparisons: at most {MAX_FILTER_TERMS} are "
            "accepted (search in several requests)"
        )


async def read_body(request: Request) -> Any:
    """The request's JSON body (`application/scim+json` or `application/json`)."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidSyntaxException(detail="the request has no body; send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidSyntaxException(detail="the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="the request body must be a JSON object")
    return _without_null_unknowns(body)


def _without_null_unknowns(body: dict[str, Any]) -> dict[str, Any]:
    """Entra ID's documented bodies carry root-level `"department": null, "manager": null`:
    null means unassigned (RFC 7643 §2.5), so a null is dropped before validation and an
    unknown attribute with a value is still a 400."""
    return {key: value for key, value in body.items() if value is not None}


RESPONSE_PARAMETERS = ("attributes", "excludedAttributes")
SEARCH_PARAMETERS = (*RESPONSE_PARAMETERS, "filter", "startIndex", "count", "sortBy", "sortOrder")


def query_params(request: Request, names: tuple[str, ...] = SEARCH_PARAMETERS) -> dict[str, str]:
    """The SCIM parameters of the query string (names as RFC 7644 spells them, any case).
    Others are ignored: Entra ID's feature flags ride on the tenant URL (`?aadOptscim062020`)
    and come with every request."""
    wanted = {name.lower(): name for name in names}
    return {
        wanted[key.lower()]: value
        for key, value in request.query_params.items()
        if key.lower() in wanted
    }


def response(
    body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


def location(request: Request, endpoint: str, resource_id: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}{BASE}/{endpoint}/{resource_id}"
