from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.identifiers import Action, DatasetId, FreeText, LeafPrincipalId, PrincipalId
from app.policy.schemas import Reason

MAX_BATCH = 1000
MAX_BATCH_SUBJECTS = 10_000  # one batch is one transaction: bound what it writes


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: LeafPrincipalId = Field(
        description="Who reads: a user or a service (groups hold members; they do not read)."
    )
    dataset: DatasetId
    action: Action
    purpose: FreeText | None = Field(default=None, max_length=200, examples=["model-training"])
    request_id: FreeText | None = Field(default=None, max_length=200)
    data_subjects: list[PrincipalId] = Field(
        default_factory=list, max_length=1000, description="Whose records the read returns."
    )

    @field_validator("data_subjects")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class CheckResult(BaseModel):
    decision: str = Field(description="`allow` or `deny`.", examples=["allow"])
    allowed: bool
    decision_id: str
    access_log_id: int
    reason: Reason
    out_of_audience: bool
    policy_version: int


class CheckBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[CheckRequest] = Field(min_length=1, max_length=MAX_BATCH)

    @field_validator("checks")
    @classmethod
    def _bounded_subjects(cls, value: list[CheckRequest]) -> list[CheckRequest]:
        total = sum(len(check.data_subjects) for check in value)
        if total > MAX_BATCH_SUBJECTS:
            raise ValueError(
                f"names {total} data_subjects in all; at most {MAX_BATCH_SUBJECTS} per batch "
                "(split it)"
            )
        return value


class CheckBatchResult(BaseModel):
    results: list[CheckResult]


class CheckUnavailableProblem(BaseModel):
    """503: the decision could not be recorded, so it is a deny."""

    type: str
    title: str
    status: int
    detail: str
    decision: str = "deny"
    allowed: bool = False
