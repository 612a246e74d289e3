"""``?limit=`` and ``?cursor=`` as SPEC defines them for every list."""

from typing import Annotated

from fastapi import Query

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=600,
        pattern=r"^[\x21-\x7e]*$",  # cursors are printable ASCII; NUL would reach the database
        description="The `next_cursor` of the previous page.",
    ),
]
IdCursor = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**62,  # larger values overflow the database's 64-bit integers (500 on SQLite)
        description="The `next_cursor` of the previous page.",
        alias="cursor",
    ),
]
