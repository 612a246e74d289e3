from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.acceptance import AcceptExposure
from app.changes.schemas import GuardChangeRead
from app.datasets.schemas import DatasetWrite
from app.exposure.schemas import FindingRead
from app.identifiers import (
    ANY_PURPOSE,
    Action,
    DatasetId,
    Effect,
    FreeText,
    GroupName,
    PrincipalId,
    PurposeId,
    UTCInstant,
    lower_ascii,
)
from app.identifiers import ResourcePattern as Resource
from app.policy.schemas import MAX_PURPOSES, GrantCreate, GrantRead


class GrantSpec(BaseModel):
    """A grant as a policy file states it; it matches a live grant with the same
    principal, resource, action, effect, purposes (in any order) and expiry."""

    model_config = ConfigDict(extra="forbid")

    principal: PrincipalId
    resource: Resource
    action: Action
    effect: Effect = Field(default=Effect.allow, description="`allow` unless stated.")
    purposes: list[PurposeId] = Field(
        default_factory=lambda: [ANY_PURPOSE],
        min_length=1,
        max_length=MAX_PURPOSES,
        description='As on POST /v1/grants: `["*"]` (any purpose) unless stated.',
    )
    expires_at: UTCInstant | None = None
    justification: FreeText | None = Field(default=None, max_length=2000)

    @field_validator("purposes")
    @classmethod
    def _distinct_purposes(cls, value: list[str]) -> list[str]:
        return GrantCreate.distinct_purposes(value)


class PolicyDocument(BaseModel):
    """The desired state of the groups, datasets and grants it names."""

    model_config = ConfigDict(extra="forbid")

    groups: dict[GroupName, list[PrincipalId]] = Field(
        default_factory=dict,
        max_length=10_000,
        description="Bare group id -> its direct members (replaced). Groups not named are left "
        "alone.",
    )
    datasets: dict[DatasetId, DatasetWrite] = Field(
        default_factory=dict,
        max_length=10_000,
        description="Dataset id -> its registration. Datasets not named are left alone.",
    )
    grants: list[GrantSpec] = Field(default_factory=list, max_length=100_000)
    prune_grants: bool = Field(
        default=False,
        description="Revoke every live grant the document does not list (the document owns "
        "the whole grant set).",
    )
    accept_exposure: AcceptExposure | None = Field(
        default=None,
        description="Apply even where the result would widen a block-guarded dataset's "
        "exposure, or moves a guard that needs acceptance; the findings it opens (and the "
        "open findings of a dataset whose guard it moves) are accepted with this reason and "
        "expiry. On block-guarded datasets accepting takes two people: `apply` with it given "
        "here is refused (403); request the apply with `POST /v1/approvals`.",
    )

    @field_validator("groups", mode="before")
    @classmethod
    def _one_entry_per_group(cls, value: object) -> object:
        """Group ids are lower-cased on input: two keys that name one group would otherwise
        leave only the last one's members, silently."""
        if isinstance(value, dict):
            seen: dict[object, str] = {}
            for key in value:
                earlier = seen.setdefault(lower_ascii(key), key)
                if earlier != key:
                    raise ValueError(f"{earlier!r} and {key!r} name the same group")
        return value


class MembershipChange(BaseModel):
    group: str
    added: list[str]
    removed: list[str]


class PlanResult(BaseModel):
    """What applying the document does (or did, when ``applied``)."""

    applied: bool
    policy_version: int | None = Field(
        description="The policy version the change produced; null for a plan."
    )
    datasets_changed: list[str]
    memberships_changed: list[MembershipChange]
    grants_created: list[GrantRead]
    grants_revoked: list[GrantRead]
    findings_opened: list[FindingRead]
    findings_resolved: list[FindingRead]
    guards_changed: list[GuardChangeRead] = Field(
        default_factory=list,
        description="Datasets whose guard the document moves; `refused` ones make `apply` "
        "answer 409 unless accept_exposure is given.",
    )
    refused: list[FindingRead] = Field(
        description="Findings on block-guarded datasets that make `apply` answer 409 "
        "(unless accept_exposure is given), the open findings of refused guard changes included."
    )
