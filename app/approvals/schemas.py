from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.acceptance import AcceptExposure
from app.exposure.schemas import FindingRead
from app.identifiers import Action, DatasetId, FreeText, LeafPrincipalId, PurposeId


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    expired = "expired"  # pending past its expiry (ACLAUDIT_APPROVAL_TTL_SECONDS)


class ChangeKind(StrEnum):
    grant_create = "grant.create"
    grant_revoke = "grant.revoke"
    member_add = "members.add"
    members_replace = "members.replace"
    member_remove = "members.remove"
    dataset_put = "dataset.put"
    finding_accept = "finding.accept"
    hold_release = "hold.release"
    policy_apply = "policy.apply"


class ChangeRequest(BaseModel):
    """A change as it would be sent to its own endpoint, without `accept_exposure`: the
    approval's `reason` and `until` are its acceptance."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["POST", "PUT", "DELETE"]
    path: str = Field(min_length=1, max_length=1100, examples=["/v1/grants"])
    body: dict[str, Any] = Field(default_factory=dict)


class ApprovalCreate(AcceptExposure):
    """The change, and the acceptance (`reason`, `until`) it is to be applied with."""

    change: ChangeRequest


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: FreeText | None = Field(default=None, max_length=2000)


class ApprovalRead(BaseModel):
    id: int
    status: ApprovalStatus
    kind: ChangeKind
    change: ChangeRequest
    reason: str
    until: datetime
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    would_open: list[FindingRead] = Field(
        description="The findings the change would open (accepted with the approval), as "
        "computed when it was requested."
    )
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    result: dict[str, Any] | None = Field(
        description="What the change's own endpoint answered when the approval applied it."
    )


class ApprovalPage(BaseModel):
    items: list[ApprovalRead]
    next_cursor: str | None


Minutes = Annotated[int, Field(ge=1, le=240)]


class BreakGlassCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: LeafPrincipalId
    dataset: DatasetId
    # The one purpose the access is for (the grant allows only it).
    purpose: PurposeId
    reason: FreeText = Field(min_length=1, max_length=2000)
    minutes: Minutes


class BreakGlassRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    principal: str
    dataset: str
    action: Action = Action.read
    purpose: str
    reason: str
    minutes: int
    used_by: str
    used_at: datetime
    expires_at: datetime
    grant_id: int
    finding_id: int
    hold_id: int | None = Field(
        description="The guard hold set aside for the window (restored when it closes)."
    )
    restored_hold_id: int | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None


class BreakGlassReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: FreeText = Field(min_length=1, max_length=2000)


class BreakGlassPage(BaseModel):
    items: list[BreakGlassRead]
    next_cursor: str | None
