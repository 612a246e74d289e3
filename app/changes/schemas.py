"""What a change answers: the changed object with the findings it opened and resolved."""

from pydantic import BaseModel, Field

from app.datasets.schemas import DatasetRead, Guard
from app.directory.schemas import GroupRead
from app.exposure.schemas import FindingChanges, FindingRead
from app.policy.schemas import GrantRead


class GrantChanged(GrantRead, FindingChanges):
    """The grant, and the findings its creation or revocation opened and resolved."""


class GroupChanged(GroupRead, FindingChanges):
    """The group, and the findings the membership change opened and resolved."""


class GuardChangeRead(BaseModel):
    """A dataset's guard changed (or, in a plan, would change)."""

    dataset: str
    old_guard: Guard
    new_guard: Guard
    refused: bool = Field(
        description="The change needs accept_exposure and has none: it is answered 409 "
        "(in a plan: `apply` would be). Lowering `block` to `alert` always needs it; raising "
        "`alert` to `block` needs it while the dataset has open findings."
    )
    findings: list[FindingRead] = Field(
        description="The dataset's open findings at the change: accepted by the change's "
        "accept_exposure, or the reason it is refused."
    )


class DatasetChanged(DatasetRead, FindingChanges):
    """The dataset, and the findings its (re-)registration opened and resolved."""

    guard_changed: GuardChangeRead | None = Field(
        default=None, description="Set when this change moved the dataset's guard."
    )
