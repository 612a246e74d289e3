from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class AlertType(StrEnum):
    finding_opened = "finding.opened"
    finding_resolved = "finding.resolved"
    finding_accepted = "finding.accepted"
    finding_reopened = "finding.reopened"
    read_out_of_audience = "read.out_of_audience"
    log_integrity_failed = "log.integrity_failed"
    grant_expired = "grant.expired"
    dataset_guard_changed = "dataset.guard_changed"
    access_held = "access.held"
    access_released = "access.released"
    approval_requested = "approval.requested"
    approval_approved = "approval.approved"
    approval_rejected = "approval.rejected"
    audience_grown = "audience.grown"
    break_glass_used = "break_glass.used"


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: AlertType
    severity: str
    at: datetime
    summary: str
    dataset: str | None
    finding_id: int | None
    access_log_id: int | None
    # A read.out_of_audience alert stands for every read of the dataset by that principal from
    # outside its audience until `window_end` (ACLAUDIT_READ_ALERT_WINDOW_SECONDS): `count`
    # says how many so far. Every other alert stands for one event.
    count: int = 1
    window_end: datetime | None = None


class AlertFeed(BaseModel):
    items: list[AlertRead]
    last_id: int
