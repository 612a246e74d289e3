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
    reason: dict[str, Any] = Field(
        description="As `/v1/check` answered it: code (ReasonCode: `granted`, `no_grant`, "
        "`denied_by_grant`, `unknown_dataset`, `grant_expired`, `held_by_guard`, "
        "`principal_inactive`, `purpose_required`, `purpose_not_granted`), grant_id, via."
    )
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
    archived_through: int | None = Field(
        default=None,
        description="On the last page: entries up to this id were archived (`aclaudit log "
        "archive`) and are not listed; GET /v1/access-log/{id} names an entry's segment.",
    )


class ArchivedPrefix(BaseModel):
    """Entries `first_id..last_id` were moved out of the database into sealed segments by
    ``aclaudit log archive``: read from their recorded manifests, not verified here (each
    segment's last hash must be the database's checkpoint there; ``aclaudit log verify
    --archive DIR`` verifies the segments themselves)."""

    segments: int
    first_id: int
    last_id: int
    entries: int
    last_hash: str = Field(description="The newest segment's last hash: the chain resumes here.")
    newest_segment: str


class ChainVerifyResult(BaseModel):
    """One hash chain's verification."""

    chain: str = Field(description="access_log, admin_trail or alerts.")
    ok: bool
    entries: int = Field(
        description="access_log: entries up to the head, as the top level; other chains: "
        "rows verified in this run (after resumed_from, when resumed)."
    )
    head_id: int | None = None
    head: str | None = Field(default=None, description="Hash of the newest row.")
    head_signed: bool = Field(
        default=False, description="The head's signature was checked against the key."
    )
    resumed_from: int | None = Field(
        default=None,
        description="Rows up to this id were verified by an earlier verify in this process "
        "and were trusted, not read again (ask ?full=true for a full run).",
    )
    first_bad_id: int | None = None
    problem: str | None = None
    archived: ArchivedPrefix | None = Field(
        default=None, description="access_log: the archived prefix, if any."
    )


class VerifyResult(BaseModel):
    """The access log's verification (top-level fields) and every chain's (`chains`): `ok`
    only when all of them are; `problem` names the failing chain."""

    ok: bool
    entries: int = Field(description="Entries checked (the whole chain when ok).")
    head: str | None = Field(default=None, description="Hash of the newest entry.")
    checkpoints: int = 0
    signed_checkpoints: bool = False
    first_bad_id: int | None = Field(
        default=None, description="The access log's first bad entry (null: the log is intact)."
    )
    problem: str | None = None
    resumed_from: int | None = Field(
        default=None,
        description="Entries up to this id were verified earlier in this process and trusted.",
    )
    archived: ArchivedPrefix | None = Field(
        default=None,
        description="The prefix moved to archive segments: `entries` counts it, verify "
        "checks the rest of the chain from its last hash.",
    )
    chains: list[ChainVerifyResult] = Field(default_factory=list)


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


class Decided(BaseModel):
    decision: str = Field(description="`allow` or `deny`.")
    reason: dict[str, Any] = Field(
        description="As `/v1/check` answers it: code (see ReasonCode: e.g. `purpose_required`, "
        "`purpose_not_granted`), grant_id, via."
    )
    out_of_audience: bool


class ReplayRead(BaseModel):
    """An entry's decision as recorded, and as the policy of its version decides its request
    again (at its own instant, for expiries)."""

    id: int
    at: datetime
    policy_version: int
    recorded: Decided
    replayed: Decided
    matches: bool = Field(
        description="The replayed decision, reason and audience flag equal the recorded ones."
    )
