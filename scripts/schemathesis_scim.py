"""Schemathesis hooks for the /scim/v2 run of scripts/schemathesis.sh (SCHEMATHESIS_HOOKS).

- `scim_error_document`: every refusal under /scim/ is a SCIM Error message (RFC 7644 §3.12):
  `application/scim+json`, `schemas` the Error URN, `status` the HTTP status as a string, a
  `detail`, and a `scimType` (when given) from RFC 7644's list or RFC 9865's.
- The fuzzed copy of the OpenAPI document says more than the service's own (whose bodies are
  scim2-models' lenient schemas, and whose routes read their query parameters by hand):
  the list and search parameters (RFC 7644 §3.4.2) on the GET of Users and Groups, so that
  filters, pages and attribute selections are generated; what a create or replace requires
  (`schemas`, and a `userName` or `displayName` that maps to a principal), so that resources
  do get created; and links from a create's `id` to the resource's GET, PUT, PATCH and
  DELETE, so that the stateful phase works on resources that exist.
"""

import json
from typing import Any

import schemathesis

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
# resource endpoint: (its id parameter, what a create or replace requires)
RESOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "/scim/v2/Users": (
        "user_id",
        {
            "schemas": {"enum": [[USER], [USER, ENTERPRISE]]},
            "userName": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,24}$"},
        },
    ),
    "/scim/v2/Groups": (
        "group_id",
        {
            "schemas": {"enum": [[GROUP]]},
            "displayName": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,24}$"},
        },
    ),
}
SCIM_JSON = "application/scim+json"
SCIM_TYPES = {
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
    "invalidCursor",  # RFC 9865 (cursor pagination): a cursor sent where none is offered
    "expiredCursor",
}
FILTERS = [
    'userName eq "alice"',
    'displayName eq "Eng" and externalId eq "x"',
    'members[value eq "1"]',
    'userName eq "a" or not (active eq true)',
    'name.givenName co "x"',
    "externalId pr",
]
LIST_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "filter",
        "in": "query",
        "schema": {"type": "string"},
        "examples": {f"f{i}": {"value": f} for i, f in enumerate(FILTERS)},
    },
    *(
        {"name": name, "in": "query", "schema": {"type": kind}}
        for name, kind in [
            ("startIndex", "integer"),
            ("count", "integer"),
            ("attributes", "string"),
            ("excludedAttributes", "string"),
            ("sortBy", "string"),
            ("sortOrder", "string"),
        ]
    ),
]


def _require(operation: dict[str, Any], required: dict[str, Any]) -> None:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        schema = media["schema"]
        schema["required"] = sorted(required)
        schema["properties"] = {**schema.get("properties", {}), **required}


def _link(paths: dict[str, Any], path: str, id_parameter: str) -> None:
    created = paths[path]["post"]["responses"].setdefault("201", {"description": "Created"})
    created["content"] = {
        "application/scim+json": {
            "schema": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            }
        }
    }
    one = paths.get(f"{path}/{{{id_parameter}}}", {})
    created["links"] = {
        f"{method}_{id_parameter}": {
            "operationId": operation["operationId"],
            "parameters": {id_parameter: "$response.body#/id"},
        }
        for method, operation in one.items()
        if isinstance(operation, dict) and "operationId" in operation
    }


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    paths = raw_schema.get("paths", {})
    for path, (id_parameter, required) in RESOURCES.items():
        if path not in paths:
            continue
        listing = paths[path]["get"]
        declared = {p.get("name") for p in listing.get("parameters", [])}
        added = [p for p in LIST_PARAMETERS if p["name"] not in declared]
        listing["parameters"] = [*listing.get("parameters", []), *added]
        _require(paths[path]["post"], required)
        _require(paths.get(f"{path}/{{{id_parameter}}}", {}).get("put", {}), required)
        _link(paths, path, id_parameter)


@schemathesis.check
def scim_error_document(ctx: Any, response: Any, case: Any) -> bool | None:
    """A refusal under /scim/ is a SCIM Error message."""
    if not case.path.startswith("/scim/") or response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.split(";")[0].strip() == SCIM_JSON, f"content-type {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert body.get("schemas") == [ERROR], body
    assert body.get("status") == str(response.status_code), body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert body.get("scimType") in (None, *SCIM_TYPES), body
    return None
