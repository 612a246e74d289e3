from datetime import datetime

from pydantic import BaseModel, ConfigDict


class TrailEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    token_name: str | None
    method: str
    path: str
    query: str
    status: int
    request_id: str | None


class TrailPage(BaseModel):
    items: list[TrailEntryRead]
    next_cursor: str | None
