"""The discovery endpoints (RFC 7644 §4): ServiceProviderConfig, ResourceTypes, Schemas, as
scim2-models describes them from the models the service serves."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from scim2_models import Context, ListResponse, Meta, NotFoundException, ResourceType, Schema

from app.auth.dependencies import AuthorizedFirst, ScimCaller
from app.identity.scim.protocol import BASE, CONFIG, PROVIDER, response

router = APIRouter(prefix=BASE, route_class=AuthorizedFirst, tags=["scim"])
SchemaList = ListResponse[Schema]
ResourceTypeList = ListResponse[ResourceType]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


def _schema(schema: Schema, base: str) -> Schema:
    copy = schema.model_copy()
    copy.meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
    return copy


def _resource_type(resource_type: ResourceType, base: str) -> ResourceType:
    copy = resource_type.model_copy()
    copy.meta = Meta(
        resource_type="ResourceType", location=f"{base}/ResourceTypes/{resource_type.id}"
    )
    return copy


def _dump(item: Any) -> dict[str, Any]:
    body: dict[str, Any] = item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return body


@router.get("/ServiceProviderConfig", summary="SCIM: what this service supports")
async def service_provider_config(request: Request, _: ScimCaller) -> JSONResponse:
    config = CONFIG.model_copy()
    config.meta = Meta(
        resource_type="ServiceProviderConfig",
        location=f"{_base(request)}/ServiceProviderConfig",
    )
    return response(_dump(config))


@router.get("/ResourceTypes", summary="SCIM: the resource types served")
async def resource_types(request: Request, _: ScimCaller) -> JSONResponse:
    items = [_resource_type(rt, _base(request)) for rt in PROVIDER.resource_types]
    listed = ResourceTypeList(
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return response(listed.model_dump(scim_ctx=Context.SEARCH_RESPONSE))


@router.get("/ResourceTypes/{resource_type_id}", summary="SCIM: one resource type")
async def resource_type(request: Request, resource_type_id: str, _: ScimCaller) -> JSONResponse:
    for item in PROVIDER.resource_types:
        if item.id == resource_type_id:
            return response(_dump(_resource_type(item, _base(request))))
    raise NotFoundException(detail=f"no resource type {resource_type_id!r}")


@router.get("/Schemas", summary="SCIM: the schemas of the resources served")
async def schemas(request: Request, _: ScimCaller) -> JSONResponse:
    items = [_schema(schema, _base(request)) for schema in PROVIDER.schemas]
    listed = SchemaList(
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return response(listed.model_dump(scim_ctx=Context.SEARCH_RESPONSE))


@router.get("/Schemas/{schema_id}", summary="SCIM: one schema")
async def schema(request: Request, schema_id: str, _: ScimCaller) -> JSONResponse:
    for item in PROVIDER.schemas:
        if item.id == schema_id:
            return response(_dump(_schema(item, _base(request))))
    raise NotFoundException(detail=f"no schema {schema_id!r}")
