from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field


class AccessLogEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    decision_id: str
    at: datetime
    principal: str
    dataset: str
    action: str
    purpose: str | None
    decision: str
    reason: dict[str, Any]
    out_of_audience: bool
    data_subjects: list[str]
    request_id: str | None
    caller: str
    policy_version: int
    prev_hash: str
    hash: str


class AccessLogPage(BaseModel):
    items: list[AccessLogEntryRead]
    next_cursor: str | None


class VerifyResult(BaseModel):
    ok: bool
    entries: int = Field(description="Entries checked (the whole chain when ok).")
    head: str | None = Field(default=None, description="Hash of the newest entry.")
    checkpoints: int = 0
    signed_checkpoints: bool = False
    first_bad_id: int | None = None
    problem: str | None = None


class CheckpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    entry_id: int = Field(description="Entries 1..entry_id are covered.")
    head_hash: str
    at: datetime
    signature: str | None

    @computed_field(description="The checkpoint's own id: the entry id it covers up to.")
    def id(self) -> int:
        return self.entry_id


class CheckpointPage(BaseModel):
    items: list[CheckpointRead]
    next_cursor: str | None
