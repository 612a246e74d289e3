"""Accepting the exposure a policy change opens: the body field and the DELETE query form.

Grants, memberships, datasets, plans and findings all take it, so it lives outside them.

On a `block`-guarded dataset an acceptance is two-person control: one given directly is
refused (`ApprovalRequired`, 403); only an approved request (`app.approvals`) carries one that
counts there (`approved`). On `alert`-guarded datasets a direct acceptance stays valid.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from app.db import utcnow
from app.errors import Forbidden, InvalidInput
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
    # Set only by `app.approvals` applying an approved request: never from a request body.
    _approval_id: int | None = PrivateAttr(default=None)
    _approved_by: str | None = PrivateAttr(default=None)

    @property
    def approval_id(self) -> int | None:
        return self._approval_id

    @property
    def is_approved(self) -> bool:
        return self._approval_id is not None

    def accepted_by(self, actor: str) -> str:
        """Who accepts: the approver of an approved request, else the change's actor."""
        return self._approved_by or actor

    def approved(self, approval_id: int, by: str) -> "AcceptExposure":
        """This acceptance as approval `approval_id`, approved by `by`, grants it: valid on
        block datasets."""
        copy = self.model_copy()
        copy._approval_id, copy._approved_by = approval_id, by
        return copy


class ApprovalRequired(Forbidden):
    """An acceptance (or a change) on a `block`-guarded dataset made without an approval."""

    slug = "approval-required"
    title = "Two-person approval required"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(
            f"{detail}. Request it with POST /v1/approvals {{change, reason, until}}: a second "
            "principal with policy:write approves it, and it is applied with the acceptance",
            approvals="/v1/approvals",
            **extra,
        )


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
