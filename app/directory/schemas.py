from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from app.acceptance import AcceptExposure
from app.identifiers import GroupName, PrincipalId

MAX_MEMBERS_PER_REQUEST = 10_000
GroupPath = Annotated[GroupName, Path(description="Bare group id: `eng` for `group:eng`.")]


class MembersReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[PrincipalId] = Field(max_length=MAX_MEMBERS_PER_REQUEST)
    accept_exposure: AcceptExposure | None = Field(
        default=None,
        description="Accepts widening an `alert` dataset's exposure; on a `guard: block` dataset "
        "accepting takes two people (`POST /v1/approvals`): given here it is refused (403).",
    )


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member: PrincipalId
    accept_exposure: AcceptExposure | None = Field(
        default=None,
        description="Accepts widening an `alert` dataset's exposure; on a `guard: block` dataset "
        "accepting takes two people (`POST /v1/approvals`): given here it is refused (403).",
    )


class GroupSummary(BaseModel):
    id: str
    direct_member_count: int
    transitive_member_count: int = Field(
        description="Users and services reached through any depth of nesting."
    )


class GroupRead(GroupSummary):
    members: list[str] = Field(description="Direct members.")
    policy_version: int | None = Field(
        default=None, description="Set on mutations: the policy version this change produced."
    )


class GroupPage(BaseModel):
    items: list[GroupSummary]
    next_cursor: str | None
