from typing import Annotated

from fastapi import Query

from app.identifiers import UTCInstant

At = Annotated[
    UTCInstant | None,
    Query(
        description="Answer as of this RFC 3339 instant (with its offset), from the policy's "
        "history; not in the future (422). Before any history the policy was empty. "
        "Omitted: now."
    ),
]
