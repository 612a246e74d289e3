from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.policy.schemas import GrantCreate


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


class FindingStatus(StrEnum):
    open = "open"
    resolved = "resolved"
    accepted = "accepted"


class FindingKind(StrEnum):
    exposure = "exposure"  # a grant lets principals outside a dataset's audience read it
    unused = "unused"  # an allow grant no read went through for long (`app.exposure.unused`)
    break_glass = "break_glass"  # a use of break-glass, for a second person to review


class ExcessPath(BaseModel):
    principal: str
    via: list[str] = Field(description="Membership path from the principal to the grant subject.")


class FindingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int | None = Field(description="null for a finding that would open (simulate, 409).")
    kind: FindingKind = FindingKind.exposure
    dataset: str = Field(
        description="The dataset exposed; for an `unused` finding, the grant's resource (a "
        "dataset or a pattern), and excess_count 0 with no sample or paths."
    )
    grant_id: int | None = Field(
        description="null for a proposed grant (simulate) or one a refused change would have made."
    )
    principal: str = Field(description="The grant's subject.")
    excess_count: int
    excess_sample: list[str] = Field(
        description="Up to 20 principals of the excess; members who join it later do not "
        "displace them (`excess_count` counts them all)."
    )
    paths: list[ExcessPath] = Field(description="How the first five sampled reach the grant.")
    severity: Severity
    status: FindingStatus
    opened_at: datetime | None
    resolved_at: datetime | None = None
    accepted_by: str | None = None
    reason: str | None = None
    until: datetime | None = None
    last_used_at: datetime | None = Field(
        default=None,
        description="`unused` findings: the last allowed read through the grant (null: never "
        "used since it was made).",
    )


class FindingPage(BaseModel):
    items: list[FindingRead]
    next_cursor: str | None


class FindingChanges(BaseModel):
    findings_opened: list[FindingRead] = Field(default_factory=list)
    findings_resolved: list[FindingRead] = Field(default_factory=list)


class ExcessPrincipal(BaseModel):
    principal: str
    grant_id: int
    via: list[str]


class ExposureRead(BaseModel):
    dataset: str
    sensitivity: str
    guard: str
    intended_count: int
    effective_count: int
    excess_count: int
    items: list[ExcessPrincipal] = Field(description="A page of excess principals.")
    next_cursor: str | None
    out_of_audience_reads: int = Field(
        description="Allowed reads recorded from outside the audience (up to `at`, if given)."
    )
    at: datetime | None = Field(
        default=None, description="The instant answered for, when `at=` was given."
    )


class AccessItem(BaseModel):
    dataset: str
    grant_id: int
    via: list[str]
    out_of_audience: bool
    purposes: list[str] = Field(
        default_factory=lambda: ["*"],
        description='The purposes it may be read for: named ones, and "*" when a check naming any '
        "other purpose (or none, where the dataset does not require one) is allowed too.",
    )


class PrincipalAccess(BaseModel):
    principal: str
    items: list[AccessItem]
    next_cursor: str | None = None


class ScanResult(BaseModel):
    datasets: int
    opened: int
    resolved: int
    updated: int = Field(
        default=0,
        description="Findings still open whose count, sample, paths or severity changed.",
    )
    open_findings: int
    duration_ms: float


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[GrantCreate] = Field(
        default_factory=list,
        max_length=1000,
        description="Grants as `POST /v1/grants` takes them; one with `accept_exposure` opens "
        "its findings accepted and is not refused.",
    )
    remove: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(
        default_factory=list, max_length=1000
    )


class SimulateResult(BaseModel):
    would_open: list[FindingRead]
    would_resolve: list[FindingRead]
    would_refuse: list[FindingRead] = Field(
        default_factory=list,
        description="Findings on block-guarded datasets that the change would open or widen, now "
        "or once a deny with an expiry lapses: making the change for real answers 409 unless "
        "accept_exposure is given.",
    )
