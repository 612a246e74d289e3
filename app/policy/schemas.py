from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from app.identifiers import Action, Effect, FreeText, PrincipalId, ResourcePattern


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past year 9999 in UTC
        raise ValueError("is out of range once converted to UTC") from None


UTCInstant = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class GrantStatus(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


class AcceptExposure(BaseModel):
    """Knowingly accept the exposure a change opens, until a date (then it reopens)."""

    model_config = ConfigDict(extra="forbid")

    reason: FreeText = Field(min_length=1, max_length=2000)
    until: AwareDatetime


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: PrincipalId
    resource: ResourcePattern
    action: Action
    effect: Effect = Effect.allow
    expires_at: UTCInstant | None = Field(
        default=None, description="The grant stops matching at this instant (timezone required)."
    )
    justification: FreeText | None = Field(
        default=None,
        max_length=2000,
        description="Required for allow grants that reach a confidential or restricted dataset.",
    )
    accept_exposure: AcceptExposure | None = Field(
        default=None,
        description="Open the findings this grant causes as accepted; required to widen access "
        "beyond the audience of a `guard: block` dataset.",
    )


class GrantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    principal: str
    resource: str
    action: Action
    effect: Effect
    expires_at: datetime | None
    justification: str | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    expired_at: datetime | None = Field(
        default=None,
        description="When the sweeper recorded the expiry (alert, re-analysis). The grant stops "
        "allowing at expires_at either way.",
    )
    status: GrantStatus
    policy_version: int | None = Field(
        default=None, description="Set on mutations: the policy version this change produced."
    )


class GrantPage(BaseModel):
    items: list[GrantRead]
    next_cursor: str | None
