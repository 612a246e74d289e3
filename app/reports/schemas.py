"""The incident report as the API answers it (`GET /v1/reports/exposure`); the Markdown and
HTML renderings are made from this model."""

from datetime import datetime

from pydantic import BaseModel, Field


class PolicyChangeRead(BaseModel):
    """A change that opened or closed an exposure window.

    `kind`: grant_added, grant_revoked, grant_expired, member_added, member_removed,
    audience_set, dataset_unregistered, hold_placed, hold_released."""

    kind: str
    version: int | None = Field(description="The policy version (null: an expiry).")
    at: datetime
    by: str | None = Field(description="Who made it (the token or person), where recorded.")
    grant_id: int | None = None
    principal: str | None = Field(default=None, description="The grant's or hold's subject.")
    resource: str | None = None
    effect: str | None = None
    member: str | None = None
    group: str | None = None
    hold_id: int | None = None
    audience: list[str] | None = None


class WindowRead(BaseModel):
    """A span in which the dataset was readable beyond its intended audience."""

    start: datetime
    end: datetime | None = Field(description="Null: still open at the report's `until`.")
    open_at_since: bool = Field(
        description="Already open when the period began: what opened it is before `since`."
    )
    peak_excess: int
    peak_at: datetime
    opened_by: list[PolicyChangeRead]
    closed_by: list[PolicyChangeRead]


class CouldRead(BaseModel):
    principal: str
    first_exposed_at: datetime = Field(
        description="The first instant of the period it could read the dataset beyond its audience."
    )
    at_until: bool = Field(description="Still could at `until`.")


class WhoCould(BaseModel):
    """Principals beyond the audience (excess); counts at `until` as `exposure?at=until`."""

    effective_at_until: int
    intended_at_until: int
    excess_at_until: int
    peak_excess: int
    peak_at: datetime | None
    ever_excess: int = Field(description="Principals beyond the audience at any point.")
    principals: list[CouldRead] = Field(
        description="A page of them, by principal (the report's `next_cursor` goes on)."
    )


class PurposeCount(BaseModel):
    purpose: str | None
    reads: int


class DidRead(BaseModel):
    principal: str
    reads: int = Field(description="Checks of the dataset in the period (allowed or not).")
    allowed: int
    out_of_audience: int = Field(description="Allowed reads from outside the audience.")
    first_at: datetime
    last_at: datetime
    purposes: list[PurposeCount]


class WhoDid(BaseModel):
    """From the access log in the database; archived entries are counted apart."""

    principals: list[DidRead]
    archived_out_of_audience_reads: int = Field(
        description="Out-of-audience reads of the dataset in archived segments overlapping "
        "the period (per segment, not per principal: the segments may reach before `since`)."
    )


class DatasetReport(BaseModel):
    dataset: str
    registered_at_until: bool
    windows: list[WindowRead]
    who_could: WhoCould
    who_did: WhoDid
    policy_versions_walked: int
    measurements: int


class CheckpointAnchor(BaseModel):
    entry_id: int
    head_hash: str
    at: datetime
    signature: str | None


class IntegrityRead(BaseModel):
    """The access log verified over the period: the chain recomputed from the checkpoint
    before the period's first entry through the checkpoint covering its last (or the head),
    and linked to the head (every checkpoint's and the head's signature, no checkpoint
    removed or beyond the head, every read alert's entry shown). Entries outside that range
    are not read: `GET /v1/access-log/verify` verifies the whole log."""

    ok: bool
    entries: int = Field(description="Entries recomputed (verified_after + 1 to verified_through).")
    head: str | None
    head_id: int | None = Field(description="The log's head entry, to which the range was linked.")
    head_signed: bool = Field(description="The head's signature was checked against the key.")
    first_bad_id: int | None
    problem: str | None
    verified_after: int | None = Field(
        description="The chain was recomputed from this entry's hash: the checkpoint before the "
        "period (the archived prefix's end, or 0: the genesis). Null: no entry recomputed."
    )
    verified_through: int | None = Field(
        description="... through this entry: the checkpoint covering the period's last entry, "
        "or the head. Null: no entry recomputed."
    )
    period_first_entry: int | None
    period_last_entry: int | None
    checkpoint_before: CheckpointAnchor | None = Field(
        description="The newest checkpoint before the period's first entry."
    )
    checkpoint_covering: CheckpointAnchor | None = Field(
        description="The oldest checkpoint covering the period's last entry (null: the "
        "period's tail is not under a checkpoint yet)."
    )
    signed_checkpoints: bool
    archived_through: int | None = Field(
        description="Entries up to this id were archived out of the database "
        "(`aclaudit log archive`): their reads are not in `who_did`."
    )
    archived_segments: list[str] = Field(description="Archived segments overlapping the period.")


class ExposureReport(BaseModel):
    pattern: str
    since: datetime
    until: datetime
    generated_at: datetime
    datasets: list[DatasetReport]
    integrity: IntegrityRead
    next_cursor: str | None = Field(
        description="More `who_could` principals: ask again with this cursor and the same "
        "`since` and `until`."
    )
