from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.identifiers import Action, Effect, PrincipalId, ResourcePattern


class GrantStatus(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: PrincipalId
    resource: ResourcePattern
    action: Action
    effect: Effect = Effect.allow
    expires_at: AwareDatetime | None = Field(
        default=None, description="The grant stops matching at this instant (timezone required)."
    )
    justification: str | None = Field(
        default=None,
        max_length=2000,
        description="Required for allow grants that reach a confidential or restricted dataset.",
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
    status: GrantStatus
    policy_version: int | None = Field(
        default=None, description="Set on mutations: the policy version this change produced."
    )


class GrantPage(BaseModel):
    items: list[GrantRead]
    next_cursor: str | None
