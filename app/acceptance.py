"""Accepting the exposure a policy change opens: the body field and the DELETE query form.

Grants, memberships, datasets, plans and findings all take it, so it lives outside them.
"""

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from app.db import utcnow
from app.errors import InvalidInput
from app.identifiers import FreeText, UTCInstant


def _in_the_future(value: datetime) -> datetime:
    if value <= utcnow():
        raise ValueError("must be in the future")
    return value


class AcceptExposure(BaseModel):
    """Knowingly accept the exposure a change opens, until a date (then it reopens)."""

    model_config = ConfigDict(extra="forbid")

    reason: FreeText = Field(min_length=1, max_length=2000)
    until: Annotated[UTCInstant, AfterValidator(_in_the_future)]


def accept_exposure_query(
    accept_reason: Annotated[
        FreeText | None,
        Query(
            min_length=1,
            max_length=2000,
            description="With `accept_until`: accept the exposure a removal opens (removing a "
            "deny widens access) on a block-guarded dataset.",
        ),
    ] = None,
    accept_until: Annotated[UTCInstant | None, Query()] = None,
) -> AcceptExposure | None:
    """`accept_exposure` for DELETE requests, which carry no body."""
    if accept_reason is None and accept_until is None:
        return None
    if accept_reason is None:
        raise InvalidInput("query.accept_reason", "required with accept_until")
    if accept_until is None:
        raise InvalidInput("query.accept_until", "required with accept_reason")
    try:
        return AcceptExposure(reason=accept_reason, until=accept_until)
    except ValidationError:
        raise InvalidInput("query.accept_until", "must be in the future") from None


AcceptQuery = Annotated[AcceptExposure | None, Depends(accept_exposure_query)]
