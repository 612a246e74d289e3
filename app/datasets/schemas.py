from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from app.acceptance import AcceptExposure
from app.identifiers import DatasetId, FreeText, PrincipalId

DatasetPath = Annotated[DatasetId, Path(description="A dataset id.")]


class Sensitivity(StrEnum):
    public = "public"
    internal = "internal"
    confidential = "confidential"
    restricted = "restricted"


class Guard(StrEnum):
    alert = "alert"
    block = "block"


SENSITIVE = frozenset({Sensitivity.confidential, Sensitivity.restricted})


class DatasetWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: FreeText = Field(default="", max_length=4000)
    owner: PrincipalId
    sensitivity: Sensitivity
    intended_audience: list[PrincipalId] = Field(
        default_factory=list,
        max_length=1000,
        description="Users, services and groups meant to read it.",
    )
    guard: Guard | None = Field(
        default=None,
        description="`block` refuses grants that widen access beyond the audience. Omitted, "
        "the stored guard is kept; a new dataset defaults to `block` when restricted, `alert` "
        "otherwise. Lowering it to `alert`, or raising it to `block` while findings are open, "
        "needs accept_exposure.",
    )
    purpose_required: bool | None = Field(
        default=None,
        description="Checks must name a purpose (one without is denied, `purpose_required`). "
        "Omitted: a new dataset requires one when confidential or restricted; a stored one keeps "
        "its setting, and comes to require one when re-classified confidential or restricted.",
    )
    accept_exposure: AcceptExposure | None = Field(
        default=None,
        description="On a `block` dataset, registering or re-scoping it so that existing grants "
        "reach beyond its audience is refused (409) unless the exposure is accepted; so is "
        "a guard change that needs it (the dataset's open findings are then accepted). There "
        "accepting takes two people: request the PUT with `POST /v1/approvals` (given here it "
        "is refused, 403); on `alert` datasets it is accepted here.",
    )


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    description: str
    owner: str
    sensitivity: Sensitivity
    intended_audience: list[str]
    guard: Guard
    purpose_required: bool
    created_at: datetime
    updated_at: datetime
    updated_by: str


class DatasetPage(BaseModel):
    items: list[DatasetRead]
    next_cursor: str | None
