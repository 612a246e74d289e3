"""What the client returns: check decisions (plain frozen dataclasses, built on the hot path) and
the security-staff resources (pydantic models that keep fields added to the contract later)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

__all__ = [
    "AccessLogEntry",
    "Alert",
    "AlertFeed",
    "CheckResult",
    "ExcessPrincipal",
    "Exposure",
    "Finding",
    "Reason",
    "VerifyResult",
]

# Reason codes the client adds for decisions it makes itself, without aclaudit's answer.
UNAVAILABLE = "unavailable"  # fail closed: aclaudit could not be asked, so deny
FAIL_OPEN = "fail_open"  # the caller opted out of failing closed: allowed, and NOT recorded
GRANTED = "granted"  # the only reason an allow may give; any other code is a deny's
MAX_LOG_ID = 2**63 - 1  # access log ids are PostgreSQL bigints


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: ``code`` is ``granted``, ``no_grant``, ``denied_by_grant``, ``unknown_dataset``,
    ``grant_expired``, ``held_by_guard``, ``principal_inactive``, ``purpose_required``,
    ``purpose_not_granted`` from aclaudit (any other code a deny's, from a newer aclaudit), or
    ``unavailable`` / ``fail_open`` from the client."""

    code: str
    grant_id: int | None = None
    via: tuple[str, ...] = ()
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One decision. ``allowed`` is True only for an allow that aclaudit recorded, or (with
    ``fail_open=True``) for an unrecorded allow made by the client when aclaudit was unavailable.
    """

    decision: Literal["allow", "deny"]
    allowed: bool
    reason: Reason
    decision_id: str | None = None
    access_log_id: int | None = None
    out_of_audience: bool = False
    policy_version: int | None = None
    principal: str | None = None
    dataset: str | None = None
    action: str | None = None
    error: Exception | None = field(default=None, compare=False, repr=False)

    @property
    def recorded(self) -> bool:
        """Whether aclaudit decided and logged this (False for the client's own decisions)."""
        return self.access_log_id is not None


class _WireReason(BaseModel):
    code: Annotated[StrictStr, Field(min_length=1)]
    grant_id: StrictInt | None = None
    via: list[StrictStr] = Field(default_factory=list)


class WireCheckResult(BaseModel):
    """``POST /v1/check``'s 200 body, validated strictly: anything off is a ``ProtocolError``.
    The cross-field rules (an allow says ``granted``) are in ``_base.to_result``."""

    decision: Literal["allow", "deny"]
    allowed: StrictBool
    decision_id: Annotated[StrictStr, Field(min_length=1)]
    access_log_id: Annotated[StrictInt, Field(gt=0, le=MAX_LOG_ID)]  # a row id: a positive int64
    reason: _WireReason
    out_of_audience: StrictBool
    policy_version: StrictInt


class WireCheckBatchResult(BaseModel):
    results: list[WireCheckResult]


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Finding(_Resource):
    id: int | None
    dataset: str
    grant_id: int | None
    principal: str
    excess_count: int
    excess_sample: list[str]
    severity: str
    status: str
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    accepted_by: str | None = None
    reason: str | None = None
    until: datetime | None = None


class ExcessPrincipal(_Resource):
    principal: str
    grant_id: int
    via: list[str]


class Exposure(_Resource):
    dataset: str
    intended_count: int
    effective_count: int
    excess_count: int
    items: list[ExcessPrincipal]
    next_cursor: str | None = None
    out_of_audience_reads: int = 0


class AccessLogEntry(_Resource):
    id: int
    decision_id: str
    at: datetime
    principal: str
    dataset: str
    action: str
    purpose: str | None = None
    decision: str
    reason: dict[str, Any]
    out_of_audience: bool
    data_subjects: list[str]
    request_id: str | None = None
    caller: str
    policy_version: int
    prev_hash: str
    hash: str


class VerifyResult(_Resource):
    ok: bool
    entries: int
    head: str | None = None
    first_bad_id: int | None = None


class Alert(_Resource):
    id: int
    type: str
    severity: str
    at: datetime
    summary: str
    dataset: str | None = None
    finding_id: int | None = None
    access_log_id: int | None = None
    count: int = 1  # a read alert: the reads it stands for so far, until window_end
    window_end: datetime | None = None


class AlertFeed(_Resource):
    items: list[Alert]
    last_id: int


class Page(_Resource):
    """A page of a list: ``items`` and the ``next_cursor`` to pass back as ``?cursor=``."""

    next_cursor: str | None = None


class FindingPage(Page):
    items: list[Finding]


class AccessLogPage(Page):
    items: list[AccessLogEntry]
    # On the last page: entries up to this id were archived (``aclaudit log archive``) and are
    # not listed, rather than never written.
    archived_through: int | None = None
