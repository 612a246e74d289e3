from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.acceptance import AcceptExposure
from app.identifiers import (
    ANY_PURPOSE,
    Action,
    Effect,
    FreeText,
    PrincipalId,
    PurposeId,
    ResourcePattern,
    UTCInstant,
)

MAX_PURPOSES = 32
GrantId = Annotated[int, Path(ge=1, le=2**62, description="Grant id.")]


class GrantStatus(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: PrincipalId
    resource: ResourcePattern
    action: Action
    effect: Effect = Field(description="`allow` or `deny`: required, never assumed.")
    purposes: list[PurposeId] = Field(
        default_factory=lambda: [ANY_PURPOSE],
        min_length=1,
        max_length=MAX_PURPOSES,
        description="What the grant allows (or denies) reading for: checks naming one of these "
        'purposes match it; `["*"]` (the default) matches any purpose, and checks naming none.',
        examples=[["model-training"]],
    )
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
        description="Open the findings this grant causes as accepted. On a `guard: block` "
        "dataset accepting takes two people: given here it is refused (403); request the grant "
        "with `POST /v1/approvals` instead.",
    )

    @field_validator("purposes")
    @classmethod
    def distinct_purposes(cls, value: list[str]) -> list[str]:
        value = list(dict.fromkeys(value))
        if ANY_PURPOSE in value and len(value) > 1:
            raise ValueError('"*" already means any purpose: give it alone, or name the purposes')
        return value


class GrantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    principal: str
    resource: str
    action: Action
    effect: Effect
    purposes: list[str] = Field(default_factory=lambda: [ANY_PURPOSE])
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


class ReasonCode(StrEnum):
    """Why a check was decided so: `granted` (an allow matched), `no_grant` (nothing matched),
    `denied_by_grant` (a deny matched), `unknown_dataset` (not registered), `grant_expired` (only
    an expired allow matched), `held_by_guard` (a hold: a membership the guard held back),
    `principal_inactive` (the IdP deactivated the user), `purpose_required` (the dataset requires
    a purpose and the check named none), `purpose_not_granted` (no live grant allows the check's
    purpose, though one allows another purpose)."""

    granted = "granted"
    no_grant = "no_grant"
    denied_by_grant = "denied_by_grant"
    unknown_dataset = "unknown_dataset"
    grant_expired = "grant_expired"
    held_by_guard = "held_by_guard"  # a hold: an IdP membership the guard held back
    principal_inactive = "principal_inactive"  # the IdP deactivated or deleted the user
    # The dataset requires a purpose (`purpose_required`) and the check named none.
    purpose_required = "purpose_required"
    # No live grant allows the check's purpose (or its lack of one), though one allows another.
    purpose_not_granted = "purpose_not_granted"


class Reason(BaseModel):
    code: ReasonCode
    grant_id: int | None = None
    via: list[str] = Field(
        default_factory=list,
        description="Membership path from the principal to the grant's subject.",
    )
