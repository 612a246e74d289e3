"""``?limit=`` and ``?cursor=`` as SPEC defines them for every list."""

from typing import Annotated

from fastapi import Query

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(max_length=600, description="The `next_cursor` of the previous page."),
]
IdCursor = Annotated[
    int | None,
    Query(ge=0, description="The `next_cursor` of the previous page.", alias="cursor"),
]
