from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class MyReadRead(BaseModel):
    """A recorded decision on a read of the signed-in person's data (the other people it
    concerned, the decision's internals and its hash-chain fields are left out)."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The access-log entry's id")
    at: datetime
    principal: str = Field(description="Who asked to read")
    caller: str = Field(description="The service (token) or person that asked aclaudit")
    dataset: str
    action: str
    purpose: str | None
    decision: str
    out_of_audience: bool


class MyReadPage(BaseModel):
    items: list[MyReadRead]
    next_cursor: str | None
    archived_through: int | None = Field(
        default=None,
        description="On the last page: reads recorded up to this access-log id were archived "
        "by the operator and are not listed (ask them for the archive); a cursor into them "
        "answers 410.",
    )
