from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class HoldKind(StrEnum):
    guard = "guard"  # an IdP membership would have widened a block-guarded dataset
    inactive = "inactive"  # a deactivated or deleted SCIM user


class HoldStatus(StrEnum):
    active = "active"
    released = "released"
    all = "all"


class HoldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: HoldKind
    principal: str
    dataset: str  # "*" for an inactive hold
    group_id: str | None
    created_at: datetime
    created_by: str
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None


class HoldPage(BaseModel):
    items: list[HoldRead]
    next_cursor: str | None
