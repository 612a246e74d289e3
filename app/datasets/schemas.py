from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from app.identifiers import FreeText, PrincipalId


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
        description="`block` refuses grants that widen access beyond the audience; "
        "defaults to `block` for restricted datasets, `alert` otherwise.",
    )


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    description: str
    owner: str
    sensitivity: Sensitivity
    intended_audience: list[str]
    guard: Guard
    created_at: datetime
    updated_at: datetime
    updated_by: str


class DatasetPage(BaseModel):
    items: list[DatasetRead]
    next_cursor: str | None
